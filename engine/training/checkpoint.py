"""Checkpoints that let a run continue exactly: weights, optimizer state, RNG, step, data position
and the resolved config. Written into a hidden temporary folder and renamed into place, so a
checkpoint folder that exists is complete (a half-written one is never picked up)."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

STEP_DIR = re.compile(r"^step-(\d+)$")


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def find_checkpoint(output_dir: Path | None, which: str) -> Path:
    """``which`` = 'latest' or a folder path → the checkpoint folder (error message when none)."""
    if which == "latest" and output_dir is None:
        raise FileNotFoundError("Resuming from 'latest' needs the run's output folder; set output_dir (--output).")
    if which != "latest":
        path = Path(which)
        if not (path / "trainer_state.json").exists():
            where = output_dir / "checkpoints" if output_dir else "OUTPUT/checkpoints"
            raise FileNotFoundError(f"{path} is not a checkpoint folder (no trainer_state.json). "
                                    f"Pick one under {where} or pass --resume latest.")
        return path
    dirs = checkpoint_dirs(output_dir / "checkpoints")
    if not dirs:
        raise FileNotFoundError(f"No checkpoint to resume from in {output_dir / 'checkpoints'}. "
                                "Start the run without --resume.")
    return dirs[-1]


def save_checkpoint(root: Path, step: int, model, optimizer, state: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    mx.save_safetensors(str(tmp / "weights.safetensors"), dict(tree_flatten(model.parameters())))
    opt = dict(tree_flatten(optimizer.state))
    opt["__rng__"] = mx.random.state[0]
    mx.save_safetensors(str(tmp / "optimizer.safetensors"), opt)
    (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    if final.exists():  # the same step saved again (e.g. at a stop right after a save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    return final


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore weights, optimizer state and RNG into live objects; returns trainer_state.json."""
    weights = mx.load(str(path / "weights.safetensors"))
    model.load_weights(list(weights.items()), strict=True)
    opt = mx.load(str(path / "optimizer.safetensors"))
    restore_rng(opt.pop("__rng__"))
    optimizer.state = tree_unflatten(list(opt.items()))
    mx.eval(model.parameters(), optimizer.state)
    return json.loads((path / "trainer_state.json").read_text())


def restore_rng(key: mx.array) -> None:
    """Make the global MLX key ``key`` again (``mx.random.state`` cannot be assigned to; seeding
    with s sets the key [s >> 32, s & 0xffffffff])."""
    hi, lo = (int(x) for x in key.tolist())
    mx.random.seed((hi << 32) | lo)


def rotate_checkpoints(root: Path, limit: int, keep: set[str] = frozenset()) -> None:
    """Keep the newest ``limit`` checkpoints. A folder named in ``keep`` (the best model) survives and
    counts within the limit; the latest always survives, so only ``limit`` = 1 can leave two."""
    dirs = checkpoint_dirs(root)
    if limit > 0:
        survivors = set(dirs[-limit:])
        old_kept = [p for p in dirs[:-limit] if p.name in keep]
        if old_kept:
            survivors = set(dirs[-max(1, limit - len(old_kept)):]) | set(old_kept)
        for path in dirs:
            if path not in survivors:
                shutil.rmtree(path, ignore_errors=True)
    for stale in root.glob(".tmp-step-*"):  # left by a killed process
        shutil.rmtree(stale, ignore_errors=True)
