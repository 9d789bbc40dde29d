"""End-to-end: the deployments in prefect.yaml on a real Prefect server, run by a real process worker.

Cron schedules never fire on the ephemeral API server that ``ganpipe run`` starts in-process (it
lives only as long as the flow), so scheduling needs a long-running ``prefect server``, a work pool
and a worker. This test builds exactly that: it starts ``prefect server start`` on a free loopback
port with a temporary PREFECT_HOME, creates the ``ganpipe-process`` pool (and the Docker and
Kubernetes pools from deploy/prefect/, which no worker serves here), runs
``prefect deploy --all`` on a copy of the project, starts a worker and triggers the ``smoke``
deployment with ``prefect deployment run``. It then checks the MLflow run the flow logged, and that
the server's scheduler turned ``nightly-retrain``'s cron schedule into flow runs at 02:00 UTC.

Everything is written under ``tmp_path``: the project copy (the deployment's working directory,
so runs/, .cache/ and mlartifacts/ land there), the Prefect database, the MLflow store, temp dirs
and tool caches. Every subprocess runs in its own session and its whole process group is killed
at teardown, pass or fail.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
PREFECT = Path(sys.executable).with_name("prefect")
POOL = "ganpipe-process"
CONTAINER_POOLS = {"ganpipe-docker": "docker", "ganpipe-kubernetes": "kubernetes"}
FLOW = "training_pipeline"
SERVER_START_TIMEOUT = 180  # seconds; about 30 s on an idle 2-core box, more when it is shared
RUN_TIMEOUT = 8 * 60  # the smoke run itself takes 1-4 minutes on 2 CPU cores
# Left out of the project copy: environments, VCS data and everything a run writes.
NOT_COPIED = {".venv", ".git", "runs", "mlflow.db", "mlruns", "mlartifacts", ".prefect", ".cache", "__pycache__",
              ".pytest_cache", "build", "dist", ".whl", ".gl", "data", "artifacts"}
TERMINAL_STATES = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}

pytestmark = [pytest.mark.slow, pytest.mark.timeout(15 * 60)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _isolated_env(tmp_path: Path, api_url: str) -> dict[str, str]:
    """The parent's environment without its Prefect/MLflow settings, pointed at tmp_path."""
    import torch

    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_"))}
    (tmp_path / "tmp").mkdir(exist_ok=True)
    env.update({
        "DO_NOT_TRACK": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DVC_NO_ANALYTICS": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "GX_ANALYTICS_ENABLED": "False",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_API_URL": api_url,
        "PREFECT_SERVER_UI_ENABLED": "false",  # nothing to serve in a test; starts faster
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        # The process worker runs each flow run in a TemporaryDirectory before the pull step moves it.
        "TMPDIR": str(tmp_path / "tmp"),
        # onnxruntime and matplotlib write caches under ~/.cache; keep torch's hub dir where it is,
        # so installed Inception weights are still found.
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "MPLCONFIGDIR": str(tmp_path / "matplotlib"),
        "TORCH_HOME": os.environ.get("TORCH_HOME") or str(Path(torch.hub.get_dir()).parent),
    })
    return env


@contextlib.contextmanager
def _background(cmd: list[str], log: Path, **kwargs):
    """Popen in a new session; on exit, SIGTERM its process group, then SIGKILL what is left."""
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **kwargs)
    try:
        yield proc
    finally:
        for sig, grace in ((signal.SIGTERM, 30), (signal.SIGKILL, 10)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)  # the server's uvicorn child and the worker's flow runs too
            try:
                proc.wait(grace)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # children that outlived their leader
            os.killpg(proc.pid, signal.SIGKILL)


def _tail(path: Path, n: int = 60) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-n:]) if path.exists() else "(no log)"


def _prefect(env: dict, cwd: Path, *args: str, timeout: float = 180) -> str:
    out = subprocess.run([str(PREFECT), "--no-prompt", *args], env=env, cwd=cwd, capture_output=True, text=True,
                         timeout=timeout)
    assert out.returncode == 0, f"prefect {' '.join(args)} exited {out.returncode}:\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture
def prefect_server(tmp_path):
    """A real `prefect server start` (API and services, scheduler included) on a free loopback port."""
    import httpx

    port = _free_port()
    api_url = f"http://127.0.0.1:{port}/api"
    env = _isolated_env(tmp_path, api_url)
    log = tmp_path / "server.log"
    with _background([str(PREFECT), "server", "start", "--host", "127.0.0.1", "--port", str(port)], log,
                     env=env, cwd=tmp_path) as proc:
        deadline = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            assert proc.poll() is None, f"prefect server exited {proc.returncode}:\n{_tail(log)}"
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{api_url}/health", timeout=5).status_code == 200:
                    break
            assert time.monotonic() < deadline, f"no /api/health after {SERVER_START_TIMEOUT} s:\n{_tail(log)}"
            time.sleep(1)
        yield api_url, env


def _copy_project(dest: Path) -> Path:
    def ignore(directory, names):
        return [n for n in names if n in NOT_COPIED or n.endswith(".egg-info")]

    shutil.copytree(REPO, dest, ignore=ignore)
    return dest


def _deployment(api_url: str, name: str) -> dict:
    import httpx

    response = httpx.get(f"{api_url}/deployments/name/{FLOW}/{name}", timeout=30)
    response.raise_for_status()
    return response.json()


def _wait_for_flow_run(api_url: str, flow_run_id: str, timeout: float) -> dict:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        run = httpx.get(f"{api_url}/flow_runs/{flow_run_id}", timeout=30).json()
        if run["state_type"] in TERMINAL_STATES or time.monotonic() > deadline:
            return run
        time.sleep(5)


def _scheduled_runs(api_url: str, deployment_id: str, timeout: float) -> list[dict]:
    """Flow runs the server's scheduler created for a deployment (it runs every few seconds to a minute)."""
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        body = {"deployments": {"id": {"any_": [deployment_id]}}, "flow_runs": {"state": {"type": {"any_": ["SCHEDULED"]}}}}
        runs = httpx.post(f"{api_url}/flow_runs/filter", json=body, timeout=30).json()
        if runs or time.monotonic() > deadline:
            return runs
        time.sleep(5)


def test_deployments_on_a_real_server_with_a_worker(prefect_server, tmp_path):
    from mlflow import MlflowClient

    api_url, env = prefect_server
    project = _copy_project(tmp_path / "project")
    # `{{ $PWD }}` in prefect.yaml's pull step is read from the environment when `prefect deploy`
    # runs; subprocess's cwd= does not update PWD the way a shell's `cd` does.
    env = {**env, "PWD": str(project)}

    _prefect(env, project, "work-pool", "create", POOL, "--type", "process")
    # The container pools as docs/scaling.md creates them: no Docker daemon or cluster is needed to create
    # a pool and deploy to it, and the server checks each deployment's job variables against the pool's
    # template when it deploys.
    for pool, kind in CONTAINER_POOLS.items():
        _prefect(env, project, "work-pool", "create", pool, "--type", kind, "--base-job-template",
                 str(project / "deploy" / "prefect" / f"{kind}-base-job-template.json"))
    _prefect(env, project, "deploy", "--all", timeout=300)
    assert (project / "prefect.yaml").read_bytes() == (REPO / "prefect.yaml").read_bytes(), \
        "prefect deploy rewrote prefect.yaml"

    nightly, smoke = _deployment(api_url, "nightly-retrain"), _deployment(api_url, "smoke")
    pull = [{"prefect.deployments.steps.set_working_directory": {"directory": str(project)}}]
    assert nightly["work_pool_name"] == POOL and smoke["work_pool_name"] == POOL
    assert nightly["pull_steps"] == pull and smoke["pull_steps"] == pull
    assert nightly["parameters"] == {"dataset": "digits", "preset": "default", "params_path": "params.yaml",
                                    "resume": "auto"}
    assert smoke["parameters"] == {"dataset": "digits", "preset": "smoke", "params_path": "params.yaml"}
    assert [(s["schedule"].get("cron"), s["schedule"].get("timezone"), s["active"]) for s in nightly["schedules"]] \
        == [("0 2 * * *", "UTC", True)]
    assert smoke["schedules"] == []
    # The container deployments landed on their pools with their job variables (GPU request included).
    declared = {d["name"]: d for d in yaml.safe_load((project / "prefect.yaml").read_text())["deployments"]}
    for name in ("gpu-docker", "gpu-kubernetes"):
        deployed = _deployment(api_url, name)
        assert deployed["work_pool_name"] == declared[name]["work_pool"]["name"]
        assert deployed["job_variables"] == declared[name]["work_pool"]["job_variables"]
        assert deployed["pull_steps"] == declared[name]["pull"] and deployed["schedules"] == []
    # A crashed nightly run is started again by its trigger, resuming the crashed flow run's run.
    import httpx

    automations = httpx.get(f"{api_url}/automations/related-to/prefect.deployment.{nightly['id']}", timeout=30).json()
    assert len(automations) == 1, automations
    trigger, [action] = automations[0]["trigger"], automations[0]["actions"]
    assert trigger["expect"] == ["prefect.flow-run.Crashed"]
    related = trigger["match_related"] if isinstance(trigger["match_related"], list) else [trigger["match_related"]]
    assert {"prefect.resource.role": "deployment", "prefect.resource.name": "nightly-retrain"} in related
    assert action["type"] == "run-deployment" and action["parameters"] == {"resume": "{{ event.resource.id }}"}

    # The worker serves only the smoke deployment's queue: a nightly run that fell due while the
    # test runs (near 02:00 UTC) would otherwise start a 3000-step training here.
    worker_log = tmp_path / "worker.log"
    with _background([str(PREFECT), "worker", "start", "--pool", POOL, "--work-queue", "smoke"], worker_log,
                     env=env, cwd=tmp_path):
        started = _prefect(env, project, "deployment", "run", f"{FLOW}/smoke")
        flow_run_id = re.search(r"UUID: ([0-9a-f-]{36})", started).group(1)
        flow_run = _wait_for_flow_run(api_url, flow_run_id, RUN_TIMEOUT)
        assert flow_run["state_type"] == "COMPLETED", \
            f"flow run {flow_run['state_type']} ({flow_run['state_name']}):\n{_tail(worker_log)}"

    # The flow ran in the project copy (the pull step), and logged to the tmp MLflow store.
    summaries = list((project / "runs").glob("*/summary.json"))
    assert len(summaries) == 1, summaries
    summary = json.loads(summaries[0].read_text())
    assert summary["status"] == "registered" and summary["preset"] == "smoke"
    assert not (REPO / "runs" / summary["run_name"]).exists()

    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    experiment = client.get_experiment_by_name("ganpipe")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    assert [(r.info.run_id, r.info.status, r.data.tags.get("ganpipe.status")) for r in runs] \
        == [(summary["mlflow_run_id"], "FINISHED", "registered")]

    # The cron schedule is live: the scheduler has queued nightly runs at 02:00 UTC.
    scheduled = _scheduled_runs(api_url, nightly["id"], timeout=120)
    assert scheduled, "the scheduler created no run for nightly-retrain"
    for run in scheduled:
        start = datetime.fromisoformat(run["expected_start_time"].replace("Z", "+00:00"))
        assert (start.utcoffset().total_seconds(), start.hour, start.minute, start.second) == (0, 2, 0, 0), start
        assert run["parameters"]["preset"] == "default"
