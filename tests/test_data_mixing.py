"""Several datasets in one run (engine/data/mixing.py): every batch from one dataset, proportional and
round-robin orders, exact resume; per-dataset column mappings and losses through the config builder,
the loader, the Trainer and `raclate train`."""
import json

import numpy as np
import pytest

from engine.cli import main
from engine.data import DataError, DatasetArgs, LengthGroupedBatchSampler
from engine.data.mixing import MixedBatchSampler, dataset_seed, load_datasets
from engine.errors import UsageError
from engine.training.args import TrainingArgs
from engine.training.config import build_run_config
from tests.trainer_helpers import dataset, load, max_diff, of, pair_rows, tiny_bert_dir, weights


def mixed(sizes, batch=4, seed=0, sampling="proportional"):
    rng = np.random.default_rng(9)
    samplers = [LengthGroupedBatchSampler(rng.integers(4, 60, n), batch, seed=dataset_seed(seed, i))
                for i, n in enumerate(sizes)]
    return MixedBatchSampler(samplers, seed=seed, sampling=sampling)


# -- the batch order ----------------------------------------------------------------------------
@pytest.mark.parametrize("sampling", ["proportional", "round-robin"])
def test_every_batch_from_one_dataset_and_every_row_once_per_epoch(sampling):
    sizes = [50, 13, 30]
    sampler = mixed(sizes, sampling=sampling)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 13 + 4 + 8
    for d, size in enumerate(sizes):
        rows = [i for b, indices in batches if b == d for i in indices]
        assert sorted(rows) == list(range(size))   # each row of dataset d once, only in d's batches


def test_proportional_draws_each_dataset_in_proportion_to_its_size():
    sampler = mixed([400, 100], batch=4)   # 100 and 25 batches
    order = [d for d, _ in sampler]
    assert order.count(0) == 100 and order.count(1) == 25
    first_half = order[:62]   # shuffled together, not one dataset after the other
    assert 5 <= first_half.count(1) <= 20
    assert order == [d for d, _ in mixed([400, 100], batch=4)]   # a function of the seed and the epoch
    sampler.set_epoch(1)
    assert [d for d, _ in sampler] != order


def test_round_robin_takes_turns_until_each_dataset_runs_out():
    sampler = mixed([20, 8, 12], batch=4, sampling="round-robin")   # 5, 2 and 3 batches
    assert [d for d, _ in sampler] == [0, 1, 2, 0, 1, 2, 0, 2, 0, 0]


def test_one_dataset_keeps_its_own_order():
    lens = np.random.default_rng(1).integers(4, 60, 70)
    alone = LengthGroupedBatchSampler(lens, 8, seed=5)
    sampler = MixedBatchSampler([LengthGroupedBatchSampler(lens, 8, seed=5)], seed=5)
    assert [b for _, b in sampler] == list(alone)
    assert sampler.state_dict() == alone.state_dict()


@pytest.mark.parametrize("sampling", ["proportional", "round-robin"])
def test_resume_continues_the_same_batch_sequence(sampling):
    whole = mixed([37, 21], sampling=sampling)
    whole.set_epoch(2)
    expected = list(whole)
    first = mixed([37, 21], sampling=sampling)
    first.set_epoch(2)
    it = iter(first)
    head = [next(it) for _ in range(6)]
    state = json.loads(json.dumps(first.state_dict()))   # as a checkpoint stores it
    resumed = mixed([37, 21], sampling=sampling)
    resumed.load_state_dict(state)
    rest = list(resumed)
    assert [(d, list(b)) for d, b in head + rest] == [(d, list(b)) for d, b in expected]


# -- settings ------------------------------------------------------------------------------------
def config(data, **kw):
    return build_run_config({"model": "default", "task": "sentence-similarity",
                             "training": {"output_dir": "out"}}, data=data, **kw)


def test_several_data_with_their_own_columns():
    cfg = config(["a/pairs.jsonl", "b/scored.csv"], columns={"text": "q"},
                 dataset_columns={"scored": {"label": "score"}}, sampling="round-robin")
    assert cfg.data.several and cfg.data.sampling == "round-robin"
    assert [(e["name"], e["path"], e["columns"]) for e in cfg.data.data] == [
        ("pairs", "a/pairs.jsonl", {}), ("scored", "b/scored.csv", {"label": "score"})]
    parts = cfg.data.per_dataset()
    assert [(n, a.data, a.columns) for n, _, a in parts] == [
        ("pairs", "a/pairs.jsonl", {"text": "q"}), ("scored", "b/scored.csv", {"text": "q", "label": "score"})]
    assert json.loads(json.dumps(cfg.to_dict()))["data"]["data"][1]["name"] == "scored"   # run.json round trip
    again = build_run_config(cfg.to_dict())
    assert again.data.data == cfg.data.data


def test_config_file_form_and_eval_data_pairs():
    settings = {"model": "default", "task": "embedding", "training": {"output_dir": "out"},
                "data": {"data": [{"path": "x.jsonl", "name": "nli", "columns": {"label": "score"}, "loss": "cosine"},
                                  "y.jsonl"], "eval_data": ["x_dev.jsonl", "y_dev.jsonl"]}}
    entries = build_run_config(settings).data.data
    assert [(e["name"], e["loss"], e["eval_data"]) for e in entries] == [
        ("nli", "cosine", "x_dev.jsonl"), ("y", None, "y_dev.jsonl")]
    short = build_run_config({**settings, "data": ["x.jsonl", "y.jsonl"]}).data
    assert [e["name"] for e in short.data] == ["x", "y"]


@pytest.mark.parametrize("data, kw, needle", [
    (["a/x.jsonl", "b/x.jsonl"], {}, "Two datasets are named 'x'"),
    (["a.jsonl", "b.jsonl"], {"dataset_columns": {"c": {"text": "q"}}}, "the datasets are a, b"),
    (["a.jsonl", "b.jsonl"], {"eval_data": "dev.jsonl"}, "one --eval-data per --data"),
    (["a.jsonl", "b.jsonl"], {"sampling": "random"}, "proportional, round-robin"),
    ([{"file": "a.jsonl"}], {}, "'path'"),
    ("a.jsonl", {"dataset_columns": {"b": {"text": "q"}}}, "the datasets are a"),
    ("a.jsonl", {"eval_data": ["x.jsonl", "y.jsonl"]}, "2 validation files for one dataset"),
])
def test_bad_several_data_settings(data, kw, needle):
    with pytest.raises(UsageError, match=None) as err:
        config(data, **kw)
    assert needle in str(err.value)


def test_one_file_takes_its_name_too():
    assert config("data/pairs.jsonl", dataset_columns={"pairs": {"text": "q"}}).data.columns == {"text": "q"}


def test_label_tasks_refuse_several_datasets():
    with pytest.raises(UsageError, match="one label set"):
        build_run_config({"model": "default", "task": "text-classification", "training": {"output_dir": "o"},
                          "data": ["a.jsonl", "b.jsonl"]})


# -- loading and training ------------------------------------------------------------------------
@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    return tiny_bert_dir(tmp_path_factory)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """pairs.jsonl (question, answer): MNRL; scored.jsonl (s1, s2, score): CoSENT."""
    folder = tmp_path_factory.mktemp("mixed")
    pairs = [{"question": r["text"], "answer": r["text_pair"]} for r in pair_rows(24)]
    scored = [{"s1": r["text"], "s2": r["text_pair"] if i % 2 else r["negative"], "score": float(i % 2)}
              for i, r in enumerate(pair_rows(16, seed=1))]
    for name, rows in (("pairs", pairs), ("scored", scored)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def test_a_mapping_error_names_the_dataset_file_and_column(files):
    args = DatasetArgs(data=[str(files / "pairs.jsonl"), str(files / "scored.jsonl")],
                       columns={"text": "question", "text_pair": "answer"})
    with pytest.raises(DataError) as err:
        load_datasets(args)
    assert "scored.jsonl" in str(err.value) and "'question'" in str(err.value)


def test_each_dataset_with_its_own_mapping_and_validation(files):
    args = DatasetArgs(data=[{"path": str(files / "pairs.jsonl"), "columns": {"text": "question", "text_pair": "answer"}},
                             {"path": str(files / "scored.jsonl"), "columns": {"text": "s1", "text_pair": "s2",
                                                                                "label": "score"}}],
                       validation_split=0.25)
    data = load_datasets(args)
    assert list(data.train) == ["pairs", "scored"] and list(data.validation) == ["pairs", "scored"]
    assert data.train["pairs"].column_names == ["text", "text_pair"] and len(data.train["pairs"]) == 18
    assert "label" in data.train["scored"].column_names and len(data.validation["scored"]) == 4
    assert set(data.splits) >= {"pairs/train", "scored/validation"}


def two_datasets():
    pairs = dataset([{"text": r["text"], "text_pair": r["text_pair"]} for r in pair_rows(24)])
    scored = dataset([{"text": r["text"], "text_pair": r["negative"], "label": float(i % 3) / 2}
                      for i, r in enumerate(pair_rows(16, seed=1))])
    return {"pairs": pairs, "scored": scored}


def test_trainer_steps_each_dataset_with_its_loss_and_reports_each(bert_dir, monkeypatch):
    from engine.training import trainer as trainer_module
    from engine.training.trainer import Trainer
    seen = []   # (dataset, loss) of every training batch
    select = trainer_module.select_loss

    def spy(*a, **kw):   # records the training batches each loss gets (evaluation runs in eval mode)
        loss = select(*a, **kw)

        def call(model, batch):
            if model.training:
                seen.append(("labels" in batch, type(loss).__name__))
            return loss(model, batch)
        return call
    monkeypatch.setattr(trainer_module, "select_loss", spy)
    model, tok = load(bert_dir, "sentence-similarity")
    events = []
    args = TrainingArgs(batch_size=4, max_steps=6, learning_rate=1e-3, logging_steps=1, save_steps=0,
                        max_length=32, seed=0, compile=False)
    train = two_datasets()
    evals = {n: d.select(range(4)) for n, d in train.items()}
    result = Trainer(model, tok, "sentence-similarity", args, train, evals, callbacks=[events.append],
                     sampling="round-robin").train()
    assert seen == [(False, "MultipleNegativesRankingLoss"), (True, "CoSENTLoss")] * 3
    metrics = result["metrics"]
    assert {"pairs_eval_loss", "scored_eval_loss", "eval_loss"} <= set(metrics)
    assert metrics["eval_loss"] == pytest.approx((metrics["pairs_eval_loss"] + metrics["scored_eval_loss"]) / 2)
    assert of(events, "run_started")[0]["num_examples"] == 40


def test_resume_with_two_datasets_continues_exactly(bert_dir, tmp_path):
    from engine.training.trainer import Trainer
    args = dict(batch_size=4, max_steps=6, learning_rate=5e-3, logging_steps=1, save_steps=0, max_length=32, seed=3)
    model, tok = load(bert_dir, "sentence-similarity")
    Trainer(model, tok, "sentence-similarity", TrainingArgs(**args, output_dir=str(tmp_path / "a")),
            two_datasets()).train()
    uninterrupted = weights(model)

    model, tok = load(bert_dir, "sentence-similarity")
    trainer = Trainer(model, tok, "sentence-similarity", TrainingArgs(**args, output_dir=str(tmp_path / "b")),
                      two_datasets(), callbacks=[lambda e: e["event"] == "step" and e["step"] == 3
                                                 and trainer.request_stop()])
    assert trainer.train()["step"] == 3
    model, tok = load(bert_dir, "sentence-similarity", seed=7)
    events = []
    Trainer(model, tok, "sentence-similarity", TrainingArgs(**args, output_dir=str(tmp_path / "b"),
                                                            resume_from_checkpoint="latest"),
            two_datasets(), callbacks=[events.append]).train()
    assert [e["step"] for e in of(events, "step")] == [4, 5, 6]
    assert max_diff(weights(model), uninterrupted) <= 1e-5


def test_cli_two_datasets_two_losses(bert_dir, files, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["train", "--model", str(bert_dir), "--task", "sentence-similarity",
                 "--data", str(files / "pairs.jsonl"), "--data", str(files / "scored.jsonl"),
                 "--column", "pairs:text=question", "--column", "pairs:text_pair=answer",
                 "--column", "scored:text=s1", "--column", "scored:text_pair=s2", "--column", "scored:label=score",
                 "--sampling", "round-robin", "--validation-split", "0.25", "--output", str(out),
                 "--batch-size", "4", "--max-steps", "2", "--max-length", "32", "--save-steps", "0"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    record = json.loads((out / "raclate_run.json").read_text())
    assert [(e["name"], e["columns"]) for e in record["data"]["data"]] == [
        ("pairs", {"text": "question", "text_pair": "answer"}),
        ("scored", {"text": "s1", "text_pair": "s2", "label": "score"})]
    assert record["data"]["sampling"] == "round-robin"
    assert {"pairs_eval_loss", "scored_eval_loss"} <= set(record["metrics"])
    card = (out / "README.md").read_text()
    assert "2 datasets" in card and "pairs.jsonl" in card and "scored.jsonl" in card


def test_cli_mapping_error_names_the_dataset(bert_dir, files, tmp_path, capsys):
    code = main(["train", "--model", str(bert_dir), "--task", "sentence-similarity",
                 "--data", str(files / "pairs.jsonl"), "--data", str(files / "scored.jsonl"),
                 "--column", "scored:text=body", "--output", str(tmp_path / "run"), "--max-steps", "1"])
    err = capsys.readouterr().err
    assert code == 2 and "scored.jsonl" in err and "'body'" in err
    assert not (tmp_path / "run").exists()
