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

# The browser test (tests/test_browser.py) drives Debian's chromium through chromium-driver. Installed with
# apt-get when missing, as root or with a password-less sudo. The pipeline itself needs no browser, so where
# that is impossible this warns and the browser test will fail (it never skips); GANPIPE_REQUIRE_BROWSER=1
# (set by .ci/run) makes it an install failure instead.
browser_missing() {
  ! command -v "${GANPIPE_CHROMIUM:-chromium}" >/dev/null 2>&1 || ! command -v "${GANPIPE_CHROMEDRIVER:-chromedriver}" >/dev/null 2>&1
}
no_browser() {
  if [ "${GANPIPE_REQUIRE_BROWSER:-}" = 1 ]; then
    echo "install.sh: step 'chromium and chromium-driver' failed: $1" >&2
    exit 1
  fi
  echo "install.sh: WARNING: $1; tests/test_browser.py will fail until 'apt-get install chromium chromium-driver'" >&2
}
if browser_missing; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
  if ! command -v apt-get >/dev/null 2>&1; then
    no_browser "chromium and chromium-driver are missing and there is no apt-get here"
  elif [ -n "$SUDO" ] && ! sudo -n true 2>/dev/null; then
    no_browser "chromium and chromium-driver are missing and apt-get needs root (sudo asks for a password)"
  else
    echo "install.sh: apt-get install chromium chromium-driver (for the browser test)"
    if ! { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium chromium-driver; }; then
      no_browser "apt-get install chromium chromium-driver failed"
    elif browser_missing; then
      no_browser "apt-get installed chromium and chromium-driver but ${GANPIPE_CHROMIUM:-chromium} or ${GANPIPE_CHROMEDRIVER:-chromedriver} is not on PATH"
    fi
  fi
fi
