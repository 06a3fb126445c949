"""Fast MLX on Linux: load an optimized OpenBLAS before anything imports ``mlx.core``.

The ``mlx[cpu]`` wheel for Linux links a slow reference BLAS (~5 GFLOP/s on a 1024² matmul).
When an optimized ``libopenblas`` is loaded first with ``RTLD_GLOBAL``, the dynamic linker
resolves MLX's ``sgemm``/``cblas_*`` symbols to it instead (~190 GFLOP/s on 2 cores).
On macOS MLX uses Accelerate/Metal and this module does nothing.

``engine/__init__.py`` imports this module first, so ``import engine`` is enough.
Set ``RACLATE_BLAS=/path/to/libopenblas.so`` to choose a library, or ``RACLATE_BLAS=none``
to keep the wheel's own BLAS (used by ``benchmarks/matmul.py`` to measure the gain).
"""
from __future__ import annotations

import ctypes
import glob
import os
import sys

_CANDIDATES = (
    # Debian/Ubuntu libopenblas0-pthread (what `make setup` installs)
    "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
    "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    "/usr/lib/aarch64-linux-gnu/libopenblas.so.0",
    "/usr/lib64/libopenblas.so.0",
    "/usr/lib/libopenblas.so.0",
)

_state: dict = {"blas": "accelerate" if sys.platform == "darwin" else "reference", "path": None, "error": None}


def _pip_candidates() -> list[str]:
    """cmeel-openblas ships an unprefixed libopenblas.so inside site-packages."""
    found = []
    for entry in sys.path:
        found += glob.glob(os.path.join(entry, "cmeel.prefix", "lib", "libopenblas*.so*"))
    return found


def _load() -> None:
    if sys.platform != "linux":
        return
    if "mlx.core" in sys.modules:
        _state["error"] = "mlx.core was imported before engine.backend; the wheel's reference BLAS stays active"
        return
    choice = os.environ.get("RACLATE_BLAS", "").strip()
    if choice.lower() == "none":
        return
    paths = [choice] if choice else list(_CANDIDATES) + _pip_candidates()
    for path in paths:
        if not os.path.exists(path):
            continue
        try:
            ctypes.CDLL(path, mode=os.RTLD_GLOBAL | os.RTLD_NOW)
        except OSError as exc:  # e.g. cmeel's build without libgfortran5
            _state["error"] = f"{path}: {exc}"
            continue
        _state.update(blas="openblas", path=path, error=None)
        return
    if _state["error"] is None:
        _state["error"] = ("no optimized OpenBLAS found; install it with "
                           "`apt-get install libopenblas0-pthread` (matmuls will be ~40x slower)")


def keep_freed_memory() -> bool:
    """Let glibc's malloc keep freed blocks for reuse instead of giving them back to the OS.

    MLX's CPU allocator takes every array from malloc. glibc serves blocks over its mmap threshold
    with mmap and trims the heap top on free, so every training step's fresh activations, gradients
    and optimizer states page-fault back in (~100k faults and ~20% of a MiniLM step on 2 cores,
    benchmarks/profile_step.py). A training process asks for the same sizes every step, so the
    kept blocks are reused and the peak stays that of one step. Process-wide; the Trainer calls it.
    Returns True where it applied (Linux with glibc).
    """
    if sys.platform != "linux" or _state.get("malloc_kept"):
        return bool(_state.get("malloc_kept"))
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold, m_arena_max, largest = -1, -3, -8, 2**31 - 1
    _state["malloc_kept"] = bool(libc.mallopt(m_mmap_threshold, ctypes.c_int(largest))
                                 and libc.mallopt(m_trim_threshold, ctypes.c_int(largest)))
    if os.environ.get("MALLOC_ARENA_MAX") is None:  # one heap for all threads: less kept, and faster here
        libc.mallopt(m_arena_max, ctypes.c_int(1))
    return _state["malloc_kept"]


def info() -> dict:
    """Which BLAS MLX uses: {'blas': 'openblas'|'reference'|'accelerate', 'path': ..., 'error': ...}."""
    return dict(_state)


_load()
