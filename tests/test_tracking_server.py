"""End to end against a shared MLflow tracking server as teams deploy it: ``mlflow server`` with a
PostgreSQL backend store and served artifacts (``--artifacts-destination ... --serve-artifacts``).

A throwaway PostgreSQL cluster is made with Debian's ``initdb``/``pg_ctl`` in a temp directory (as
the ``postgres`` user when the tests run as root: PostgreSQL refuses to run as root), listening on a
free loopback port; ``mlflow server`` runs on another free loopback port. ``ganpipe run`` (the smoke
preset, fewer steps) runs twice with ``MLFLOW_TRACKING_URI=http://...`` and the test checks what a
second machine would see through the server alone: the runs, the artifacts (downloaded over HTTP),
the registry and its aliases, sampling the champion, and the rows in PostgreSQL. Nothing may be
written to the project's own ``mlflow.db`` or ``mlartifacts/``.

Skipped only where PostgreSQL is not installed (``scripts/install.sh`` installs it as root;
``.ci/run`` makes a missing PostgreSQL an install failure, and with its ``GANPIPE_REQUIRE_POSTGRES=1`` this
test fails instead of skipping).
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from tests.test_pipeline_e2e import (BIN, NAME, cli_env, explain, free_port, make_project, sample_reference,
                                     wait_for)

STEPS = 20  # the smoke preset's 40 halved: the test is about where things are stored, not about training
pytestmark = [pytest.mark.slow, pytest.mark.timeout(20 * 60)]


def postgres_bin() -> Path | None:
    """Debian's PostgreSQL programs: $GANPIPE_POSTGRES_BIN, else the newest /usr/lib/postgresql/<v>/bin."""
    candidates = ([os.environ["GANPIPE_POSTGRES_BIN"]] if os.environ.get("GANPIPE_POSTGRES_BIN")
                  else sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)))
    found = [Path(p) for p in candidates if (Path(p) / "initdb").is_file() and (Path(p) / "pg_ctl").is_file()]
    return found[-1] if found else None


def as_server_user(cmd: list[str]) -> list[str]:
    """PostgreSQL refuses to start as root: run its programs as the ``postgres`` user Debian's package makes."""
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]


@pytest.fixture(scope="module")
def postgres():
    """A throwaway cluster on a free loopback port; yields the SQLAlchemy URI of an empty database ``mlflow``."""
    bindir = postgres_bin()
    if bindir is None:
        # .ci/run requires PostgreSQL (GANPIPE_REQUIRE_POSTGRES=1): there a missing one fails, never skips.
        missing = pytest.fail if os.environ.get("GANPIPE_REQUIRE_POSTGRES") == "1" else pytest.skip
        missing("PostgreSQL is not installed (no initdb/pg_ctl in /usr/lib/postgresql/*/bin or $GANPIPE_POSTGRES_BIN): "
                "`apt-get install postgresql` (scripts/install.sh does it as root)")
    # Not under pytest's tmp_path: that is private to root (0700), and the cluster's files belong to postgres.
    base = Path(tempfile.mkdtemp(prefix="ganpipe-pg-"))
    data, log, port = base / "data", base / "server.log", free_port()
    pg_ctl = [str(bindir / "pg_ctl"), "-D", str(data)]
    try:
        if os.geteuid() == 0:
            user = pwd.getpwnam("postgres")
            os.chown(base, user.pw_uid, user.pw_gid)
        subprocess.run(as_server_user([str(bindir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust",
                                       "-E", "UTF8", "--no-sync"]), check=True, capture_output=True, timeout=120)
        options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={base} -c fsync=off"
        started = subprocess.run(as_server_user([*pg_ctl, "-l", str(log), "-o", options, "-w", "-t", "120", "start"]),
                                 capture_output=True, text=True, timeout=180)
        assert started.returncode == 0, f"pg_ctl start: {started.stdout}{started.stderr}\n{log.read_text()[-3000:]}"
        subprocess.run(as_server_user([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "mlflow",
                                       "mlflow"]), check=True, capture_output=True, timeout=60)
        yield f"postgresql://mlflow@127.0.0.1:{port}/mlflow"
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(as_server_user([*pg_ctl, "-m", "fast", "-w", "stop"]), capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def mlflow_server(postgres, tmp_path_factory):
    """``mlflow server`` over the PostgreSQL store, serving artifacts from its own directory."""
    home = tmp_path_factory.mktemp("mlflow-server")
    port, log = free_port(), home / "server.log"
    env = cli_env(home)
    # The driver named explicitly: SQLAlchemy >= 2.1 reads a bare postgresql:// as psycopg 3, and the
    # test extras install psycopg2 (psycopg2-binary), the driver MLflow's own docs use.
    store = postgres.replace("postgresql://", "postgresql+psycopg2://", 1)
    cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", store, "--artifacts-destination",
           str(home / "artifacts"), "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, cwd=home, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(f"{url}/health", proc, log)
        yield url, home / "artifacts"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@pytest.fixture(scope="module")
def runs(mlflow_server, tmp_path_factory):
    url, _ = mlflow_server
    root = tmp_path_factory.mktemp("server-project")
    project = make_project(root, cli_env(root, MLFLOW_TRACKING_URI=url, PREFECT_HOME=str(root / ".prefect")))
    tiny = ["--preset", "smoke", "--set", f"train.steps={STEPS}", "--set", "train.checkpoint_every=10",
            "--set", "monitor.every=10"]
    first, first_summary = project.run(*tiny, summary="first.json")
    assert first.returncode == 0, explain(first)
    second, second_summary = project.run(*tiny, "--set", "run.seed=1", summary="second.json")
    assert second.returncode == 0, explain(second)
    return project, first_summary, second_summary


def client(url: str):
    from mlflow import MlflowClient

    return MlflowClient(url)


def http_get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=60) as response:
        assert response.status == 200, url
        return response.read()


def test_runs_are_tracked_on_the_server_not_locally(runs, mlflow_server):
    project, first, second = runs
    url, _ = mlflow_server
    c = client(url)
    for summary in (first, second):
        assert summary["status"] == "registered" and summary["tracking_uri"] == url
        run = c.get_run(summary["mlflow_run_id"])
        assert run.info.status == "FINISHED" and run.data.tags["ganpipe.status"] == "registered"
        assert run.data.params["train.steps"] == str(STEPS)
        assert len(c.get_metric_history(run.info.run_id, "d_loss")) == STEPS
        # The server chose the artifact location: served by it, not a path on the machine that ran the flow.
        assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    experiment = c.get_experiment_by_name("ganpipe")
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"
    assert not (project.root / "mlflow.db").exists() and not (project.root / "mlartifacts").exists()


def test_artifacts_are_downloadable_through_the_server(runs, mlflow_server, tmp_path):
    project, first, _ = runs
    url, served_dir = mlflow_server
    c = client(url)
    run = c.get_run(first["mlflow_run_id"])
    listed = {a.path for a in c.list_artifacts(run.info.run_id)}
    assert {"config.json", "summary.json", "report.html", "evaluation", "onnx", "validation"} <= listed
    report = (Path(first["run_dir"]) / "report.html").read_bytes()
    # Over plain HTTP, as a machine with nothing but the server's address would fetch it (MLflow's
    # mlflow-artifacts REST API: /api/2.0/mlflow-artifacts/artifacts/<path under the destination>).
    relative = run.info.artifact_uri[len("mlflow-artifacts:"):].lstrip("/")
    assert http_get(f"{url}/api/2.0/mlflow-artifacts/artifacts/{relative}/report.html") == report
    # The MLflow client's download, and the bytes the server keeps in its --artifacts-destination.
    downloaded = Path(c.download_artifacts(run.info.run_id, "onnx/generator.onnx", str(tmp_path)))
    assert downloaded.read_bytes() == (Path(first["run_dir"]) / "export" / "generator.onnx").read_bytes()
    assert (served_dir / relative / "report.html").read_bytes() == report


def test_registry_and_champion_rule_on_the_server(runs, mlflow_server):
    project, first, second = runs
    url, _ = mlflow_server
    c = client(url)
    versions = {v.version: v for v in c.search_model_versions(f"name = '{NAME}'")}
    assert sorted(versions) == ["1", "2"]
    assert versions["1"].run_id == first["mlflow_run_id"] and versions["2"].run_id == second["mlflow_run_id"]
    for v in versions.values():
        assert v.source.startswith("mlflow-artifacts:/"), v.source
    fd = [c.get_run(s["mlflow_run_id"]).data.metrics["domain_fd"] for s in (first, second)]
    assert fd[0] != fd[1]  # different seeds: a tie would leave only the tie case tested
    champion = "2" if fd[1] < fd[0] else "1"  # domain_fd: lower is better; a tie keeps the champion
    assert {k: str(v) for k, v in c.get_registered_model(NAME).aliases.items()} \
        == {"champion": champion, "challenger": "2"}
    assert ("becomes champion" if champion == "2" else "champion kept") in versions["2"].tags["promotion_reason"]


def test_champion_is_sampled_and_compared_through_the_server(runs):
    project, first, second = runs
    c = client(project.env["MLFLOW_TRACKING_URI"])
    champion = c.get_model_version_by_alias(NAME, "champion")
    checkpoint = (first if champion.run_id == first["mlflow_run_id"] else second)["training"]["checkpoint"]
    result = project.ganpipe("sample", f"models:/{NAME}@champion", "--n", "8", "--out", "s.npy")
    assert result.returncode == 0, explain(result)
    np.testing.assert_allclose(np.load(project.root / "s.npy"), sample_reference(checkpoint, 8), atol=1e-5)
    compared = project.ganpipe("compare", NAME)
    assert compared.returncode == 0, explain(compared)
    assert "champion" in compared.stdout


def test_postgresql_holds_the_store(runs, postgres):
    import psycopg2

    _, first, second = runs
    with contextlib.closing(psycopg2.connect(postgres)) as db, db.cursor() as cursor:
        cursor.execute("SELECT run_uuid, status FROM runs ORDER BY start_time")
        assert cursor.fetchall() == [(first["mlflow_run_id"], "FINISHED"), (second["mlflow_run_id"], "FINISHED")]
        cursor.execute("SELECT name, version FROM model_versions ORDER BY version")
        assert cursor.fetchall() == [(NAME, 1), (NAME, 2)]
        cursor.execute("SELECT alias, version FROM registered_model_aliases WHERE name = %s ORDER BY alias", (NAME,))
        assert dict(cursor.fetchall())["challenger"] == 2
