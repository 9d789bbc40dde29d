"""``dvc repro`` on a tmp copy of the project's tracked files (a fresh git repository): the stages in
dvc.yaml run the same stage functions as the Prefect flow, with the smoke preset."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "False"}
OUTPUTS = ("data/prepared/dataset.pt", "artifacts/train/checkpoints/last.pt", "artifacts/eval/metrics.json",
           "artifacts/eval/gates.json", "artifacts/export/generator.onnx", "artifacts/export/onnx_check.json")

pytestmark = pytest.mark.slow


def copy_tracked_files(dst: Path) -> None:
    """The working-tree version of every file git tracks (uncommitted edits included), nothing else."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    for name in filter(None, listed.decode().split("\0")):
        src = REPO / name
        if src.is_file():  # a tracked file deleted in the working tree is skipped
            (dst / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / name)


@pytest.fixture(scope="module")
def dvc_project(tmp_path_factory):
    root = tmp_path_factory.mktemp("dvc-project")
    copy_tracked_files(root)
    params = root / "params.yaml"
    text, count = re.subn(r"(?m)^(  preset: )default\b", r"\1smoke", params.read_text())
    assert count == 1, "params.yaml: run.preset not found"
    params.write_text(text)
    (root / ".dvc" / "config.local").write_text("[core]\n    check_update = false\n")  # no update check
    git = ["git", "-c", "user.name=ganpipe-test", "-c", "user.email=test@example.invalid",
           "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "project copy"]):
        subprocess.run(git + cmd, cwd=root, check=True, capture_output=True)

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "GANPIPE_"))}
    # The stages run `python -m pipelines.stages`: `python` must be this venv's interpreter.
    env.update(TELEMETRY_OFF, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", OMP_NUM_THREADS="1",
               TORCH_HOME=str(root / ".torch-home"))  # no Inception weights: the primary metric is domain_fd

    def dvc(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "dvc"), *args], cwd=root, env=env, capture_output=True, text=True,
                              timeout=900)

    first = dvc("repro")
    assert first.returncode == 0, f"--- stdout\n{first.stdout[-4000:]}\n--- stderr\n{first.stderr[-6000:]}"
    mtimes = {name: (root / name).stat().st_mtime_ns for name in OUTPUTS}
    second = dvc("repro")
    return root, dvc, first, second, mtimes


def test_repro_builds_every_output(dvc_project):
    root, _, first, _, _ = dvc_project
    for stage in ("prepare", "train", "evaluate", "export"):
        assert f"Running stage '{stage}'" in first.stdout
    for name in OUTPUTS:
        assert (root / name).is_file(), name
    assert (root / "artifacts" / "validation" / "data_docs" / "index.html").is_file()
    lock = yaml.safe_load((root / "dvc.lock").read_text())
    assert set(lock["stages"]) == {"prepare", "train", "evaluate", "export"}
    assert lock["stages"]["prepare"]["params"]["params.yaml"]["run"]["preset"] == "smoke"
    gates = json.loads((root / "artifacts" / "eval" / "gates.json").read_text())
    assert gates["passed"] is True and gates["gates"] == []  # the smoke preset switches every gate off


def test_trained_for_the_smoke_steps(dvc_project):
    import torch

    root = dvc_project[0]
    smoke_steps = yaml.safe_load((root / "params.yaml").read_text())["presets"]["smoke"]["train"]["steps"]
    state = torch.load(root / "artifacts/train/checkpoints/last.pt", map_location="cpu", weights_only=True)
    assert state["step"] == smoke_steps


def test_metrics_show_lists_the_evaluation(dvc_project):
    root, dvc, *_ = dvc_project
    shown = dvc("metrics", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    metrics = json.loads(shown.stdout)
    (workspace,) = metrics.values()
    data = workspace["data"]
    written = json.loads((root / "artifacts/eval/metrics.json").read_text())
    assert data["artifacts/eval/metrics.json"]["data"] == pytest.approx(written)
    assert {"domain_fd", "precision", "recall", "class_coverage"} <= set(written)
    assert data["artifacts/export/onnx_check.json"]["data"]["max_abs_diff"] <= 1e-4


def test_second_repro_is_up_to_date(dvc_project):
    root, dvc, _, second, mtimes = dvc_project
    assert second.returncode == 0, second.stderr
    assert "Running stage" not in second.stdout
    assert "Data and pipelines are up to date" in second.stdout
    assert {name: (root / name).stat().st_mtime_ns for name in OUTPUTS} == mtimes
    status = dvc("status")
    assert status.returncode == 0 and "up to date" in status.stdout


def test_prepared_data_hash_matches_a_fresh_preparation(dvc_project):
    from ganmodels.data import PreparedDataset, load_dataset
    from pipelines.config import load_run_config

    root = dvc_project[0]
    prepared = PreparedDataset.load(root / "data/prepared/dataset.pt")
    fresh = load_dataset(load_run_config(root / "params.yaml").data)
    assert prepared.data_hash == fresh.data_hash
    assert prepared.sample_shape == (1, 16, 16)


def test_loss_plot_shows_both_losses_per_step(dvc_project):
    root, dvc, *_ = dvc_project
    shown = dvc("plots", "show", "--json")
    assert shown.returncode == 0, shown.stderr
    (plot,) = json.loads(shown.stdout)["data"]["dvc.yaml::artifacts/train/losses.csv"]
    rows = plot["content"]["data"]["values"]
    steps = yaml.safe_load((root / "params.yaml").read_text())["presets"]["smoke"]["train"]["steps"]
    for field in ("d_loss", "g_loss"):
        assert sorted(int(r["step"]) for r in rows if r["field"] == field) == list(range(1, steps + 1))
