"""The mutation check in CI: every core claim's breakage must still make its tests fail.

scripts/mutation_check.py copies the tracked files, applies each listed breakage (resume that never
loads, a guard that checks after the update, a NaN-blind ONNX check, weakened params.yaml gates, ...)
and runs the tests that protect it. A mutation whose code has changed is reported stale and fails
this test too, so the list is kept in step with the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_every_mutation_is_caught():
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "mutation_check.py")], cwd=REPO,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "mutations caught" in result.stdout and "not caught" not in result.stdout
