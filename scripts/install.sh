#!/usr/bin/env bash
# Create .venv and install ganpipe with its pipeline and test extras. Idempotent: a second run is quick.
# torch/torchvision are pinned and installed first with pip (uv/poetry would download CUDA wheels).
# A failed step stops the script with a non-zero exit, so `install.sh && ...` and .ci/run stop too.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

# pip_install STEP ARGS...: pip install ARGS with pip's noisy "... is ignored" lines filtered out.
# Under pipefail the pipeline's status is pip's; grep's own exit 1 ("printed nothing", the usual
# case with -q) is not a failure, any other grep status is.
pip_install() {
  local step="$1"
  shift
  if ! .venv/bin/python -m pip install -q "$@" 2>&1 | { grep -v "is ignored" || [ $? -eq 1 ]; }; then
    echo "install.sh: step '$step' failed: pip install $*" >&2
    exit 1
  fi
}

if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
pip_install "upgrade pip" --upgrade pip
pip_install "torch and torchvision" "torch==2.14.1" "torchvision==0.29.1"
pip_install "ganpipe with the pipeline and test extras" -e ".[pipeline,test]"
.venv/bin/python -c "import torch, ganmodels, pipelines.cli; print('ganpipe installed: torch', torch.__version__)"
