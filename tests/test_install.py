"""scripts/install.sh and .ci/run stop on a failed pip step. Both scripts are copied into a tmp
directory and run with ``PYTHON`` pointing at a fake interpreter: its ``-m venv`` makes a .venv whose
python is the fake again, and its ``-m pip install`` fails when the arguments contain ``$FAKE_PIP_FAIL``.
Nothing is installed or downloaded, and the real .venv is not touched."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# pip prints "... is ignored" warnings on a successful step; install.sh filters them out.
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "$*" >> "$FAKE_LOG"
case "$1 $2" in
  "-m venv")
    mkdir -p "$3/bin" && cp "$0" "$3/bin/python" && exit 0 ;;
  "-m pip")
    echo "WARNING: the option --foo is ignored" >&2
    if [ -n "${FAKE_PIP_FAIL:-}" ] && [[ "$*" == *"$FAKE_PIP_FAIL"* ]]; then
      echo "ERROR: No matching distribution found" >&2
      exit 1
    fi
    exit 0 ;;
  "-m pytest")
    echo "fake pytest ran" && exit 0 ;;
esac
[ "$1" = "-c" ] && echo "ganpipe installed: fake" && exit 0
exit 3
"""


def run_script(tmp_path: Path, script: str, fail: str = "") -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a copy of ``script`` (relative to the repo root) in a tmp repo; return the result and the
    fake interpreter's call log."""
    root = tmp_path / "repo"
    for name in ("scripts/install.sh", ".ci/run"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    log = tmp_path / "calls.log"
    env = {"PATH": os.environ["PATH"], "PYTHON": str(fake), "FAKE_LOG": str(log), "FAKE_PIP_FAIL": fail}
    result = subprocess.run(["bash", str(root / script)], env=env, capture_output=True, text=True, timeout=60)
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_install_succeeds_and_filters_ignored_warnings(tmp_path):
    # Every pip step prints only an "is ignored" line, so grep -v prints nothing and exits 1: not a failure.
    result, calls = run_script(tmp_path, "scripts/install.sh")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ganpipe installed: fake" in result.stdout
    assert "is ignored" not in result.stdout + result.stderr
    assert sum("-m pip install" in call for call in calls) == 3


def test_install_fails_on_a_failed_pip_step(tmp_path):
    result, calls = run_script(tmp_path, "scripts/install.sh", fail="torch==")
    assert result.returncode != 0
    assert "step 'torch and torchvision' failed" in result.stderr
    assert "No matching distribution found" in result.stdout  # pip's own error is shown
    assert not any("-e .[pipeline,test]" in call for call in calls)  # the next step did not run
    assert "ganpipe installed" not in result.stdout


def test_ci_run_fails_before_the_tests_when_install_fails(tmp_path):
    result, calls = run_script(tmp_path, ".ci/run", fail="[pipeline,test]")
    assert result.returncode != 0
    assert "step 'ganpipe with the pipeline and test extras' failed" in result.stderr
    assert "fake pytest ran" not in result.stdout
    assert not any("-m pytest" in call for call in calls)
