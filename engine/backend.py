"""Fast MLX on Linux: load an optimized OpenBLAS before anything imports ``mlx.core``.

The ``mlx[cpu]`` wheel for Linux links a slow reference BLAS (~5 GFLOP/s on a 1024² matmul).
When an optimized ``libopenblas`` is loaded first with ``RTLD_GLOBAL``, the dynamic linker
resolves MLX's ``sgemm``/``cblas_*`` symbols to it instead (~190 GFLOP/s on 2 cores).
On macOS MLX uses Accelerate/Metal and this module does nothing.

``engine/__init__.py`` imports this module first, so ``import engine`` is enough.
Set ``RACLATE_BLAS=/path/to/libopenblas.so`` to choose a library, or ``RACLATE_BLAS=none``
to keep the wheel's own BLAS (used by ``benchmarks/matmul.py`` to measure the gain).

Vectorised compiled kernels (Linux): ``mx.compile`` fuses elementwise graphs into C++ loops that MLX
builds with a fixed ``g++ -std=c++17 -O3`` command taken from ``PATH``. GCC leaves those loops scalar:
they write through plain pointers (a fused AdamW update has 4 inputs and 3 outputs, more overlap checks
than GCC's budget of 10), and ``std::sqrt``/``pow`` must set ``errno``, so even the loop-invariant bias
corrections are recomputed per element. This module puts a ``g++`` wrapper first on ``PATH`` that adds
``-fno-math-errno --param vect-max-version-for-alias-checks=64``: the same loops, vectorised and with the
invariants hoisted, bit-identical results (no fast-math, no FMA contraction in ISO C++ mode; the overlap
checks run at run time). MLX's AdamW kernel of a 30522×256 matrix goes from ~150 to ~9 ms
(``benchmarks/kernel_flags.py``). Kernels MLX cached before without these flags are removed once (a
marker file in MLX's cache folder records it). ``RACLATE_KERNEL_FLAGS=0`` turns this off.
"""
from __future__ import annotations

import ctypes
import glob
import os
import shutil
import sys
import tempfile
import threading
from contextlib import contextmanager

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


# OpenBLAS picks its kernels from the CPU model it reads with CPUID. Inside some virtual machines it does not
# know the model and falls back to "Prescott" (SSE3 only): measured here on an AVX-512 Xeon VM, a 1024²
# float32 matmul ran at 25 GFLOP/s with the fallback and at 205 GFLOP/s with OPENBLAS_CORETYPE=SkylakeX
# (110 with Haswell). The CPU's own feature flags say which kernels it can run; a user's
# OPENBLAS_CORETYPE wins.
_CORETYPES = (("SkylakeX", {"avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}),
              ("Haswell", {"avx2", "fma"}))


def openblas_coretype(flags: set[str]) -> str | None:
    """The OpenBLAS kernel family for a CPU with these /proc/cpuinfo ``flags`` (None: leave it to OpenBLAS)."""
    return next((name for name, needed in _CORETYPES if needed <= flags), None)


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((l for l in f if l.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.partition(":")[2].split())


def _load() -> None:
    if sys.platform != "linux":
        return
    if "OPENBLAS_CORETYPE" not in os.environ and os.uname().machine == "x86_64":
        coretype = openblas_coretype(_cpu_flags())
        if coretype:   # read by OpenBLAS when it loads (below), and by processes this one starts
            os.environ["OPENBLAS_CORETYPE"] = coretype
    _state["coretype"] = os.environ.get("OPENBLAS_CORETYPE")
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
            lib = ctypes.CDLL(path, mode=os.RTLD_GLOBAL | os.RTLD_NOW)
        except OSError as exc:  # e.g. cmeel's build without libgfortran5
            _state["error"] = f"{path}: {exc}"
            continue
        threads = all(hasattr(lib, f"openblas_{op}_num_threads") for op in ("get", "set"))
        _state.update(blas="openblas", path=path, error=None, library=lib if threads else None)
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


KERNEL_FLAGS = ("-fno-math-errno", "--param", "vect-max-version-for-alias-checks=64")
PCH_FLAGS = "-std=c++17 -O3 -Wall -fPIC"   # MLX's own options for its kernels (mlx/backend/cpu/compiled.cpp)
_MARKER = ".raclate-kernel-flags"


# The wrapper also builds the library under a temporary name and renames it into place: MLX takes an
# existing file for a finished kernel, and two processes compiling the same kernel on a cold cache
# (the ranks of a distributed run on one machine) could otherwise load a half-written library.
# Every kernel includes MLX's preamble header (given with -I): the wrapper precompiles it once, beside the
# kernels of that MLX version, with MLX's own options (PCH_FLAGS); g++ uses the .gch only when the
# options match, else it reads the header as before. A kernel then compiles ~4× faster (time to the
# first step on a machine whose kernel cache is empty).
_SHIM = """#!/bin/sh
# RACLATE Tuner: MLX's kernel compiler with vectorising flags (engine/backend.py). Written by the engine.
out=""; inc=""; prev=""
for arg in "$@"; do [ "$prev" = "-o" ] && out="$arg"; [ "$prev" = "-I" ] && inc="$arg"; prev="$arg"; done
[ -n "$out" ] || exec "{real}" {flags} "$@"
tmp="$out.$$.tmp"; n=$#; prev=""
for arg in "$@"; do
  if [ "$prev" = "-o" ]; then set -- "$@" "$tmp"; else set -- "$@" "$arg"; fi
  prev="$arg"
done
shift "$n"
if [ -n "$inc" ]; then
  pch="$(dirname "$out")/.pch"; gch="$pch/mlx/backend/cpu/compiled_preamble.h.gch"
  if [ ! -f "$gch" ] && mkdir -p "$pch/mlx/backend/cpu"; then
    "{real}" {flags} {pch_flags} -x c++-header -I "$inc" "$inc/mlx/backend/cpu/compiled_preamble.h" -o "$gch.$$.tmp" 2>/dev/null && mv -f "$gch.$$.tmp" "$gch" || rm -f "$gch.$$.tmp"
  fi
  [ -f "$gch" ] && set -- -I "$pch" "$@"
fi
"{real}" {flags} "$@" || {{ status=$?; rm -f "$tmp"; exit "$status"; }}
mv -f "$tmp" "$out"
"""


def _shim_dir() -> str:
    """A folder only this user can write (the shim runs as a compiler): ~/.cache/raclate/kernel-cc."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "raclate", "kernel-cc")


def _mlx_kernel_dirs() -> list[str]:
    """MLX's kernel cache, ``<temp>/mlx/<version>/cpu`` (std::filesystem::temp_directory_path)."""
    temp = next((os.environ[k] for k in ("TMPDIR", "TMP", "TEMP", "TEMPDIR") if os.environ.get(k)), "/tmp")
    try:
        from importlib.metadata import version
        dirs = [os.path.join(temp, "mlx", version("mlx"), "cpu")]
    except Exception:  # noqa: BLE001  (no metadata, e.g. a frozen bundle: every cached version)
        dirs = []
    return sorted(set(dirs + glob.glob(os.path.join(temp, "mlx", "*", "cpu"))))


def _drop_unflagged_kernels(flags: str) -> None:
    """Remove cached kernels built without ``flags`` (MLX reuses a cached kernel by name and would
    never rebuild it), once per cache folder; a marker records that the folder holds flagged ones."""
    for folder in _mlx_kernel_dirs():
        marker = os.path.join(folder, _MARKER)
        try:
            with open(marker) as f:
                if f.read() == flags:
                    continue
        except OSError:
            pass
        try:
            os.makedirs(folder, exist_ok=True)
            for lib in glob.glob(os.path.join(folder, "*.so")):
                os.remove(lib)  # a process that has it loaded keeps its mapping
            shutil.rmtree(os.path.join(folder, ".pch"), ignore_errors=True)   # the header built with the old flags
            with open(marker, "w") as f:
                f.write(flags)
        except OSError:  # another user's cache, read-only temp: kernels stay as they are
            pass


def _vectorize_kernels() -> None:
    if sys.platform != "linux":
        return
    shim_dir = _shim_dir()
    own = os.path.realpath(shim_dir)
    path = [d for d in os.environ.get("PATH", os.defpath).split(os.pathsep) if d and os.path.realpath(d) != own]
    os.environ["PATH"] = os.pathsep.join(path)  # no shim unless set up below (a child inherits PATH)
    if os.environ.get("RACLATE_KERNEL_FLAGS", "1").strip() == "0":
        return
    real = shutil.which("g++", path=os.environ["PATH"])
    if real is None:  # MLX then runs its uncompiled kernels; nothing to tune
        return
    flags = " ".join(KERNEL_FLAGS)
    script = _SHIM.format(real=real, flags=flags, pch_flags=PCH_FLAGS)
    shim = os.path.join(shim_dir, "g++")
    try:
        os.makedirs(shim_dir, mode=0o700, exist_ok=True)
        with open(shim) as f:
            current = f.read()
    except OSError:
        current = None
    try:
        if current != script:  # written whole, then renamed: a concurrent compile sees old or new
            fd, tmp = tempfile.mkstemp(dir=shim_dir)
            with os.fdopen(fd, "w") as f:
                f.write(script)
            os.chmod(tmp, 0o755)
            os.replace(tmp, shim)
    except OSError as exc:
        _state["kernel_flags_error"] = f"{shim}: {exc}"
        return
    os.environ["PATH"] = os.pathsep.join([shim_dir] + path)
    _drop_unflagged_kernels(flags)
    _state["kernel_flags"] = flags


def info() -> dict:
    """Which BLAS MLX uses: {'blas': 'openblas'|'reference'|'accelerate', 'path': ..., 'error': ...,
    'coretype': OpenBLAS's kernel family when set (Linux x86-64)}."""
    return {k: v for k, v in _state.items() if k != "library"}


def inference_lanes() -> int:
    """Over how many MLX streams inference splits a batch's rows on the CPU, computing the parts at once
    (engine/inference/encode.py: run_in_lanes).

    MLX's CPU backend runs a stream's elementwise kernels, reductions and softmax on one thread; only the
    matrix products use the other cores (OpenBLAS's threads, which spin while they wait). Two streams with
    one BLAS thread each keep both cores busy through a whole layer: on 2 cores, 40 compiled MiniLM forward
    passes of 32×32 tokens took 6.2–6.8 s instead of 7.8–8.7 s (``benchmarks/encode_throughput.py`` times
    ``encode`` with one lane and with two). Two lanes on 2+ cores where OpenBLAS is loaded (its thread count
    can be set: cores / lanes each), else one; ``RACLATE_INFERENCE_LANES=N`` overrides."""
    chosen = os.environ.get("RACLATE_INFERENCE_LANES", "").strip()
    if chosen.isdigit() and int(chosen) > 0:
        return int(chosen)
    return min(2, os.cpu_count() or 1) if _state.get("library") is not None else 1


_blas_lock = threading.Lock()
_blas_users = [0, None]   # blocks inside `blas_threads` now, OpenBLAS's thread count before the first


@contextmanager
def blas_threads(count: int):
    """OpenBLAS uses ``count`` threads (at least 1) inside the block and its own number again once the last
    block open in this process ends (blocks may overlap in threads); nothing where OpenBLAS is not loaded.
    Process-wide: MLX evaluates lazily, so the block must enclose the evaluation, not only the graph."""
    lib = _state.get("library")
    if lib is None:
        yield
        return
    with _blas_lock:
        if _blas_users[0] == 0:
            _blas_users[1] = lib.openblas_get_num_threads()
        _blas_users[0] += 1
        lib.openblas_set_num_threads(max(1, int(count)))
    try:
        yield
    finally:
        with _blas_lock:
            _blas_users[0] -= 1
            if _blas_users[0] == 0:
                lib.openblas_set_num_threads(_blas_users[1])


_load()
_vectorize_kernels()
