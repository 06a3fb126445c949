"""Checkpoints that let a run continue exactly: weights, optimizer state, RNG, step, data position
and the resolved config. Written into a hidden temporary folder named after the writing process and
renamed into place, so a checkpoint folder that exists is complete (a half-written one is never
picked up); resuming from 'latest' also verifies the files and falls back past a damaged one."""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

from engine.errors import UsageError, disk_full, write_failed
from engine.models.dropout import set_global_key
from engine.run_record import process_alive

STEP_DIR = re.compile(r"^step-(\d+)$")
TMP_DIR = re.compile(r"^\.tmp-step-\d+-(\d+)(-old)?$")   # .tmp-step-STEP-PID: being written; -old: being removed


def checkpoint_dirs(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first."""
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if p.is_dir() and (m := STEP_DIR.match(p.name))]
    return [p for _, p in sorted(found)]


def checkpoint_problem(path: Path) -> str | None:
    """What makes the checkpoint folder ``path`` unusable ("weights.safetensors is cut short"), or None:
    both safetensors files hold a readable header and every byte it announces, the optimizer file
    holds the RNG key, and trainer_state.json parses. Reads headers only, never the tensors."""
    for name, needed in (("weights.safetensors", ()), ("optimizer.safetensors", ("__rng__",))):
        problem = _safetensors_problem(path / name, needed)
        if problem:
            return f"{name} {problem}"
    try:
        state = json.loads((path / "trainer_state.json").read_text())
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (OSError, ValueError) as exc:
        return f"trainer_state.json does not parse ({exc})"
    return None if isinstance(state, dict) and "step" in state else "trainer_state.json has no step"


def _safetensors_problem(path: Path, needed) -> str | None:
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            n = int.from_bytes(f.read(8), "little")
            if size < 8 or 8 + n > size:
                return "is cut short"
            header = json.loads(f.read(n))
            end = max((t["data_offsets"][1] for k, t in header.items() if k != "__metadata__"), default=0)
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        return f"cannot be read ({type(exc).__name__})"
    if 8 + n + end > size:
        return "is cut short"
    missing = [k for k in needed if k not in header]
    return f"lacks {', '.join(missing)}" if missing else None


def find_checkpoint(output_dir: Path | None, which: str) -> Path:
    """``which`` = 'latest' or a folder path → the checkpoint folder (UsageError when none is usable)."""
    return pick_checkpoint(output_dir, which)[0]


def pick_checkpoint(output_dir: Path | None, which: str) -> tuple[Path, list[str]]:
    """(the checkpoint to resume from, a warning for each damaged newer one passed over): 'latest' is
    the newest one that verifies. Raises UsageError naming the files when none does."""
    if which == "latest" and output_dir is None:
        raise UsageError("Resuming from 'latest' needs the run's output folder; set output_dir (--output).")
    if which != "latest":
        path = Path(which)
        if not (path / "trainer_state.json").exists():
            where = output_dir / "checkpoints" if output_dir else "OUTPUT/checkpoints"
            raise UsageError(f"{path} is not a checkpoint folder (no trainer_state.json). "
                             f"Pick one under {where} or pass --resume latest.")
        problem = checkpoint_problem(path)
        if problem:
            raise UsageError(f"Checkpoint {path} is damaged: {path / problem}. Pick another one or pass --resume latest.")
        return path, []
    root = output_dir / "checkpoints"
    dirs = checkpoint_dirs(root)
    if not dirs:
        raise UsageError(f"No checkpoint to resume from in {root}. Start the run without --resume.")
    damaged = []
    for path in reversed(dirs):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, [f"Checkpoint {p.name} is damaged ({p / why}); resuming from {path.name}, the newest "
                          "complete one." for p, why in damaged]
        damaged.append((path, problem))
    raise UsageError(f"No usable checkpoint in {root}: " + "; ".join(str(p / why) for p, why in damaged) + ". "
                     "Start the run again with --overwrite (or resume from a copy with --resume PATH).")


def save_checkpoint(root: Path, step: int, model, optimizer, state: dict) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"step-{step:07d}"
    tmp = root / f".tmp-step-{step:07d}-{os.getpid()}"
    weights = dict(tree_flatten(model.parameters()))
    opt = dict(tree_flatten(optimizer.state))
    opt["__rng__"] = mx.random.state[0]
    try:
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
        mx.save_safetensors(str(tmp / "weights.safetensors"), weights)
        mx.save_safetensors(str(tmp / "optimizer.safetensors"), opt)
        (tmp / "trainer_state.json").write_text(json.dumps(state, indent=2))
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)   # a half-written checkpoint only fills the disk further
        if write_failed(exc):
            needed = sum(v.nbytes for v in weights.values()) + sum(v.nbytes for v in opt.values())
            raise disk_full(root, needed, f"checkpoint {final.name}", exc) from exc
        raise
    if final.exists():  # the same step saved again (e.g. at a stop right after a save)
        _discard(final)
    os.replace(tmp, final)
    return final


def _discard(path: Path) -> None:
    """Remove a checkpoint folder without ever leaving it half-deleted under its step-N name (a kill
    in the middle of rmtree would): renamed to a temporary name first, which rotation cleans up."""
    aside = path.with_name(f".tmp-{path.name}-{os.getpid()}-old")
    if aside.exists():
        shutil.rmtree(aside)
    os.rename(path, aside)
    shutil.rmtree(aside, ignore_errors=True)


def load_checkpoint(path: Path, model, optimizer) -> dict:
    """Restore weights, optimizer state and RNG into live objects; returns trainer_state.json."""
    weights = mx.load(str(path / "weights.safetensors"))
    model.load_weights(list(weights.items()), strict=True)
    opt = mx.load(str(path / "optimizer.safetensors"))
    set_global_key(opt.pop("__rng__"))
    optimizer.state = tree_unflatten(list(opt.items()))
    mx.eval(model.parameters(), optimizer.state)
    return json.loads((path / "trainer_state.json").read_text())


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
                _discard(path)
    for stale in root.iterdir() if root.is_dir() else ():
        # Temporary folders of this process, or of one that is gone (killed): never a live writer's.
        m = TMP_DIR.match(stale.name)
        if m and (int(m.group(1)) == os.getpid() or process_alive(int(m.group(1))) is False):
            shutil.rmtree(stale, ignore_errors=True)
