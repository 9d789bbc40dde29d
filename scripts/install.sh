#!/usr/bin/env bash
# Create .venv and install ganpipe with its pipeline and test extras. Idempotent: a second run is quick.
# torch/torchvision are pinned and installed first with pip (uv/poetry would download CUDA wheels).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q "torch==2.14.1" "torchvision==0.29.1" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -m pip install -q -e ".[pipeline,test]" 2>&1 | grep -v "is ignored" || true
.venv/bin/python -c "import torch, ganmodels, pipelines.cli; print('ganpipe installed: torch', torch.__version__)"
