"""End to end: ``ganpipe run`` as a subprocess through the real Prefect flow (a real Prefect server),
the real MLflow SQLite store and registry, real Great Expectations validation and real ONNX export.

One module-scoped smoke project (two smoke runs sharing one MLflow database) serves most
assertions; the failure runs (gates, validation, divergence) go into the same project, so "nothing
registered" is checked against a registry that already holds versions. Everything lives in tmp
directories; the repository is only read.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NAME = "dcgan-digits"
SMOKE_STEPS = 40  # presets.smoke.train.steps in params.yaml

TELEMETRY_OFF = {"DO_NOT_TRACK": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "DVC_NO_ANALYTICS": "1",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "GX_ANALYTICS_ENABLED": "False"}


def cli_env(tmp: Path, **extra: str) -> dict[str, str]:
    """The caller's environment without Prefect/MLflow/ganpipe settings, telemetry off, offline."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "MLFLOW_", "GANPIPE_"))}
    env.update(TELEMETRY_OFF)
    # One intra-op thread: on a shared 2-core box torch's default two threads contend with the other
    # processes (a 40-step smoke training measured 109 s with two threads, 17 s with one).
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    # A torch hub directory without Inception weights: the primary metric is the offline domain FD.
    env["TORCH_HOME"] = str(tmp / "torch-home")
    env.update(extra)
    return env


@dataclass
class Project:
    root: Path
    env: dict

    def ganpipe(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN / "ganpipe"), *args], cwd=self.root, env=self.env, capture_output=True,
                              text=True, timeout=timeout)

    def run(self, *args: str, summary: str = "summary.json") -> tuple[subprocess.CompletedProcess, dict | None]:
        """``ganpipe run`` with a fresh summary file; returns the process and the summary (None if not written)."""
        path = self.root / summary
        path.unlink(missing_ok=True)
        result = self.ganpipe("run", "--no-progress", "--summary-json", summary, *args)
        return result, (json.loads(path.read_text()) if path.is_file() else None)

    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(f"sqlite:///{self.root / 'mlflow.db'}")


def make_project(root: Path, env: dict) -> Project:
    """A directory holding a copy of params.yaml, committed to its own git repository."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "params.yaml", root / "params.yaml")
    git = ["git", "-c", "user.name=ganpipe-test", "-c", "user.email=test@example.invalid",
           "-c", "init.defaultBranch=main"]
    for cmd in (["init", "-q"], ["add", "params.yaml"], ["commit", "-q", "-m", "params"]):
        subprocess.run(git + cmd, cwd=root, check=True, capture_output=True)
    return Project(root, env)


def explain(result: subprocess.CompletedProcess) -> str:
    return f"exit {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-6000:]}"


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 180) -> None:
    """Until ``url`` answers 200; fails with the log's tail when ``proc`` exits or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"{url} did not answer (exit {proc.poll()}):\n{log.read_text(errors='replace')[-4000:]}")
        time.sleep(0.5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def prefect_api(tmp_path_factory):
    """One real Prefect server for the module. Each ``ganpipe run`` would otherwise start its own
    ephemeral server (about 15 s per process measured on a loaded 2-core box); the mlp2d test
    below still covers that default path."""
    home = tmp_path_factory.mktemp("prefect-server")
    port = free_port()
    env = cli_env(home, PREFECT_HOME=str(home))
    log = (home / "server.log").open("w")
    server = subprocess.Popen([str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port),
                               "--no-ui", "--no-services"], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    url = f"http://127.0.0.1:{port}/api"
    try:
        wait_for(f"{url}/health", server, home / "server.log", timeout=240)
        yield url
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        log.close()


@pytest.fixture(scope="module")
def project(tmp_path_factory, prefect_api) -> Project:
    root = tmp_path_factory.mktemp("smoke-project")
    return make_project(root, cli_env(root, PREFECT_API_URL=prefect_api, PREFECT_HOME=str(root / ".prefect-client")))


@dataclass
class SmokeRuns:
    first: subprocess.CompletedProcess
    first_summary: dict
    aliases_after_first: dict[str, str]
    second: subprocess.CompletedProcess
    second_summary: dict


@pytest.fixture(scope="module")
def smoke(project) -> SmokeRuns:
    first, first_summary = project.run("--preset", "smoke", summary="first.json")
    assert first.returncode == 0, explain(first)
    aliases = {k: str(v) for k, v in project.client().get_registered_model(NAME).aliases.items()}
    # Another seed, so that the two versions' metrics differ and the champion rule has work to do.
    second, second_summary = project.run("--preset", "smoke", "--set", "run.seed=1", summary="second.json")
    assert second.returncode == 0, explain(second)
    return SmokeRuns(first, first_summary, aliases, second, second_summary)


def versions(client, name: str = NAME) -> dict[str, object]:
    return {str(v.version): v for v in client.search_model_versions(f"name = '{name}'")}


def aliases(client, name: str = NAME) -> dict[str, str]:
    return {k: str(v) for k, v in client.get_registered_model(name).aliases.items()}


def artifact_files(client, run_id: str, path: str | None = None) -> set[str]:
    out: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        out |= artifact_files(client, run_id, item.path) if item.is_dir else {item.path}
    return out


def local_path(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(unquote(urlparse(uri).path))


def registry_snapshot(client) -> dict[str, dict]:
    return {m.name: {"versions": sorted(versions(client, m.name)), "aliases": aliases(client, m.name)}
            for m in client.search_registered_models()}


def sample_reference(checkpoint: str | Path, n: int, seed: int = 0) -> np.ndarray:
    """What ``ganpipe sample`` must return: G(z, None) for z ~ N(0, I) from a CPU generator seeded
    with ``seed`` (the documented contract of ``sample_generator``); images clamped to [-1, 1]."""
    import torch

    from ganmodels.train import load_generator

    G = load_generator(checkpoint)
    z = torch.randn(n, G.z_dim, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        out = G(z, None)
    return (out.clamp(-1, 1) if out.dim() == 4 else out).numpy()  # images (N, C, H, W); points (N, 2) as drawn


# -- the two smoke runs -------------------------------------------------------------------------


@pytest.mark.slow
def test_first_smoke_run_registers_the_champion(smoke):
    out = smoke.first.stdout
    assert "registered" in out and "domain_fd (primary)" in out and "metric" in out  # the summary table
    assert f"registry: {NAME} v1 aliases champion, challenger" in out.replace("\n", " ")
    summary = smoke.first_summary
    assert summary["status"] == "registered" and summary["exit_code"] == 0
    assert summary["registry"]["registered"] is True
    assert (summary["registry"]["model_name"], summary["registry"]["version"]) == (NAME, "1")
    assert set(summary["registry"]["aliases"]) == {"champion", "challenger"}
    assert smoke.aliases_after_first == {"champion": "1", "challenger": "1"}
    assert summary["training"]["steps"] == SMOKE_STEPS and summary["training"]["rollbacks"] == 0


@pytest.mark.slow
def test_first_smoke_run_is_tracked_in_mlflow(smoke, project):
    from ganmodels.data import load_dataset
    from pipelines.config import load_run_config

    client = project.client()
    summary = smoke.first_summary
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["ganpipe.status"] == "registered" and run.data.tags["gate_status"] == "passed"

    # Data version: the hash of a fresh, independent preparation of the same data.
    data_cfg = load_run_config(project.root / "params.yaml", preset="smoke").data
    expected_hash = load_dataset(data_cfg).data_hash
    assert run.data.params["data.hash"] == expected_hash == run.data.tags["ganpipe.data_version"]
    assert run.data.params["seed"] == "0" and run.data.params["train.steps"] == str(SMOKE_STEPS)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project.root, capture_output=True, text=True,
                          check=True).stdout.strip()
    assert run.data.tags["mlflow.source.git.commit"] == head
    # MLflow's standard source tags (the runs table's Source column) and the data set as a dataset input
    # (its Dataset column): name, digest = the data version (MLflow keeps 36 characters), source.
    assert (run.data.tags["mlflow.source.name"], run.data.tags["mlflow.source.type"]) == ("ganpipe run", "LOCAL")
    (dataset_input,) = run.inputs.dataset_inputs
    dataset = dataset_input.dataset
    assert (dataset.name, dataset.digest) == ("digits", expected_hash[:36])
    assert json.loads(dataset.profile)["data_hash"] == expected_hash and json.loads(dataset.profile)["n_train"] > 0
    assert (dataset.source_type, json.loads(dataset.source)) == ("code", {"tags": {"origin": "sklearn.datasets.load_digits"}})
    assert {t.key: t.value for t in dataset_input.tags} == {"mlflow.data.context": "training"}
    # The experiment opens on its training runs in MLflow's UI, not on the GenAI overview.
    assert client.get_experiment(run.info.experiment_id).tags["mlflow.experimentKind"] == "custom_model_development"

    history = client.get_metric_history(run.info.run_id, "d_loss")
    assert sorted(m.step for m in history) == list(range(1, SMOKE_STEPS + 1))
    assert all(math.isfinite(m.value) for m in history)
    assert len(client.get_metric_history(run.info.run_id, "g_loss")) == SMOKE_STEPS

    evaluation = summary["evaluation"]["metrics"]
    assert {"domain_fd", "kid", "precision", "recall", "class_coverage", "class_kl"} <= set(evaluation)
    for name, value in evaluation.items():
        assert run.data.metrics[name] == pytest.approx(value), name
    assert run.data.metrics["onnx_max_abs_diff"] <= 1e-4

    files = artifact_files(client, run.info.run_id)
    assert {"config.json", "summary.json", "validation/validation_summary.json", "validation/data_docs/index.html",
            "evaluation/metrics.json", "evaluation/gates.json", "evaluation/samples.png", "training/losses.csv",
            "onnx/generator.onnx", "report.html"} <= files
    grids = sorted(f for f in files if f.startswith("samples/") and f.endswith(".png"))
    assert grids == [f"samples/step_{s:06d}.png" for s in range(10, SMOKE_STEPS + 1, 10)]
    artifacts = local_path(run.info.artifact_uri)
    from PIL import Image

    with Image.open(artifacts / grids[-1]) as image:
        assert image.format == "PNG" and min(image.size) >= 16

    # The logged generator: one MLflow model from this run, holding the run's checkpoint; version 1 points at it.
    logged = [m for m in client.search_logged_models([run.info.experiment_id]) if m.source_run_id == run.info.run_id]
    assert [m.name for m in logged] == ["generator"]
    model_dir = local_path(logged[0].artifact_location)
    assert (model_dir / "MLmodel").is_file()
    (checkpoint,) = model_dir.rglob("checkpoint.pt")
    assert checkpoint.read_bytes() == Path(summary["training"]["checkpoint"]).read_bytes()
    version = client.get_model_version(NAME, "1")
    assert version.run_id == run.info.run_id and version.source == logged[0].artifact_location
    assert float(version.tags["metric.domain_fd"]) == pytest.approx(evaluation["domain_fd"])


@pytest.mark.slow
def test_second_run_moves_aliases_by_the_champion_rule(smoke, project):
    client = project.client()
    assert sorted(versions(client)) == ["1", "2"]
    first = client.get_run(smoke.first_summary["mlflow_run_id"]).data.metrics["domain_fd"]
    second = client.get_run(smoke.second_summary["mlflow_run_id"]).data.metrics["domain_fd"]
    assert first != second  # different seeds; equal values would leave only the tie case tested
    new_champion = second < first  # domain_fd: lower is better; a tie keeps the champion
    assert aliases(client) == {"challenger": "2", "champion": "2" if new_champion else "1"}

    registry = smoke.second_summary["registry"]
    assert registry["version"] == "2" and registry["previous_champion_version"] == "1"
    assert set(registry["aliases"]) == ({"champion", "challenger"} if new_champion else {"challenger"})
    reason = client.get_model_version(NAME, "2").tags["promotion_reason"]
    assert ("becomes champion" if new_champion else "champion kept") in reason


# -- what a person reads: the model card, the version description, the links, the comparison --------


def card_page(path: Path):
    from tests.test_card import Page

    return Page(path.read_text(encoding="utf-8"))


def embedded_images(page) -> list[bytes]:
    import base64

    srcs = [attrs["src"] for tag, attrs in page.tags if tag == "img"]
    assert all(src.startswith("data:image/png;base64,") for src in srcs), [s[:40] for s in srcs]
    return [base64.b64decode(src.split(",", 1)[1], validate=True) for src in srcs]


def expected_gate_line(gate: dict) -> str:
    """A gate as the summary writes it, rebuilt from the run's eval/gates.json."""
    symbol = {"<=": "≤", ">=": "≥"}[gate["comparison"]]
    return f"{gate['metric']} {gate['value']:.4g} {symbol} {gate['threshold']:g} {'pass' if gate['passed'] else 'FAIL'}"


@pytest.mark.slow
def test_registered_run_has_a_model_card_and_a_described_version(smoke, project):
    client = project.client()
    summary = smoke.first_summary
    run_dir = Path(summary["run_dir"])
    report = run_dir / "report.html"
    assert summary["report"] == str(report) and report.is_file()
    # The same bytes are the run's artifact, which MLflow's UI shows.
    artifacts = local_path(client.get_run(summary["mlflow_run_id"]).info.artifact_uri)
    assert (artifacts / "report.html").read_bytes() == report.read_bytes()

    page = card_page(report)
    pictures = embedded_images(page)
    expected = [run_dir / "eval" / "samples.png", run_dir / "eval" / "interpolation.png",
                *sorted((run_dir / "train" / "samples").glob("step_*.png")), run_dir / "train" / "loss_curves.png",
                run_dir / "train" / "monitor_curves.png"]
    assert sorted(pictures) == sorted(p.read_bytes() for p in expected)  # each one of the run's own pictures
    assert not [a for _, a in page.tags for k in ("href", "src") if k in a and not a[k].startswith(("data:", "#"))]

    # Smoke runs have no gates; the lineage names the run's own commit and data version.
    rows = {r[0]: r for r in page.rows if len(r) == 2}
    assert rows["git commit"][1] == client.get_run(summary["mlflow_run_id"]).data.tags["mlflow.source.git.commit"]
    assert rows["data version (sha256 of the prepared tensors)"][1] == summary["data"]["data_hash"]
    assert page.summary[0] == "Verdict: registered as dcgan-digits version 1 (aliases: champion, challenger)"
    assert page.summary[1] == "Gates: none in force (preset smoke)"

    # The version's description is the card's summary.
    description = client.get_model_version(NAME, "1").description
    lines = [line[2:].replace("**", "") for line in description.splitlines() if line.startswith("- ")]
    assert lines == page.summary and "report.html" in description

    # The links printed at the end open the pages of this run, its experiment and the registered model.
    experiment = summary["experiment_id"]
    out = smoke.first.stdout
    view = "?workflowType=machine_learning"  # MLflow's "Model training" view, where the model registry is
    assert f"training runs: http://127.0.0.1:5000/#/experiments/{experiment}/runs{view}" in out
    assert f"run: http://127.0.0.1:5000/#/experiments/{experiment}/runs/{summary['mlflow_run_id']}{view}" in out
    assert f"registered model: http://127.0.0.1:5000/#/models/dcgan-digits{view}" in out
    assert f"model version: http://127.0.0.1:5000/#/models/dcgan-digits/versions/1{view}" in out
    assert f"model card: {report}" in out
    # The run's own description is the same summary.
    assert client.get_run(summary["mlflow_run_id"]).data.tags["mlflow.note.content"] == description


@pytest.mark.slow
def test_compare_lists_the_versions_champion_first_with_metrics_and_lineage(smoke, project):
    client = project.client()
    result = project.ganpipe("compare", NAME, "--html", "compare.html")
    assert result.returncode == 0, explain(result)
    champion = aliases(client)["champion"]
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in result.stdout.splitlines()
            if line.startswith("│") and line.split("│")[1].strip().isdigit()]
    assert [r[0] for r in rows] == [champion] + sorted({"1", "2"} - {champion}, reverse=True)
    header = next(line for line in result.stdout.splitlines() if "version" in line and "aliases" in line)
    columns = [c.strip() for c in header.split("┃")[1:-1]]  # rich draws the header with heavy lines
    assert columns[:3] == ["version", "aliases", "domain_fd (primary)"]
    assert columns[-3:] == ["data version", "commit", "registered"]
    for row in rows:
        version = client.get_model_version(NAME, row[0])
        run = client.get_run(version.run_id)
        assert row[1] == ", ".join(sorted(a for a, v in aliases(client).items() if v == row[0]))
        assert row[2] == f"{float(version.tags['metric.domain_fd']):.4g}"
        assert row[-3] == run.data.params["data.hash"][:12] and row[-2] == run.data.tags["mlflow.source.git.commit"][:12]
    assert f"registered model: http://127.0.0.1:5000/#/models/{NAME}?workflowType=machine_learning" in result.stdout

    page = card_page(project.root / "compare.html")
    grids = embedded_images(page)
    expected = [Path(s["run_dir"]) / "eval" / "samples.png" for s in (smoke.first_summary, smoke.second_summary)]
    assert sorted(grids) == sorted(p.read_bytes() for p in expected)

    every = project.ganpipe("compare")  # no name: every registered model
    assert every.returncode == 0 and NAME in every.stdout
    missing = project.ganpipe("compare", "no-such-model")
    assert missing.returncode == 2 and "no registered model 'no-such-model'" in missing.stderr and NAME in missing.stderr


# -- using the registered model ------------------------------------------------------------------


def champion_checkpoint(client, smoke: SmokeRuns) -> str:
    run_id = client.get_model_version_by_alias(NAME, "champion").run_id
    summary = next(s for s in (smoke.first_summary, smoke.second_summary) if s["mlflow_run_id"] == run_id)
    return summary["training"]["checkpoint"]


@pytest.mark.slow
def test_sample_from_registry_and_checkpoint(smoke, project):
    first_checkpoint = smoke.first_summary["training"]["checkpoint"]
    sources = {"champion": f"models:/{NAME}@champion", "v1": f"models:/{NAME}/1", "checkpoint": first_checkpoint}
    expected = {"champion": sample_reference(champion_checkpoint(project.client(), smoke), 16),
                "v1": sample_reference(first_checkpoint, 16), "checkpoint": sample_reference(first_checkpoint, 16)}
    for key, uri in sources.items():
        result = project.ganpipe("sample", uri, "--n", "16", "--out", f"samples/{key}.npy")
        assert result.returncode == 0, explain(result)
        samples = np.load(project.root / "samples" / f"{key}.npy")
        assert samples.dtype == np.float32 and samples.shape == (16, 1, 16, 16), key
        assert np.isfinite(samples).all() and samples.min() >= -1 and samples.max() <= 1
        np.testing.assert_allclose(samples, expected[key], atol=1e-5, err_msg=key)


@pytest.mark.slow
def test_export_champion_runs_in_onnxruntime(smoke, project):
    import onnxruntime as ort
    import torch

    from ganmodels.train import load_generator

    result = project.ganpipe("export", f"models:/{NAME}@champion", "--out", "exported/g.onnx")
    assert result.returncode == 0, explain(result)
    session = ort.InferenceSession(str(project.root / "exported" / "g.onnx"), providers=["CPUExecutionProvider"])
    (z_input,) = session.get_inputs()  # unconditional: z only
    G = load_generator(champion_checkpoint(project.client(), smoke))
    z = torch.randn(3, G.z_dim, generator=torch.Generator().manual_seed(5))
    (images,) = session.run(None, {z_input.name: z.numpy()})
    assert images.shape == (3, 1, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(images, G(z, None).numpy(), atol=1e-4)


# -- runs that must not register ----------------------------------------------------------------


@pytest.mark.slow
def test_gate_rejection_registers_nothing(smoke, project):
    client = project.client()
    before = registry_snapshot(client)
    result, summary = project.run("--preset", "smoke", "--set", "gates.class_coverage.min=1.0",
                                  "--set", "gates.class_kl.max=0.0001")
    assert result.returncode == 4, explain(result)
    assert registry_snapshot(client) == before
    assert "Traceback" not in result.stderr  # an expected failure: a summary, not a stack trace

    assert summary["status"] == "rejected" and summary["exit_code"] == 4
    assert summary["registry"]["registered"] is False
    run = client.get_run(summary["mlflow_run_id"])
    metrics = run.data.metrics
    expected = {name for name, failed in (("class_coverage", metrics["class_coverage"] < 1.0),
                                          ("class_kl", metrics["class_kl"] > 0.0001)) if failed}
    assert expected, "the smoke model met the strict gates: this test needs a stricter threshold"
    tags = run.data.tags
    assert tags["gate_status"] == "rejected" and tags["ganpipe.status"] == "rejected"
    assert set(tags["failed_gates"].split(",")) == expected == set(summary["failed_gates"])
    for name in expected:
        assert "FAILS" in tags[f"gate.{name}"]
    assert "FAIL" in result.stdout and "nothing registered" in result.stdout
    assert not [m for m in client.search_logged_models([run.info.experiment_id]) if m.source_run_id == run.info.run_id]
    assert not (Path(summary["run_dir"]) / "export").exists()  # export runs only after the gates pass
    # The card of a rejected run says why, with the numbers of its own eval/gates.json.
    run_dir = Path(summary["run_dir"])
    gates = json.loads((run_dir / "eval" / "gates.json").read_text())["gates"]
    page = card_page(run_dir / "report.html")
    assert page.summary[0] == f"Verdict: rejected by gate(s) {', '.join(sorted(expected))}; nothing registered"
    assert page.summary[1] == (f"Gates: {sum(g['passed'] for g in gates)} of {len(gates)} passed: "
                               + "; ".join(expected_gate_line(g) for g in gates))
    table = [r for r in page.rows if len(r) == 5 and r[0] in {g["name"] for g in gates}]
    assert [(r[0], r[3]) for r in table] == [(g["name"], "pass" if g["passed"] else "FAIL") for g in gates]
    assert "report.html" in artifact_files(client, run.info.run_id)


@pytest.mark.slow
def test_collapse_detected_while_training_stops_the_run_and_registers_nothing(smoke, project):
    # A 20-step generator covers ~1 of 10 classes: with a monitor demanding all of them and patience 1,
    # the run must stop at the first evaluation, and the model must never reach the registry, even
    # with every final gate switched off (the smoke preset).
    client = project.client()
    before = registry_snapshot(client)
    result, summary = project.run("--preset", "smoke", "--set", "monitor.every=20", "--set", "monitor.patience=1",
                                  "--set", "monitor.early_stop=true", "--set", "monitor.warmup=0",
                                  "--set", "monitor.min_class_coverage=1.0")
    assert result.returncode == 4, explain(result)
    assert registry_snapshot(client) == before
    assert summary["training"]["stopped_early"] is True and summary["training"]["steps"] == 20
    assert "early_stop" in summary["failed_gates"] and "collapse" in summary["failed_gates"]["early_stop"].lower()
    run = client.get_run(summary["mlflow_run_id"])
    assert run.data.tags["gate_status"] == "rejected"
    assert client.get_metric_history(run.info.run_id, "monitor.class_coverage")[0].value < 1.0


@pytest.mark.slow
def test_validation_failure_stops_before_training(smoke, project):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, size=(200, 8, 8)).astype(np.float32)
    images[3, 2, 2] = np.nan
    images[50, 0, 0] = np.nan
    np.save(project.root / "nan_digits.npy", images)
    np.save(project.root / "nan_digits.labels.npy", np.arange(200) % 10)  # labelled, so the run can be scored
    client = project.client()
    before = registry_snapshot(client)

    result, summary = project.run("--preset", "smoke", "--dataset", "nan_digits.npy")
    assert result.returncode == 3, explain(result)
    assert "data validation failed" in result.stderr and "no_nan" in result.stderr and "Traceback" not in result.stderr
    assert "nan_digits.npy[all:3]" in result.stderr and "nan_digits.npy[all:50]" in result.stderr
    assert registry_snapshot(client) == before
    run_dir = Path(summary["run_dir"])
    assert summary["status"] == "failed" and "DataValidationError" in summary["error"]
    docs = run_dir / "validation" / "data_docs" / "index.html"
    assert docs.is_file() and "<html" in docs.read_text().lower()
    assert not (run_dir / "data").exists() and not (run_dir / "train").exists()
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED" and run.data.tags["ganpipe.error_type"] == "DataValidationError"
    assert "validation/data_docs/index.html" in artifact_files(client, run.info.run_id)
    page = card_page(run_dir / "report.html")  # a failed run's card: what it got to and why it stopped
    assert page.summary[0].startswith("Verdict: failed: DataValidationError") and "no_nan" in [r[0] for r in page.rows]
    assert "report.html" in artifact_files(client, run.info.run_id)
    assert not client.get_metric_history(run.info.run_id, "d_loss")


@pytest.mark.slow
def test_divergence_fails_the_run(smoke, project):
    client = project.client()
    before = registry_snapshot(client)
    # Adam with lr 1e6 on an unnormalised WGAN critic: the generator loss runs away on the first step,
    # again after the one allowed rollback (checked: ~1e21 against the limit of 10 for seeds 0, 1, 2).
    result, summary = project.run("--preset", "smoke", "--set", "train.lr_d=1e6", "--set", "train.loss=wgan",
                                  "--set", "model.d_norm=none", "--set", "train.guard.loss_limit=10",
                                  "--set", "train.guard.max_rollbacks=1")
    assert result.returncode == 5, explain(result)
    assert "training diverged" in result.stderr and "Traceback" not in result.stderr
    assert registry_snapshot(client) == before
    assert summary["status"] == "failed" and "TrainingDiverged" in summary["error"]
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FAILED"
    assert run.data.tags["ganpipe.error_type"] == "TrainingDiverged"
    assert "diverged" in run.data.tags["ganpipe.error"] and "exceeds the limit 10" in run.data.tags["ganpipe.error"]
    assert "rollback.1" in run.data.tags and "rollback.2" not in run.data.tags
    assert run.data.params["train.lr_d"] == "1000000.0"
    assert not (Path(summary["run_dir"]) / "export").exists()


@pytest.mark.parametrize("args, named", [
    (["--dataset", "nosuchset"], "'nosuchset'"),
    (["--dataset", "missing_folder/"], "'missing_folder/'"),
    (["--set", "train.steps=abc"], "train.steps"),
    (["--preset", "nope"], "'nope'"),
])
def test_bad_input_exits_2_and_creates_nothing(args, named, tmp_path, prefect_api):
    project = make_project(tmp_path / "project", cli_env(tmp_path, PREFECT_API_URL=prefect_api,
                                                          PREFECT_HOME=str(tmp_path / "prefect")))
    # An earlier run's summary in the project: a failed start must not report it as its own.
    earlier = project.root / "runs" / "earlier-run" / "summary.json"
    earlier.parent.mkdir(parents=True)
    earlier.write_text(json.dumps({"status": "registered", "run_name": "earlier-run", "run_dir": str(earlier.parent)}))

    result, summary = project.run("--preset", "smoke", *args)
    assert result.returncode == 2, explain(result)
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("ganpipe: bad input:") and named in last_line
    # CI still gets a machine-readable verdict, and never an earlier run's summary.
    assert summary == {"status": "bad_input", "exit_code": 2} and "earlier-run" not in result.stdout
    assert not (project.root / "mlflow.db").exists() and not (project.root / "mlartifacts").exists()
    assert sorted(p.name for p in (project.root / "runs").iterdir()) == ["earlier-run"]


# -- 2D data through the same flow ---------------------------------------------------------------


@pytest.mark.slow
def test_ring8_trains_mlp2d_with_an_ephemeral_prefect_server(tmp_path):
    # No PREFECT_API_URL or PREFECT_HOME: the default path of a user's first run (setup_environment
    # puts the Prefect home in the project and the flow starts an ephemeral server).
    project = make_project(tmp_path / "project", cli_env(tmp_path))
    result, summary = project.run("--dataset", "ring8", "--preset", "smoke")
    assert result.returncode == 0, explain(result)
    assert (project.root / ".prefect").is_dir()
    assert (summary["model"], summary["status"]) == ("mlp2d", "registered")
    assert (summary["registry"]["model_name"], summary["registry"]["version"]) == ("mlp2d-ring8", "1")
    assert summary["evaluation"]["primary_metric"] == "reverse_kl"
    client = project.client()
    assert aliases(client, "mlp2d-ring8") == {"champion": "1", "challenger": "1"}
    metrics = client.get_run(summary["mlflow_run_id"]).data.metrics
    assert {"reverse_kl", "modes_captured", "high_quality_fraction"} <= set(metrics)

    sampled = project.ganpipe("sample", "models:/mlp2d-ring8@champion", "--n", "50", "--out", "points.npy")
    assert sampled.returncode == 0, explain(sampled)
    points = np.load(project.root / "points.npy")
    assert points.dtype == np.float32 and points.shape == (50, 2) and np.isfinite(points).all()
    np.testing.assert_allclose(points, sample_reference(summary["training"]["checkpoint"], 50), atol=1e-5)


# -- Pix2Pix: a paired folder that fails validation ------------------------------------------------


@pytest.mark.slow
def test_a_paired_folder_with_bad_pairs_fails_validation_and_registers_nothing(smoke, project):
    from PIL import Image

    root = project.root / "bad_pairs"
    (root / "A").mkdir(parents=True)
    (root / "B").mkdir()
    rng = np.random.default_rng(0)
    for i in range(120):
        b = (rng.random((16, 16)) * 255).astype(np.uint8)
        Image.fromarray(b).save(root / "B" / f"{i:03d}.png")
        if i != 5:  # 005 has no input
            a = b[:5, :5] if i == 7 else b.reshape(8, 2, 8, 2).mean(axis=(1, 3)).astype(np.uint8)  # 007: wrong size
            Image.fromarray(np.ascontiguousarray(a)).save(root / "A" / f"{i:03d}.png")
    (root / "A" / "009.png").write_bytes(b"truncated")  # 009: corrupt input
    client = project.client()
    before = registry_snapshot(client)
    result, summary = project.run("--preset", "smoke", "--dataset", "bad_pairs")
    assert result.returncode == 3, explain(result)
    assert summary["model"] == "pix2pix" and "data validation failed" in result.stderr
    for name, check in (("005.png", "pair_complete"), ("009.png", "pair_complete"), ("007.png", "pair_scale")):
        assert name in result.stderr and check in result.stderr
    assert "Traceback" not in result.stderr
    assert registry_snapshot(client) == before
