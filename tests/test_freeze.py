"""Freezing by role: ``freeze_embeddings`` freezes exactly the weights the family's spec calls the input
embeddings (``FamilySpec.embedding_weights``), whatever they are named, and the run reports the frozen and
trainable parameter counts (run_started, raclate_run.json, the CLI's progress)."""
import json

import pytest

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.tasks import EMBEDDING_TASKS
from engine.training.trainer import freeze_embeddings
from tests.tiny_families import FAMILIES, build
from tests.trainer_helpers import of, sentiment_rows, tiny_bert_dir


def names(tree) -> set[str]:
    return {k for k, _ in tree_flatten(tree)}


@pytest.mark.parametrize("task", ["feature-extraction", "text-classification"])
@pytest.mark.parametrize("family", FAMILIES)
def test_freezing_freezes_exactly_the_specs_embedding_weights(family, task):
    model = build(family, task)
    everything = names(model.parameters())
    assert names(model.trainable_parameters()) == everything
    freeze_embeddings(model)
    frozen = everything - names(model.trainable_parameters())
    backbone = "backbone." if task in EMBEDDING_TASKS else model.backbone_name + "."
    spec = model.info.family.SPEC
    want = {k for k in everything if k.startswith(backbone) and k[len(backbone):].startswith(spec.embedding_weights)}
    assert frozen == want and frozen
    if family == "t5gemma":  # its embeddings sit under the encoder
        assert backbone + "encoder.embed_tokens.weight" in frozen
    if family == "lfm2":  # embedding_norm is the final norm, despite its name
        assert backbone + "embedding_norm.weight" not in frozen


def test_run_reports_frozen_and_trainable_counts(tmp_path_factory, tmp_path, capsys):
    from engine.commands.train import Progress
    from engine.data import DatasetArgs
    from engine.run_record import read_run_record
    from engine.training.args import TrainingArgs
    from engine.training.config import RunConfig
    from engine.training.run import train_run
    data = tmp_path / "reviews.jsonl"
    data.write_text("".join(json.dumps({"text": r["text"], "label": ["neg", "pos"][r["label"]]}) + "\n"
                            for r in sentiment_rows(16)))
    out = tmp_path / "run"
    args = TrainingArgs(output_dir=str(out), batch_size=8, max_steps=1, save_steps=0, max_length=32,
                        freeze_embeddings=True)
    cfg = RunConfig(str(tiny_bert_dir(tmp_path_factory)), "text-classification",
                    DatasetArgs(data=str(data), task_type="text-classification", max_length=32), args)
    events = []
    train_run(cfg, [events.append])
    started = of(events, "run_started")[0]
    saved = mx.load(str(out / "model.safetensors"))
    embeddings = sum(v.size for k, v in saved.items() if k.startswith("bert.embeddings."))
    assert started["frozen_parameters"] == embeddings
    assert started["frozen_parameters"] + started["trainable_parameters"] == started["total_parameters"]
    assert read_run_record(out)["parameters"] == {"trainable": started["trainable_parameters"],
                                                  "frozen": embeddings, "total": started["total_parameters"]}
    progress = Progress(enabled=True)
    progress(started)
    progress(of(events, "finished")[0])
    printed = "".join(capsys.readouterr())
    assert printed.count(f"{embeddings:,} frozen") == 1 and f"{started['trainable_parameters']:,} trainable" in printed

