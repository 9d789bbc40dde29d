"""Where a new experiment's artifacts go (pipelines.tracking.artifact_root), per kind of tracking store.

The end-to-end check with a real server and PostgreSQL is tests/test_tracking_server.py (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.config import load_run_config
from pipelines.tracking import artifact_root, tracking_uri

REPO = Path(__file__).resolve().parents[1]


def config(monkeypatch, uri: str | None, root: str | None = None):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    if uri:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    overrides = [f"tracking.artifact_root={root}"] if root else []
    return load_run_config(REPO / "params.yaml", overrides=overrides)


def test_local_store_keeps_artifacts_in_the_project(monkeypatch, tmp_path):
    cfg = config(monkeypatch, None)
    assert tracking_uri(cfg, tmp_path) == f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert artifact_root(cfg, tmp_path) == (tmp_path / "mlartifacts").as_uri()


@pytest.mark.parametrize("uri", ["http://127.0.0.1:5000", "https://mlflow.example.com"])
def test_a_tracking_server_chooses_its_own_artifact_location(monkeypatch, tmp_path, uri):
    # A path on the machine running the flow would be unreadable to every other client of the server.
    assert artifact_root(config(monkeypatch, uri), tmp_path) is None


@pytest.mark.parametrize("root", ["mlflow-artifacts:/", "s3://bucket/ganpipe", "gs://bucket/x", "file:///srv/a"])
def test_an_artifact_root_uri_is_kept_as_written(monkeypatch, tmp_path, root):
    assert artifact_root(config(monkeypatch, "http://127.0.0.1:5000", root), tmp_path) == root
    assert artifact_root(config(monkeypatch, None, root), tmp_path) == root


def test_a_relative_artifact_root_is_made_absolute(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert artifact_root(config(monkeypatch, None, "store/artifacts"), tmp_path) == (tmp_path / "store/artifacts").as_uri()
