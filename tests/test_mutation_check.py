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
    # No unmutated baseline here: this suite runs every protecting test unmutated and fails when one fails,
    # which is what the baseline proves (the standalone script still runs it).
    result = subprocess.run([sys.executable, str(REPO / "scripts" / "mutation_check.py"), "--no-baseline"], cwd=REPO,
                            capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    assert "mutations caught" in result.stdout and "not caught" not in result.stdout


def _mutation_check():
    import importlib.util

    spec = importlib.util.spec_from_file_location("mutation_check", REPO / "scripts" / "mutation_check.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_every_mutation_still_names_code_and_tests_that_exist():
    """The fast half of the check, for ``-m "not slow"`` runs: a mutation whose code has moved (stale) or
    whose test was renamed is found in a second, not at the end of the 12-minute slow run."""
    check = _mutation_check()
    problems = [f"{m.name}: {p}" for m in check.MUTATIONS for p in check.listing_problems(m)]
    assert not problems, "\n".join(problems)
