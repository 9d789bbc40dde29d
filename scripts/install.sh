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

# apt_install LABEL REQUIRE_VAR WHAT_FAILS MISSING_FN PACKAGES...: Debian packages a test needs, installed with
# apt-get when MISSING_FN says they are missing, as root or with a password-less sudo. The pipeline itself needs
# none of them, so where that is impossible this warns (WHAT_FAILS says which tests will fail) and goes on; with
# REQUIRE_VAR=1 in the environment (.ci/run sets it) it is an install failure instead.
apt_install() {
  local label="$1" require="$2" fails="$3" missing="$4"
  shift 4
  "$missing" || return 0
  local sudo="" problem=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo -n"
  if ! command -v apt-get >/dev/null 2>&1; then
    problem="$label are missing and there is no apt-get here"
  elif [ -n "$sudo" ] && ! sudo -n true 2>/dev/null; then
    problem="$label are missing and apt-get needs root (sudo asks for a password)"
  else
    echo "install.sh: apt-get install $* (for $fails)"
    if ! { $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq \
           && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@"; }; then
      problem="apt-get install $* failed"
    elif "$missing"; then
      problem="apt-get installed $* but $("$missing" --which) is still not found"
    fi
  fi
  [ -z "$problem" ] && return 0
  if [ "${!require:-}" = 1 ]; then
    echo "install.sh: step '$label' failed: $problem" >&2
    exit 1
  fi
  echo "install.sh: WARNING: $problem; $fails will fail until 'apt-get install $*'" >&2
}

# The browser test (tests/test_browser.py) drives Debian's chromium through chromium-driver.
browser_missing() {
  if [ "${1:-}" = --which ]; then echo "${GANPIPE_CHROMIUM:-chromium} or ${GANPIPE_CHROMEDRIVER:-chromedriver} on PATH"; return; fi
  ! command -v "${GANPIPE_CHROMIUM:-chromium}" >/dev/null 2>&1 || ! command -v "${GANPIPE_CHROMEDRIVER:-chromedriver}" >/dev/null 2>&1
}
apt_install "chromium and chromium-driver" GANPIPE_REQUIRE_BROWSER "tests/test_browser.py" browser_missing \
  chromium chromium-driver

# The shared-tracking-server test (tests/test_tracking_server.py) starts a throwaway PostgreSQL cluster with
# Debian's initdb and pg_ctl (/usr/lib/postgresql/<version>/bin, or $GANPIPE_POSTGRES_BIN).
postgres_missing() {
  if [ "${1:-}" = --which ]; then echo "initdb and pg_ctl in ${GANPIPE_POSTGRES_BIN:-/usr/lib/postgresql/*/bin}"; return; fi
  local dir
  for dir in ${GANPIPE_POSTGRES_BIN:-/usr/lib/postgresql/*/bin}; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && return 1
  done
  return 0
}
apt_install "postgresql" GANPIPE_REQUIRE_POSTGRES "tests/test_tracking_server.py" postgres_missing postgresql
