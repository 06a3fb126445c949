"""Data-parallel training across processes ("ranks") started by ``mlx.launch`` or ``raclate launch``.

Every rank holds the whole model and reads its own contiguous slice of each global batch (the
sampler's ``num_replicas``/``rank``). The train step averages the ranks' losses and gradients
(``all_sum / N``) before clipping and the non-finite guard, so every rank applies the same update
and the weights stay identical. Rank 0 alone writes checkpoints, the final model and events; at
the start (fresh or resumed) the other ranks take its weights, optimizer state, RNG and data
position. Collectives must run in the same order on every rank: each method below that says
"collective" is called at the same point of the run by all of them.

A side channel of heartbeats (engine/training/heartbeat.py) ends every rank with a clear error when one
dies, fails or hangs, instead of leaving the others blocked in an ``all_sum``.
"""
from __future__ import annotations

import json
import os
import sys
import threading
import zlib

import numpy as np

import mlx.core as mx
from mlx.utils import tree_flatten, tree_unflatten

PEER_LOST = "peer_lost"
LOST_HINT = ("The other processes of the run stopped too. Completed checkpoints are intact: fix the problem on "
             "that machine (see its log) and run the same command again with --resume latest.")
_ACTIVE: "World | None" = None


def launch_rank() -> int:
    """The rank the launcher gave this process (before any init): mlx.launch sets MLX_RANK."""
    for name in ("MLX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def rank0_address() -> str | None:
    """Rank 0's IP from the launcher's environment (ring hostfile or JACCL coordinator)."""
    try:
        if os.environ.get("MLX_HOSTFILE"):
            with open(os.environ["MLX_HOSTFILE"]) as f:
                hosts = json.load(f)
            return str(hosts[0][0]).rsplit(":", 1)[0]
        if os.environ.get("MLX_JACCL_COORDINATOR"):
            return os.environ["MLX_JACCL_COORDINATOR"].rsplit(":", 1)[0]
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        pass
    return None


class World:
    """This process's place in a run: ``rank`` of ``size``; a single process is a world of one,
    where every method is a no-op that returns its input (no collective)."""

    def __init__(self, group=None):
        self.group = group
        self.rank = group.rank() if group is not None else 0
        self.size = group.size() if group is not None else 1
        self.failure: str | None = None        # why a peer was lost (set by the heartbeat thread)
        self.heartbeat = None
        self.fatal_handlers: list = []          # (kind, message, hint) -> None, run before a hard exit
        self._handled = threading.Event()       # the main thread is reporting the failure itself
        self._lost = threading.Event()

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # -- collectives ------------------------------------------------------------------------------
    def all_sum(self, x: mx.array) -> mx.array:
        return mx.distributed.all_sum(x, group=self.group) if self.size > 1 else x

    def broadcast(self, x: mx.array) -> mx.array:
        """Rank 0's ``x`` on every rank (collective): the sum of rank 0's array and zeros."""
        if self.size == 1:
            return x
        return mx.distributed.all_sum(x if self.is_main else mx.zeros_like(x), group=self.group)

    def any(self, flag: bool) -> bool:
        """True on every rank when any rank's flag is (collective): a Stop reaches one rank, all stop."""
        if self.size == 1:
            return bool(flag)
        return mx.distributed.all_sum(mx.array([int(bool(flag))]), group=self.group).item() > 0

    def from_main(self, flag: bool) -> bool:
        """Rank 0's decision (e.g. early stopping) on every rank (collective)."""
        if self.size == 1:
            return bool(flag)
        return self.broadcast(mx.array([int(bool(flag))])).item() > 0

    def sum_ints(self, *values: int) -> list[int]:
        if self.size == 1:
            return [int(v) for v in values]
        return [int(v) for v in mx.distributed.all_sum(mx.array(values, dtype=mx.int64), group=self.group).tolist()]

    def max_ints(self, values: list[int]) -> list[int]:
        if self.size == 1:
            return [int(v) for v in values]
        return [int(v) for v in mx.distributed.all_max(mx.array(values, dtype=mx.int64), group=self.group).tolist()]

    def check_same(self, facts: dict[str, int]) -> None:
        """Refuse to train when the ranks disagree on the data or the model (collective): a data file
        that differs between two Macs would otherwise shard the wrong rows without a word."""
        if self.size == 1:
            return
        values = mx.array([int(v) & 0x7FFFFFFFFFFF for v in facts.values()], dtype=mx.int64)
        seen = np.array(mx.distributed.all_gather(values[None], group=self.group)).reshape(self.size, -1)
        differ = [(name, r) for r in range(1, self.size) for i, name in enumerate(facts) if seen[r, i] != seen[0, i]]
        if differ:
            from engine.errors import TrainingError
            what = ", ".join(sorted({name for name, _ in differ}))
            ranks = ", ".join(str(r) for r in sorted({r for _, r in differ}))
            raise TrainingError("bad_data", f"The processes of this distributed run disagree on: {what} "
                                            f"(rank {ranks} vs rank 0).",
                                "Every machine needs the same data file and the same model (same paths, same "
                                "content) and the same settings; copy them over and start again.")

    def share_start(self, model, optimizer, saved: dict | None) -> dict | None:
        """Rank 0's weights, optimizer state, RNG and (resumed) position on every rank (collective).

        Rank 0 alone reads a checkpoint (the others may not even have the folder); a fresh run is
        shared too, so every rank starts from identical weights whatever its copy of the model.
        Returns ``saved`` on rank 0, and on the others what they need of it (or None)."""
        from engine.models.dropout import set_global_key
        if self.size == 1:
            return saved
        trees = {"model": dict(tree_flatten(model.parameters())), "optimizer": dict(tree_flatten(optimizer.state))}
        shared = {}
        for name, flat in trees.items():
            keys = sorted(flat)
            self.check_same({f"{name} state layout": zlib.crc32("|".join(keys).encode())})
            out = {}
            for i, key in enumerate(keys):
                out[key] = self.broadcast(flat[key])
                if i % 32 == 31:
                    mx.eval(out)  # bounded graph; each leaf replaces the old one
            mx.eval(out)
            shared[name] = out
        model.update(tree_unflatten(list(shared["model"].items())))
        optimizer.state = tree_unflatten(list(shared["optimizer"].items()))
        set_global_key(self.broadcast(mx.random.state[0]))
        position = saved and [1, saved["step"], saved["sampler"]["epoch"], saved["sampler"]["batches_consumed"]]
        has, step, epoch, consumed = self.broadcast(mx.array(position or [0, 0, 0, 0], dtype=mx.int64)).tolist()
        mx.eval(model.parameters(), optimizer.state)
        if self.is_main or not has:
            return saved
        return {"step": step, "sampler": {"epoch": epoch, "batches_consumed": consumed}, "best": {}, "history": []}

    def align_lengths(self, batch: dict, pad_id: int, left: bool) -> dict:
        """Pad every text column to its longest across the ranks (collective; late interaction with
        gathered documents needs the same token count on every rank)."""
        if self.size == 1 or "inputs" not in batch:
            return batch
        longest = self.max_ints([x["input_ids"].shape[1] for x in batch["inputs"]])
        inputs = []
        for x, length in zip(batch["inputs"], longest):
            extra = length - x["input_ids"].shape[1]
            pad = lambda a, value: mx.pad(a, [(0, 0), (extra, 0) if left else (0, extra)], constant_values=value)
            inputs.append({k: pad(v, pad_id if k == "input_ids" else 0) for k, v in x.items()} if extra else x)
        return {**batch, "inputs": inputs}

    # -- failures ---------------------------------------------------------------------------------
    def peer_lost(self, message: str, grace_s: float = 2.0) -> None:
        """Called by the heartbeat thread. The main thread usually notices too (its next collective
        fails) and reports the error itself; when it is stuck in a collective that will never
        return, this reports it after ``grace_s`` and ends the process."""
        if self._lost.is_set():
            return
        self.failure = message
        self._lost.set()
        if self.heartbeat is not None:
            self.heartbeat.report_failure(message)   # rank 0 tells the remaining ranks
        timer = threading.Timer(grace_s, self._hard_exit, args=(message,))
        timer.daemon = True
        timer.start()

    def handling_failure(self) -> None:
        """The main thread is reporting an error: the heartbeat thread must not end the process."""
        self._handled.set()

    def wait_for_failure(self, timeout_s: float = 1.5) -> str | None:
        """The peer's reason, when the heartbeat brings one shortly after a collective failed."""
        self._lost.wait(timeout_s)
        return self.failure

    def _hard_exit(self, message: str) -> None:
        if self._handled.is_set():
            return
        for handler in self.fatal_handlers:
            try:
                handler(PEER_LOST, message, LOST_HINT)
            except Exception:  # noqa: BLE001 — the exit below must happen
                pass
        # The main thread is blocked in a collective and cannot print; this is the process's last word.
        sys.stderr.write(f"error: {message}\nhint: {LOST_HINT}\n")
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(1)

    def finish(self) -> None:
        """Training's collectives are over: say goodbye so the peers do not take the exit for a crash."""
        if self.heartbeat is not None:
            self.heartbeat.close()
            self.heartbeat = None

    def fail(self, message: str) -> None:
        """This rank failed: tell the peers why before the process ends."""
        if self.heartbeat is not None:
            self.heartbeat.report_failure(message)
            self.heartbeat.close(goodbye=False)
            self.heartbeat = None


def share_cores(rank: int) -> None:
    """Ranks on the same machine split its cores: OpenBLAS threads spin while they wait, and two
    processes each spinning on every core stalled a 2-core machine for seconds per step."""
    from engine.backend import info
    path = info().get("path")
    if not path or os.environ.get("OPENBLAS_NUM_THREADS") or not os.environ.get("MLX_HOSTFILE"):
        return
    try:
        with open(os.environ["MLX_HOSTFILE"]) as f:
            ips = [str(h[0]).rsplit(":", 1)[0] for h in json.load(f)]
        import ctypes
        threads = max(1, (os.cpu_count() or 1) // ips.count(ips[rank]))
        ctypes.CDLL(path).openblas_set_num_threads(threads)
    except (OSError, ValueError, IndexError, TypeError, AttributeError):
        pass


def init_world(peer_timeout_s: float = 60.0, *, heartbeat: bool = True, fatal_handlers=()) -> World:
    """Join the run that ``mlx.launch`` started (idempotent). A process started alone is a world of one.
    ``fatal_handlers`` (kind, message, hint) run before the process ends on a lost peer, including a
    peer that never joins (``mx.distributed.init`` waits for it forever) within ``peer_timeout_s``."""
    global _ACTIVE
    if _ACTIVE is not None:
        return _ACTIVE
    from engine.errors import TrainingError
    launched = any(os.environ.get(k) for k in ("MLX_RANK", "MLX_HOSTFILE", "OMPI_COMM_WORLD_RANK", "MLX_JACCL_COORDINATOR"))
    if not launched:
        _ACTIVE = World()   # `raclate train --distributed` on its own: one process, nothing to join
        return _ACTIVE
    waiting = World()
    waiting.fatal_handlers = list(fatal_handlers)
    timer = threading.Timer(max(peer_timeout_s, 10.0), waiting._hard_exit, args=(
        f"Not every process of the distributed run joined within {max(peer_timeout_s, 10.0):.0f} s (this is rank "
        f"{launch_rank()}); another one failed to start or cannot be reached.",))
    timer.daemon = True
    timer.start()
    try:
        group = mx.distributed.init(strict=True)
    except RuntimeError as exc:
        timer.cancel()
        raise TrainingError("bad_input", f"Could not join the distributed run: {exc}",
                            "Start distributed training with `raclate launch -n 2 -- train ...` (this machine) or "
                            "`raclate launch --hosts mac1,mac2 -- train ...`; see README 'Train on several Macs'.") from None
    timer.cancel()
    world = World(group if group.size() > 1 else None)
    world.fatal_handlers = list(fatal_handlers)
    share_cores(world.rank)
    if world.size > 1 and heartbeat:
        from engine.training.heartbeat import Heartbeat
        world.heartbeat = Heartbeat(world.rank, world.size, peer_timeout_s, world.peer_lost)
        world.heartbeat.start(world, rank0_address())
    _ACTIVE = world
    return world


def peer_failure(exc: BaseException) -> tuple[str, str, str] | None:
    """(kind, message, hint) when ``exc`` is a collective that failed because another rank went away."""
    world = _ACTIVE
    text = str(exc)
    if world is None or world.size == 1 or not isinstance(exc, RuntimeError):
        return None
    if not (world.failure or "[ring]" in text or "[distributed]" in text or "peer" in text.lower()):
        return None
    reason = world.failure or world.wait_for_failure() or f"Lost the connection to another process of the run ({text})."
    return PEER_LOST, reason, LOST_HINT


def gather_group(enabled: bool):
    """The group to gather in-batch negatives over, or None (off, or a single process)."""
    world = _ACTIVE
    return world.group if enabled and world is not None and world.size > 1 else None


def gather_rows(x: mx.array, group) -> mx.array:
    """Every rank's ``x`` [b, ...] stacked in rank order → [N*b, ...], differentiably.

    ``mx.distributed.all_gather``'s own VJP keeps only this rank's part of this rank's cotangent.
    But rank r's rows also enter every other rank's loss, so their gradient is the sum over ranks
    of each rank's cotangent for those rows: ``all_sum(cotangent)[r*b:(r+1)*b]``. With that,
    averaging the parameter gradients over ranks gives the gradient of the global-batch loss."""
    rank = group.rank()

    @mx.custom_function
    def gather(rows):
        return mx.distributed.all_gather(rows, group=group)  # (N*b, ...)

    @gather.vjp
    def gather_vjp(primals, cotangent, output):
        rows = primals[0] if isinstance(primals, (list, tuple)) else primals
        b = rows.shape[0]
        return (mx.distributed.all_sum(cotangent, group=group)[rank * b:(rank + 1) * b],)

    return gather(x)


def gather_plain(x: mx.array, group) -> mx.array:
    """all_gather for arrays without gradients (text hashes, masks)."""
    return mx.distributed.all_gather(x, group=group)


def fingerprint(values) -> int:
    """A stable 31-bit digest of a sequence of ints (e.g. the training rows' token lengths)."""
    return zlib.crc32(np.asarray(values, dtype=np.int64).tobytes()) & 0x7FFFFFFF

