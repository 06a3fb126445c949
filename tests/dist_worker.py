"""One rank of the distributed tests (tests/test_distributed.py starts N of these with MLX_RANK /
MLX_HOSTFILE, as mlx.launch does on one machine). Usage: dist_worker.py MODE BERT_DIR OUT_DIR.

- losses: gathered contrastive losses on this rank's shard vs the plain loss on the global batch
  (rank 0 computes the reference) → OUT/losses-rank{r}.json
- trainer: short Trainer runs, per-rank batch 4 (classification, gathered MNRL, gathered late
  interaction, LoRA/DoRA classification) with output_dir OUT/<case>/rank{r} → OUT/<case>-rank{r}.npz + events count
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import engine  # noqa: E402,F401  (fast BLAS first)
import mlx.core as mx  # noqa: E402
import mlx.nn as nn  # noqa: E402
import numpy as np  # noqa: E402
from mlx.utils import tree_flatten  # noqa: E402

from engine.training.distributed import init_world  # noqa: E402
from tests.trainer_helpers import dataset, labels, load, pair_rows, sentiment_rows, weights  # noqa: E402

B = 4  # per-rank batch

# Dropout off: the masks two ranks draw for their halves are not those one process draws for the global batch.
TRAINER_CASES = {
    # name: (task, load kwargs, rows, label_info, extra args)
    "classification": ("text-classification", {"num_labels": 2, "dropout": 0.0}, lambda: sentiment_rows(32),
                       labels(), {}),
    "mnrl": ("sentence-similarity", {"dropout": 0.0}, lambda: pair_rows(32), None, {}),
    "late": ("sentence-similarity", {"use_late_interaction": True, "late_interaction_dim": 16, "dropout": 0.0},
             lambda: [{k: r[k] for k in ("text", "text_pair")} for r in pair_rows(32)], None,
             {"use_late_interaction": True}),
    # LoRA/DoRA: the adapters (and the head) of 2 ranks equal those of one process
    "lora": ("text-classification", {"num_labels": 2, "dropout": 0.0}, lambda: sentiment_rows(32), labels(),
             {"lora_rank": 4, "dora": True}),
}
TRAINER_ARGS = dict(learning_rate=1e-3, max_steps=6, logging_steps=1, save_steps=3, max_length=32, seed=0, dropout=0.0)


def global_rows(n: int) -> list[dict]:
    """(question, answer, negative) rows; row 5's answer repeats row 1's: a duplicate across ranks."""
    rows = pair_rows(n)
    rows[5]["text_pair"] = rows[1]["text_pair"]
    return rows


def batches(model, tok, rows, rank, size, world):
    from engine.training.trainer import Trainer
    from engine.training.args import TrainingArgs
    from engine.training.distributed import World
    helper = Trainer(model, tok, "sentence-similarity", TrainingArgs(max_length=32), dataset(rows), world=World())
    tds = helper._tokenized(dataset(rows))
    collate = helper._collator(tds)
    whole = collate(Trainer._rows(tds, range(len(rows))))
    mine = collate(Trainer._rows(tds, range(rank * B, (rank + 1) * B)))
    return whole, world.align_lengths(mine, tok.pad_token_id or 0, False)


def flat(tree) -> dict:
    return {k: np.array(v) for k, v in tree_flatten(tree)}


def diff(a: dict, b: dict) -> float:
    return max(float(np.abs(a[k] - b[k]).max()) for k in a)


def losses(bert_dir: str, out: Path) -> None:
    from engine.losses import (CachedLateInteractionContrastiveLoss, CachedMultipleNegativesRankingLoss,
                               LateInteractionContrastiveLoss)
    from engine.losses import MultipleNegativesRankingLoss
    from engine.errors import TrainingError
    world = init_world(30)
    rank, size = world.rank, world.size
    rows = global_rows(B * size)
    result = {}
    cases = {
        "mnrl": ({}, lambda g: MultipleNegativesRankingLoss(gather_across_ranks=g)),
        "mnrl_symmetric": ({}, lambda g: MultipleNegativesRankingLoss(symmetric=True, gather_across_ranks=g)),
        "cached_mnrl": ({}, lambda g: (CachedMultipleNegativesRankingLoss(mini_batch_size=3, gather_across_ranks=g)
                                       if g else MultipleNegativesRankingLoss())),
        "late_interaction": ({"use_late_interaction": True, "late_interaction_dim": 16},
                             lambda g: LateInteractionContrastiveLoss(gather_across_ranks=g)),
        "cached_late_interaction": ({"use_late_interaction": True, "late_interaction_dim": 16},
                                    lambda g: (CachedLateInteractionContrastiveLoss(mini_batch_size=3, gather_across_ranks=g)
                                               if g else LateInteractionContrastiveLoss())),
    }
    for name, (load_kw, make) in cases.items():
        model, tok = load(bert_dir, "sentence-similarity", **load_kw)
        rows_here = rows if "late" not in name else [{k: r[k] for k in ("text", "text_pair")} for r in rows]
        whole, mine = batches(model, tok, rows_here, rank, size, world)
        loss_fn = make(True)
        if hasattr(loss_fn, "loss_and_grads"):
            loss, grads = loss_fn.loss_and_grads(model, mine)
        else:
            loss, grads = nn.value_and_grad(model, loss_fn)(model, mine)
        local_only, _ = nn.value_and_grad(model, make(False))(model, mine)   # this rank's batch alone
        grads = nn.average_gradients(grads)
        loss = mx.distributed.all_sum(loss) / size
        mx.eval(loss, grads, local_only)
        entry = {"loss": loss.item(), "local_only_loss": local_only.item()}
        if rank == 0:
            ref_loss, ref_grads = nn.value_and_grad(model, make(False))(model, whole)
            mx.eval(ref_loss, ref_grads)
            entry.update(ref_loss=ref_loss.item(), loss_diff=abs(loss.item() - ref_loss.item()),
                         grad_diff=diff(flat(grads), flat(ref_grads)),
                         grad_scale=max(float(np.abs(v).max()) for v in flat(ref_grads).values()),
                         # the duplicate positive across ranks matters: without hashes the loss differs
                         without_hashes=make(False)(model, {**whole, "hashes": None}).item())
        result[name] = entry
    try:
        world.check_same({"training rows": 100 + rank})
        result["check_same"] = None
    except TrainingError as exc:
        result["check_same"] = str(exc)
    result["any"] = world.any(rank == size - 1)
    result["from_main"] = [world.from_main(rank == 0), world.from_main(rank != 0)]
    world.finish()
    (out / f"losses-rank{rank}.json").write_text(json.dumps(result, indent=1))


def trainer(bert_dir: str, out: Path) -> None:
    from engine.training.trainer import Trainer
    from engine.training.args import TrainingArgs
    world = init_world(30)
    for name, (task, load_kw, rows, info, extra) in TRAINER_CASES.items():
        model, tok = load(bert_dir, task, **load_kw)
        events: list[dict] = []
        args = TrainingArgs(**TRAINER_ARGS, **extra, batch_size=B, distributed=True,
                            output_dir=str(out / name / f"rank{world.rank}"))
        Trainer(model, tok, task, args, dataset(rows()), callbacks=[events.append], label_info=info,
                world=world).train()
        np.savez(out / f"{name}-rank{world.rank}.npz", **weights(model))
        (out / f"{name}-rank{world.rank}.json").write_text(json.dumps(
            {"events": len(events), "run_started": [e for e in events if e["event"] == "run_started"][:1]}))
    world.finish()


if __name__ == "__main__":
    mode, bert, out_dir = sys.argv[1:4]
    {"losses": losses, "trainer": trainer}[mode](bert, Path(out_dir))
