"""The g++ shim that vectorises MLX's compiled CPU kernels (engine/backend.py): it calls the real
compiler with the extra flags, the kernels it builds are vectorised, and results are bit-identical."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine import backend
import mlx.core as mx  # noqa: E402  (after the engine: its fast BLAS first)

pytestmark = pytest.mark.skipif(sys.platform != "linux" or shutil.which("g++") is None,
                                reason="the shim is for MLX's JIT compiler on Linux")
ROOT = Path(__file__).resolve().parent.parent

# A fused AdamW update (4 inputs, 3 outputs, a sqrt) and a GELU MLP's gradient, compiled, 3 steps.
SCRIPT = r"""
import sys
import engine
import mlx.core as mx, mlx.nn as nn, mlx.optimizers as optim
import numpy as np
mx.random.seed(0)
params = {"w": mx.random.normal((300, 64)), "b": mx.random.normal((64,)), "out": mx.random.normal((64, 3))}
x, y = mx.random.normal((40, 300)), mx.random.randint(0, 3, (40,))
def loss(p):
    h = nn.gelu(x @ p["w"] + p["b"])
    return nn.losses.cross_entropy(h @ p["out"], y, reduction="mean")
opt = optim.AdamW(learning_rate=1e-2, bias_correction=True)
opt.init(params)
grad = mx.compile(mx.value_and_grad(loss))
state = [opt.state]
step = mx.compile(lambda p, g: opt.apply_gradients(g, p), inputs=state, outputs=state)
for _ in range(3):
    value, g = grad(params)
    params = step(params, g)
    mx.eval(params, opt.state)
np.savez(sys.argv[1], loss=np.array(value), **{k: np.array(v) for k, v in params.items()},
         **{"m_" + k: np.array(v["m"]) for k, v in opt.state.items() if isinstance(v, dict)})
"""


def run(tmp: Path, name: str, flags: bool) -> tuple[dict, Path]:
    """The script in a fresh process with its own kernel cache (TMPDIR) and the shim on or off."""
    temp = tmp / f"{name}-tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp), "RACLATE_KERNEL_FLAGS": "1" if flags else "0",
           "PYTHONPATH": str(ROOT)}
    out = tmp / f"{name}.npz"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return dict(np.load(out)), temp


def packed_sqrt(cache: Path) -> list[bool]:
    """Per compiled kernel with a square root: does its machine code take packed square roots?"""
    found = []
    for lib in cache.glob("mlx/*/cpu/*.so"):
        if "Sqrt" not in lib.name:
            continue
        code = subprocess.run(["objdump", "-d", str(lib)], capture_output=True, text=True).stdout
        found.append("sqrtps" in code)
    return found


def test_flagged_kernels_are_vectorised_and_give_bit_identical_results(tmp_path):
    plain, plain_cache = run(tmp_path, "plain", flags=False)
    flagged, flagged_cache = run(tmp_path, "flagged", flags=True)
    assert plain.keys() == flagged.keys() and "m_w" in plain
    for key in plain:
        assert np.array_equal(plain[key], flagged[key]), key
    assert packed_sqrt(plain_cache) == [False]    # the AdamW kernel, scalar sqrtss
    assert packed_sqrt(flagged_cache) == [True]   # the same kernel, packed sqrtps
    assert not list(flagged_cache.glob("mlx/*/cpu/*.tmp"))  # each library was built aside, then renamed
    # The preamble every kernel includes was precompiled once beside the kernels, and the shim, called as
    # MLX calls it, makes g++ take it ('!' in its -H trace).
    assert list(flagged_cache.glob("mlx/*/cpu/.pch/mlx/backend/cpu/compiled_preamble.h.gch"))
    source = next(flagged_cache.glob("mlx/*/cpu/*.cpp"))
    include = Path(mx.__file__).parent / "include"
    trace = subprocess.run([str(Path(backend._shim_dir(), "g++")), *backend.PCH_FLAGS.split(), "-shared", "-H", "-I",
                            str(include), str(source), "-o", str(tmp_path / "k.so")], capture_output=True, text=True)
    assert trace.returncode == 0 and re.search(r"^! .*compiled_preamble\.h\.gch$", trace.stderr, re.M)


def test_the_shim_builds_aside_and_renames_and_passes_failures_on(tmp_path):
    shim = Path(backend._shim_dir(), "g++")
    source = tmp_path / "kernel one.cpp"
    source.write_text('extern "C" int one() { return 1; }\n')
    out = tmp_path / "lib kernel one.so"
    done = subprocess.run([str(shim), "-std=c++17", "-O3", "-fPIC", "-shared", str(source), "-o", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.stat().st_size > 0 and sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, source.name])
    failed = subprocess.run([str(shim), "-shared", str(tmp_path / "missing.cpp"), "-o", str(tmp_path / "x.so")],
                            capture_output=True, text=True)
    assert failed.returncode != 0 and "missing.cpp" in failed.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, source.name])


def test_shim_calls_the_real_compiler_with_the_flags_even_when_already_on_path(tmp_path):
    shim_dir = backend._shim_dir()
    assert backend.info()["kernel_flags"] == " ".join(backend.KERNEL_FLAGS)
    assert os.environ["PATH"].split(os.pathsep)[0] == shim_dir
    script = Path(shim_dir, "g++").read_text()
    real = re.search(r'exec "([^"]+)"', script).group(1)
    assert os.path.realpath(os.path.dirname(real)) != os.path.realpath(shim_dir) and os.access(real, os.X_OK)
    assert " ".join(backend.KERNEL_FLAGS) in script
    # A child inherits the PATH with the shim first and imports the engine again: no shim calling itself.
    probe = "import engine, subprocess; print(subprocess.run(['g++', '--version'], capture_output=True, text=True).stdout)"
    proc = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(ROOT)},
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "g++" in proc.stdout.lower(), proc.stderr
    assert Path(shim_dir, "g++").read_text() == script


def test_kernels_cached_without_the_flags_are_removed_once(tmp_path, monkeypatch):
    cache = tmp_path / "mlx" / "0.0.1" / "cpu"
    cache.mkdir(parents=True)
    (cache / "old_kernel.so").write_bytes(b"\0")
    (cache / "old_kernel.cpp").write_text("// source")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    backend._drop_unflagged_kernels("-fsome-flag")
    assert not (cache / "old_kernel.so").exists() and (cache / "old_kernel.cpp").exists()
    assert (cache / backend._MARKER).read_text() == "-fsome-flag"
    (cache / "new_kernel.so").write_bytes(b"\0")          # built with the flags: kept from now on
    backend._drop_unflagged_kernels("-fsome-flag")
    assert (cache / "new_kernel.so").exists()
    backend._drop_unflagged_kernels("-fother-flags")      # flags changed: rebuilt once more
    assert not (cache / "new_kernel.so").exists()


def test_openblas_gets_the_kernels_the_cpu_can_run():
    """OpenBLAS falls back to SSE3 kernels ("Prescott") where it does not know the CPU model (virtual
    machines): the engine names the kernel family from the CPU's own feature flags, unless the user did."""
    from engine.backend import openblas_coretype
    avx512 = {"sse3", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512dq", "avx512vl", "avx512cd"}
    assert openblas_coretype(avx512) == "SkylakeX"
    assert openblas_coretype({"sse3", "avx", "avx2", "fma"}) == "Haswell"
    assert openblas_coretype({"sse3", "avx"}) is None
    if sys.platform != "linux" or os.uname().machine != "x86_64":
        return   # macOS: Accelerate; other Linux CPUs: OpenBLAS's own choice
    script = "import engine.backend as b, os; print(b.info().get('coretype'), os.environ.get('OPENBLAS_CORETYPE'))"
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    chosen = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                            cwd=ROOT, check=True).stdout.split()
    assert chosen[0] == chosen[1]                  # what OpenBLAS reads is what the engine reports
    mine = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=dict(env, OPENBLAS_CORETYPE="Haswell"), cwd=ROOT, check=True).stdout.split()
    assert mine == ["Haswell", "Haswell"]          # the user's choice wins
