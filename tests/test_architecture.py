"""The shape of the code: the library stays free of orchestration, pipelines has no import cycle, and
importing either has no side effects. Read from the source (every import statement, function-level
ones included), so a lazy import inside a function cannot hide a dependency."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SERVICES = ("prefect", "mlflow", "dvc", "great_expectations", "pipelines")


def imports_of(path: Path) -> set[str]:
    """Absolute module names imported anywhere in ``path`` (relative imports resolved)."""
    package = ".".join(path.relative_to(REPO).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}  # `from pkg import module`
    return found


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("path", sorted((REPO / "ganmodels").rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_the_library_imports_no_orchestration_or_tracking_service(path):
    bad = sorted(m for m in imports_of(path) if m.split(".")[0] in SERVICES)
    assert not bad, f"{path.relative_to(REPO)} imports {bad}: ganmodels must stay a plain PyTorch library"


def test_pipelines_modules_import_each_other_without_cycles():
    modules = {module_name(p): p for p in (REPO / "pipelines").rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        targets = set()
        for imported in imports_of(path):
            # `from pipelines import stages` names the module pipelines.stages; a package import names its __init__.
            while imported and imported not in modules:
                imported = imported.rpartition(".")[0]
            if imported and imported != name and not name.startswith(imported + "."):
                targets.add(imported)
        graph[name] = targets

    def cycle_from(start: str, node: str, seen: tuple[str, ...]) -> tuple[str, ...] | None:
        for nxt in graph[node]:
            if nxt == start:
                return (*seen, nxt)
            if nxt not in seen:
                found = cycle_from(start, nxt, (*seen, nxt))
                if found:
                    return found
        return None

    cycles = [c for name in graph if (c := cycle_from(name, name, (name,)))]
    assert not cycles, "import cycles in pipelines: " + "; ".join(" -> ".join(c) for c in cycles)
    assert graph["pipelines.errors"] <= set(), "pipelines.errors must import no other pipelines module"


def test_importing_the_packages_has_no_side_effects(tmp_path):
    code = ("import os, sys; before = dict(os.environ); import ganmodels, ganmodels.models, ganmodels.metrics, "
            "ganmodels.export, pipelines.cli, pipelines.flow, pipelines.stages; "
            "changed = sorted(k for k in set(os.environ) | set(before) if os.environ.get(k) != before.get(k)); "
            "print(changed); print(sorted(os.listdir('.')))")
    (tmp_path / "cwd").mkdir()
    # Prefect itself creates its home (~/.prefect) when imported: HOME is kept apart from the cwd.
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path / "cwd", capture_output=True, text=True,
                            timeout=300, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
                                              "HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr
    env_changes, files = result.stdout.strip().splitlines()[-2:]
    assert env_changes == "[]" and files == "[]"  # no environment variable set, nothing written in the cwd
