"""``dvc push`` / ``dvc pull`` through a DVC remote: a fresh clone pulls the raw data, the prepared set and
the trained model instead of recomputing them.

A tmp copy of the project (a git repository) gets raw data of its own: scikit-learn's digits exported as
``data/raw/digits-npy/images.npy`` (+ ``images.labels.npy``) and tracked with ``dvc add``; ``params.yaml``
points ``run.dataset`` at it (smoke preset). ``dvc repro`` builds every stage and ``dvc push`` sends the
cache to a local-directory remote (a stand-in for S3/GCS/SSH: the same ``dvc push``/``pull`` commands,
docs/scaling.md). Then ``git clone`` of that repository, ``dvc pull``: the clone has every output, byte
for byte, ``dvc status`` is clean and ``dvc repro`` runs no stage.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tests.test_dvc import BIN, OUTPUTS, TELEMETRY_OFF, copy_tracked_files

pytestmark = [pytest.mark.slow, pytest.mark.timeout(20 * 60)]
RAW = "data/raw/digits-npy"
# What travels through the remote (the rest of OUTPUTS are `cache: false` metrics, committed to git).
CACHED = ("data/prepared/dataset.pt", "artifacts/train/checkpoints/last.pt", "artifacts/export/generator.onnx",
          f"{RAW}/images.npy", f"{RAW}/images.labels.npy")
GIT = ["git", "-c", "user.name=ganpipe-test", "-c", "user.email=test@example.invalid", "-c", "init.defaultBranch=main"]


def env_for(root: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "GANPIPE_"))}
    env.update(TELEMETRY_OFF, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               TORCH_HOME=str(root / ".torch-home"))  # no Inception weights: the primary metric is domain_fd
    return env


def run(root: Path, *cmd: str, timeout: float = 900) -> subprocess.CompletedProcess:
    out = subprocess.run(list(cmd), cwd=root, env=env_for(root), capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(cmd)}: exit {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out


def dvc(root: Path, *args: str) -> subprocess.CompletedProcess:
    return run(root, str(BIN / "dvc"), *args)


def no_update_check(root: Path) -> None:
    (root / ".dvc" / "config.local").write_text("[core]\n    check_update = false\n")


@pytest.fixture(scope="module")
def pushed(tmp_path_factory):
    """The origin project: raw data added, every stage reproduced, the cache pushed, everything committed."""
    from sklearn.datasets import load_digits

    origin, remote = tmp_path_factory.mktemp("origin"), tmp_path_factory.mktemp("dvc-remote")
    copy_tracked_files(origin)
    no_update_check(origin)
    params = origin / "params.yaml"
    text, n = re.subn(r"(?m)^(  preset: )default\b", r"\1smoke", params.read_text())
    text, m = re.subn(r"(?m)^(  dataset: )digits\b", rf"\g<1>{RAW}/images.npy", text)
    assert n == m == 1, "params.yaml: run.preset / run.dataset not found"
    params.write_text(text)
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "project copy"]):
        run(origin, *GIT, *cmd)

    # Raw data arrives after the commit, as a user's would: DVC refuses to track what git already does.
    digits = load_digits()
    (origin / RAW).mkdir(parents=True)
    np.save(origin / RAW / "images.npy", (digits.images * 255 / 16).round().astype(np.uint8))  # (1797, 8, 8)
    np.save(origin / RAW / "images.labels.npy", digits.target.astype(np.int64))
    added = dvc(origin, "add", RAW)
    dvc(origin, "remote", "add", "-d", "storage", str(remote))
    repro = dvc(origin, "repro")
    push = dvc(origin, "push")
    # Outputs with `cache: false` (metrics, plots, Data Docs) belong in git, as DVC intends; cached ones
    # are git-ignored by DVC and travel through the remote.
    run(origin, *GIT, "add", "-A")
    run(origin, *GIT, "commit", "-q", "-m", "data and models")
    return origin, remote, added, repro, push


@pytest.fixture(scope="module")
def clone(pushed, tmp_path_factory):
    origin = pushed[0]
    clone = tmp_path_factory.mktemp("clone") / "project"
    run(origin.parent, *GIT, "clone", "-q", str(origin), str(clone))
    no_update_check(clone)
    carried = [name for name in CACHED if (clone / name).exists()]
    assert not carried, f"git carried DVC-cached files: {carried}"
    pull = dvc(clone, "pull")
    return clone, pull


def test_raw_data_is_a_dvc_pointer_in_git(pushed):
    origin, _, added, repro, _ = pushed
    pointer = origin / f"{RAW}.dvc"
    assert pointer.is_file() and "md5:" in pointer.read_text()
    tracked = run(origin, "git", "ls-files").stdout.split()
    assert f"{RAW}.dvc" in tracked and f"{RAW}/images.npy" not in tracked
    assert "Running stage 'prepare'" in repro.stdout


def test_push_fills_the_remote(pushed):
    origin, remote, _, _, push = pushed
    stored = [p for p in remote.rglob("*") if p.is_file()]
    # The raw arrays, the prepared set, the checkpoint(s) and the ONNX file at least.
    assert len(stored) >= 5, stored
    assert re.search(r"\d+ files? pushed", push.stdout), push.stdout


def test_fresh_clone_pulls_instead_of_recomputing(pushed, clone):
    origin = pushed[0]
    clone_root, pull = clone
    for name in (*OUTPUTS, *CACHED):
        assert (clone_root / name).read_bytes() == (origin / name).read_bytes(), name
    status = dvc(clone_root, "status")
    assert "Data and pipelines are up to date" in status.stdout, status.stdout
    mtimes = {name: (clone_root / name).stat().st_mtime_ns for name in OUTPUTS}
    repro = dvc(clone_root, "repro")
    assert "Running stage" not in repro.stdout and "up to date" in repro.stdout, repro.stdout
    assert {name: (clone_root / name).stat().st_mtime_ns for name in OUTPUTS} == mtimes


def test_changed_raw_data_reruns_prepare(pushed, clone):
    """The other side of the lineage: raw data that changes makes the clone's pipeline stale from prepare on."""
    clone_root = clone[0]
    labels = np.load(clone_root / RAW / "images.labels.npy")
    np.save(clone_root / RAW / "images.labels.npy", labels[::-1].copy())
    status = dvc(clone_root, "status")
    assert "prepare" in status.stdout and "modified" in status.stdout, status.stdout
