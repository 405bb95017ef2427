#!/usr/bin/env bash
# Set-up on a fresh machine: the Fashion-MNIST dataset, then a venv in .venv with the CPU
# build of torch and prunekit with all extras (dev). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# 1. The dataset: Debian's dataset-fashion-mnist (files in /usr/share/datasets/fashion-mnist/),
#    unless $PRUNEKIT_DATA points at a copy. Installed here when we may; else stop at once.
DATA_PKG=dataset-fashion-mnist
DATA_DIR=${PRUNEKIT_SYSTEM_DATA:-/usr/share/datasets/fashion-mnist}  # overridable for tests
if [ -z "${PRUNEKIT_DATA:-}" ] && [ ! -d "$DATA_DIR" ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing $DATA_PKG (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$DATA_PKG" >/dev/null
  else
    echo "setup: Fashion-MNIST is missing; run: sudo apt-get install $DATA_PKG" \
      "(or set PRUNEKIT_DATA to a folder with its IDX files), then run this script again" >&2
    exit 1
  fi
fi

# 2. The venv.
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q -c scripts/constraints-cpu.txt)
.venv/bin/python -m pip install -q --upgrade pip
# torch first, the CPU build pinned in the constraints file: a bare `torch` from PyPI is the
# multi-GB CUDA build. A local wheel or mirror that has it wins, else PyTorch's CPU index.
TORCH_INDEX=${PRUNEKIT_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}
"${PIP[@]}" torch 2>/dev/null || "${PIP[@]}" --extra-index-url "$TORCH_INDEX" torch
"${PIP[@]}" -e ".[dev]"  # every optional extra (ray, onnx, transformers, lm, ...) and the test tools

# 3. What two optional tests need from the system (they skip, saying so, without it).
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 ||
  echo "setup: note: chromium is not installed; the report's browser test will skip" >&2
command -v g++ >/dev/null 2>&1 ||
  echo "setup: note: g++ is not installed; deploy runtime 'compile' is unavailable" >&2
echo "setup: done (.venv)" >&2
