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


# apt-get and sudo stand-ins: they log their arguments; apt-get fails when they contain $FAKE_APT_FAIL and
# otherwise "installs" the browser (two commands in the fake bin folder) or PostgreSQL (initdb and pg_ctl in
# $GANPIPE_POSTGRES_BIN), whichever it was asked for.
FAKE_APT = r"""#!/usr/bin/env bash
echo "apt-get $*" >> "$FAKE_LOG"
if [ -n "${FAKE_APT_FAIL:-}" ] && [[ "$*" == *"$FAKE_APT_FAIL"* ]]; then
  echo "E: Unable to locate package" >&2
  exit 100
fi
if [[ "$*" == *"install "*chromium* ]]; then
  for cmd in "$GANPIPE_CHROMIUM" "$GANPIPE_CHROMEDRIVER"; do printf '#!/bin/sh\n' > "$FAKE_BIN/$cmd"; chmod +x "$FAKE_BIN/$cmd"; done
fi
if [[ "$*" == *"install "*postgresql* ]]; then
  mkdir -p "$GANPIPE_POSTGRES_BIN"
  for cmd in initdb pg_ctl; do printf '#!/bin/sh\n' > "$GANPIPE_POSTGRES_BIN/$cmd"; chmod +x "$GANPIPE_POSTGRES_BIN/$cmd"; done
fi
exit 0
"""


def run_script(tmp_path: Path, script: str, fail: str = "", *, browser: bool = True, postgres: bool = True,
               apt_fail: str = "", env_extra: dict | None = None) -> tuple[subprocess.CompletedProcess, list[str]]:
    """Run a copy of ``script`` (relative to the repo root) in a tmp repo; return the result and the
    fake interpreter's and apt-get's call log. ``browser``/``postgres``: whether the browser commands /
    PostgreSQL's initdb and pg_ctl exist already (looked up under names and in a folder only the test
    holds); apt-get is always the fake one."""
    root = tmp_path / "repo"
    for name in ("scripts/install.sh", ".ci/run"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    fake = tmp_path / "fake-python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    names = {"GANPIPE_CHROMIUM": "fake-chromium-for-test", "GANPIPE_CHROMEDRIVER": "fake-chromedriver-for-test"}
    for tool, text in (("apt-get", FAKE_APT), ("sudo", '#!/usr/bin/env bash\n[ "$1" = -n ] && shift\nexec "$@"\n')):
        (bin_dir / tool).write_text(text)
        (bin_dir / tool).chmod(0o755)
    if browser:
        for name in names.values():
            (bin_dir / name).write_text("#!/bin/sh\n")
            (bin_dir / name).chmod(0o755)
    names["GANPIPE_POSTGRES_BIN"] = str(tmp_path / "fake-postgresql" / "bin")
    if postgres:
        Path(names["GANPIPE_POSTGRES_BIN"]).mkdir(parents=True)
        for name in ("initdb", "pg_ctl"):
            (Path(names["GANPIPE_POSTGRES_BIN"]) / name).write_text("#!/bin/sh\n")
            (Path(names["GANPIPE_POSTGRES_BIN"]) / name).chmod(0o755)
    log = tmp_path / "calls.log"
    env = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "PYTHON": str(fake), "FAKE_LOG": str(log),
           "FAKE_PIP_FAIL": fail, "FAKE_APT_FAIL": apt_fail, "FAKE_BIN": str(bin_dir), **names, **(env_extra or {})}
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


def test_install_leaves_an_installed_browser_alone(tmp_path):
    result, calls = run_script(tmp_path, "scripts/install.sh", browser=True)
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith("apt-get")]


def test_install_gets_a_missing_browser_with_apt(tmp_path):
    result, calls = run_script(tmp_path, "scripts/install.sh", browser=False)
    assert result.returncode == 0, result.stderr
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt[0] == "apt-get update -qq"
    assert apt[1] == "apt-get install -y -qq --no-install-recommends chromium chromium-driver"


def test_a_browser_apt_cannot_install_warns_users_and_fails_ci(tmp_path):
    result, _ = run_script(tmp_path / "user", "scripts/install.sh", browser=False, apt_fail="install")
    assert result.returncode == 0  # the pipeline needs no browser: a user's install goes on, loudly
    assert "WARNING" in result.stderr and "tests/test_browser.py will fail" in result.stderr
    result, calls = run_script(tmp_path / "ci", ".ci/run", browser=False, apt_fail="install")
    assert result.returncode != 0
    assert "step 'chromium and chromium-driver' failed" in result.stderr
    assert "fake pytest ran" not in result.stdout and not any("-m pytest" in c for c in calls)


def test_install_leaves_an_installed_postgresql_alone(tmp_path):
    result, calls = run_script(tmp_path, "scripts/install.sh", postgres=True)
    assert result.returncode == 0, result.stderr
    assert not [c for c in calls if c.startswith("apt-get")]


def test_install_gets_a_missing_postgresql_with_apt(tmp_path):
    result, calls = run_script(tmp_path, "scripts/install.sh", postgres=False)
    assert result.returncode == 0, result.stderr
    apt = [c for c in calls if c.startswith("apt-get")]
    assert apt == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends postgresql"]
    assert (tmp_path / "fake-postgresql" / "bin" / "initdb").is_file()


def test_a_postgresql_apt_cannot_install_warns_users_and_fails_ci(tmp_path):
    result, _ = run_script(tmp_path / "user", "scripts/install.sh", postgres=False, apt_fail="postgresql")
    assert result.returncode == 0  # the pipeline itself needs no PostgreSQL: a user's install goes on, loudly
    assert "WARNING" in result.stderr and "tests/test_tracking_server.py will fail" in result.stderr
    result, calls = run_script(tmp_path / "ci", ".ci/run", postgres=False, apt_fail="postgresql")
    assert result.returncode != 0
    assert "step 'postgresql' failed" in result.stderr
    assert "fake pytest ran" not in result.stdout and not any("-m pytest" in c for c in calls)


def test_the_longest_first_modules_exist():
    """tests/conftest.py's scheduling hint for the README's two workers: a renamed module would silently drop
    back to xdist's order (longest last)."""
    from conftest import LONGEST_FIRST

    assert len(set(LONGEST_FIRST)) == len(LONGEST_FIRST)
    assert [name for name in LONGEST_FIRST if not (REPO / "tests" / name).is_file()] == []
