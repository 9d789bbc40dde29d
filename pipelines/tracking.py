"""MLflow tracking for one pipeline run: explicit run id; a local SQLite store with an explicit artifact
location, or a tracking server that chooses (and may serve) the artifact location.

Every call names its run id (no reliance on a thread's "active run"), so Prefect tasks may run in
any thread.
"""

from __future__ import annotations

import math
import os
import re
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param

from ganmodels.train import Callback
from pipelines.config import RunConfig, TrackingConfig
from pipelines.errors import TrackingUnavailable, _is_tracking_failure
from pipelines.locks import store_lock

GENERATOR_ARTIFACT = "generator"
CHECKPOINT_FILE = "checkpoint.pt"
# MLflow 3's UI opens an experiment on its GenAI overview unless the experiment says it trains models
# (the experiment tag its own UI writes when a user picks "Model training").
EXPERIMENT_KIND_TAG, EXPERIMENT_KIND = "mlflow.experimentKind", "custom_model_development"
# The Source column of the runs table: mlflow.source.name shown by its base name for type LOCAL.
SOURCE_TYPE = "LOCAL"
DEFAULT_UI_ADDRESS = "http://127.0.0.1:5000"
UI_VIEW = "workflowType=machine_learning"
# MLflow keeps at most 36 characters of a dataset digest (mlflow.utils.validation.MAX_DATASET_DIGEST_SIZE);
# the full sha256 is the run's data.hash param and the dataset's profile.
DATASET_DIGEST_CHARS = 36


def tracking_uri(cfg: RunConfig | TrackingConfig, project_dir: Path) -> str:
    """params.yaml's tracking.tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db.

    MLflow >= 3.13 refuses the ./mlruns file store, so the default is a SQLite database.
    """
    tracking = cfg.tracking if isinstance(cfg, RunConfig) else cfg
    return tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_dir / 'mlflow.db'}"


def project_store(params: str | os.PathLike | None, project_dir: Path) -> tuple[MlflowClient, str]:
    """(client, tracking URI) of the store ``ganpipe run`` writes to from ``project_dir``, for commands
    that read it (``ganpipe compare``, ``ganpipe ui``); a SQLite store that does not exist yet is an error."""
    from pipelines.config import load_tracking_config

    uri = tracking_uri(load_tracking_config(params), project_dir)
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise FileNotFoundError(f"no MLflow store at {uri[len('sqlite:///'):]}: run `ganpipe run` in this "
                                "directory first (or set tracking.tracking_uri / MLFLOW_TRACKING_URI)")
    return MlflowClient(uri), uri


def is_server_uri(uri: str) -> bool:
    """A tracking server (``http(s)://``, Databricks) rather than a store this process opens itself."""
    return uri.startswith(("http://", "https://", "databricks"))


# While checking that the store answers, one HTTP request must fail fast: ganpipe does the retrying
# (tracking.connect_retries), and MLflow's defaults (7 retries, backoff factor 2, 120 s timeout) would
# otherwise take minutes to say a server is down.
CHECK_REQUEST_TIMEOUT_S = 10


@contextmanager
def _single_http_attempt() -> "Iterator[None]":
    keys = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": str(CHECK_REQUEST_TIMEOUT_S)}
    saved = {k: os.environ.get(k) for k in keys}
    os.environ.update(keys)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def connect_store(cfg: RunConfig | TrackingConfig, project_dir: Path) -> MlflowClient:
    """A client of the run's store, proven to answer, its schema created under the store lock.

    Creating a SQLite store's schema is not safe from two processes at once (alembic's migration
    races), so the first calls happen under ``pipelines.locks.store_lock``. A store that does not
    answer (a REST server down, a SQLite file locked or unopenable) is retried
    ``tracking.connect_retries`` times with exponential backoff, then ``TrackingUnavailable`` (exit 8).
    Nothing falls back to another store.
    """
    tracking = cfg.tracking if isinstance(cfg, RunConfig) else cfg
    uri = tracking_uri(tracking, project_dir)
    started, tries, last = time.monotonic(), tracking.connect_retries + 1, None
    for attempt in range(tries):
        try:
            with _single_http_attempt(), store_lock(uri, project_dir):
                client = MlflowClient(uri)
                client.search_experiments(max_results=1)  # the tracking store (creates a SQLite schema)
                client.search_registered_models(max_results=1)  # the registry store, a second connection
                return client
        except Exception as e:  # noqa: BLE001 (classified below; anything else is re-raised)
            if isinstance(e, TrackingUnavailable) or not _is_tracking_failure(e):
                raise
            last = e
        if attempt + 1 < tries:
            time.sleep(tracking.retry_backoff * 2 ** attempt)
    reason = str(last).strip().splitlines()[0][:300] if last is not None else "no answer"
    fix = ("close the process holding the SQLite file locked (or check that its directory is writable)"
           if uri.startswith("sqlite:") else "start the server")
    raise TrackingUnavailable(
        f"MLflow tracking store {uri} did not answer after {tries} tries in {time.monotonic() - started:.0f} s "
        f"({type(last).__name__}: {reason}); {fix}, or fix tracking.tracking_uri / MLFLOW_TRACKING_URI "
        "(tracking.connect_retries and tracking.retry_backoff set the patience)") from last


def artifact_root(cfg: RunConfig, project_dir: Path) -> str | None:
    """Where a new experiment keeps its artifacts: ``tracking.artifact_root``, else the server's own default
    for a tracking server, else ``<project>/mlartifacts``.

    Against a server, None lets the server choose (``mlflow-artifacts:/`` with ``--serve-artifacts``, or its
    ``--default-artifact-root``): a path on this machine would be written here and be unreadable by every
    other client of the server. A local path is made absolute, else MLflow fixes it to the cwd.
    """
    root = cfg.tracking.artifact_root
    if root is None:
        if is_server_uri(tracking_uri(cfg, project_dir)):
            return None
        root = str(project_dir / "mlartifacts")
    # Any URI scheme (s3://, gs://, mlflow-artifacts:/, file:) is kept as written; a bare path is made absolute.
    return root if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:", root) else Path(root).resolve().as_uri()


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The experiment id; created with ``<artifact_location>/<name>`` (None: the tracking server's default)
    and marked as a model-training experiment, so MLflow's UI opens it on its training runs."""
    experiment = client.get_experiment_by_name(name)
    if experiment is None:
        location = f"{artifact_location.rstrip('/')}/{name}" if artifact_location else None
        return client.create_experiment(name, artifact_location=location,
                                        tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND})
    if EXPERIMENT_KIND_TAG not in experiment.tags:  # created by an earlier ganpipe; a user's choice is kept
        client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    return experiment.experiment_id


def ui_links(experiment_id: str | None, *, run_id: str | None = None, model_name: str | None = None,
             version: str | None = None, address: str = DEFAULT_UI_ADDRESS) -> dict[str, str]:
    """Pages of MLflow 3's UI: a hash router with the routes ``#/experiments/<id>/runs``,
    ``#/experiments/<id>/runs/<run>``, ``#/models/<name>``, ``#/models/<name>/versions/<v>``
    (mlflow/server/js's routes). Each link asks for the "Model training" view (``workflowType=
    machine_learning``): MLflow 3.17 otherwise shows its GenAI view, whose side bar has no model registry."""
    from urllib.parse import quote

    base, view = address.rstrip("/") + "/#", f"?{UI_VIEW}"
    links = {"training runs": f"{base}/experiments/{experiment_id}/runs{view}"} if experiment_id else {}
    if run_id and experiment_id:
        links["run"] = f"{base}/experiments/{experiment_id}/runs/{run_id}{view}"
    if model_name:
        links["registered model"] = f"{base}/models/{quote(model_name, safe='')}{view}"
        if version:
            links["model version"] = f"{base}/models/{quote(model_name, safe='')}/versions/{version}{view}"
    return links


def git_commit(project_dir: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=project_dir, capture_output=True, text=True, timeout=10)
        commit = out.stdout.strip() if out.returncode == 0 else "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=project_dir,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return f"{commit}{'-dirty' if dirty and commit != 'unknown' else ''}"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def flatten(values: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in values.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = str(value)[:6000]
    return out


class RunLogger:
    """Thin wrapper over ``MlflowClient`` bound to one run."""

    def __init__(self, client: MlflowClient, run_id: str):
        self.client, self.run_id = client, run_id

    @classmethod
    def start(cls, cfg: RunConfig, project_dir: Path, run_name: str, *, commit: str, source: str) -> "RunLogger":
        """A new run with MLflow's standard source tags: ``source`` (the entry point, e.g. ``ganpipe run``)
        and ``commit`` fill the runs table's Source and Version columns."""
        uri = tracking_uri(cfg, project_dir)
        mlflow.set_tracking_uri(uri)  # log_model and the registry's models:/ lookups use the global URI
        client = connect_store(cfg, project_dir)
        with store_lock(uri, project_dir):  # two first runs must not both create the experiment
            experiment_id = ensure_experiment(client, cfg.tracking.experiment, artifact_root(cfg, project_dir))
        run = client.create_run(experiment_id, run_name=run_name, tags={
            "ganpipe.model": cfg.model, "ganpipe.dataset": cfg.dataset, "ganpipe.preset": cfg.preset,
            "mlflow.source.name": source, "mlflow.source.type": SOURCE_TYPE, "mlflow.source.git.commit": commit})
        logger = cls(client, run.info.run_id)
        params = flatten({k: v for k, v in cfg.to_dict().items()})
        logger.log_params(params)
        return logger

    @classmethod
    def reopen(cls, cfg: RunConfig, project_dir: Path, run_id: str) -> "RunLogger":
        """The existing run ``run_id`` set back to RUNNING: a resumed run continues the same MLflow run, so
        its metrics keep their step numbers and no interrupted run is left behind."""
        uri = tracking_uri(cfg, project_dir)
        mlflow.set_tracking_uri(uri)
        client = MlflowClient(uri)
        client.update_run(run_id, status="RUNNING")
        return cls(client, run_id)

    @property
    def experiment_id(self) -> str:
        return self.client.get_run(self.run_id).info.experiment_id

    def log_dataset(self, name: str, data_hash: str, origin: str, profile: dict[str, Any],
                    context: str = "training") -> None:
        """The data set as an MLflow dataset input (the runs table's Dataset column): ``name``, digest =
        the data version (its first 36 characters, MLflow's limit), source = where it was read from."""
        import json

        path = Path(origin)
        source_type, source = (("local", {"uri": str(path.resolve())}) if origin and path.exists()
                               else ("code", {"tags": {"origin": origin}}))
        dataset = Dataset(name=name, digest=data_hash[:DATASET_DIGEST_CHARS], source_type=source_type,
                          source=json.dumps(source), profile=json.dumps({"data_hash": data_hash, **profile}))
        self.client.log_inputs(self.run_id, datasets=[
            DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])])

    def metric_histories(self, prefix: str) -> dict[str, list[tuple[int, float]]]:
        """``{name: [(step, value), ...]}`` of the run's metrics whose names start with ``prefix``."""
        names = [k for k in self.client.get_run(self.run_id).data.metrics if k.startswith(prefix)]
        return {k: [(m.step, m.value) for m in self.client.get_metric_history(self.run_id, k)] for k in names}

    def log_params(self, params: dict[str, Any]) -> None:
        items = [Param(k, str(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(self.run_id, params=items[i:i + 100])

    def log_metrics(self, metrics: dict[str, float], step: int = 0) -> None:
        import time

        ts = int(time.time() * 1000)
        items = [Metric(k, float(v), ts, step) for k, v in metrics.items()
                 if isinstance(v, (int, float)) and math.isfinite(float(v))]
        for i in range(0, len(items), 1000):
            self.client.log_batch(self.run_id, metrics=items[i:i + 1000])

    def set_tags(self, tags: dict[str, Any]) -> None:
        for k, v in tags.items():
            self.client.set_tag(self.run_id, k, str(v)[:5000])

    def log_artifact(self, path: str | os.PathLike, artifact_path: str | None = None) -> None:
        path = Path(path)
        if path.is_dir():
            self.client.log_artifacts(self.run_id, str(path), artifact_path)
        elif path.is_file():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def end(self, status: str) -> None:
        self.client.set_terminated(self.run_id, status)


class MlflowLossLogger(Callback):
    """Per-step losses to MLflow, batched (one SQLite write per ``flush_every`` steps, not per step)."""

    def __init__(self, run: RunLogger, flush_every: int = 100):
        self.run, self.flush_every = run, flush_every
        self.buffer: list[Metric] = []

    def on_step_end(self, trainer, step, logs):
        import time

        ts = int(time.time() * 1000)
        self.buffer += [Metric(k, v, ts, step) for k, v in logs.items() if math.isfinite(v)]
        if step % self.flush_every == 0:
            self.flush()

    def on_rollback(self, trainer, event):
        self.flush()
        self.run.set_tags({f"rollback.{event.rollbacks}": f"step {event.step} -> {event.restored_step}: "
                                                          f"{event.reason} (lr x{event.lr_scale:g})"})

    def on_checkpoint(self, trainer, path):
        # Whatever a checkpoint holds is in MLflow too: a run killed later resumes from that step, and
        # only the steps after it can be logged twice (same step numbers, same values on CPU).
        self.flush()

    def on_train_end(self, trainer, result):
        self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.buffer), 1000):
            self.run.client.log_batch(self.run.run_id, metrics=self.buffer[i:i + 1000])
        self.buffer = []


def logged_generator(run: RunLogger) -> str | None:
    """``models:/<id>`` of the generator this run already logged completely (status READY), if any.

    A resumed run reuses it rather than logging a second model; a logged model left PENDING or FAILED
    by a kill is ignored (nothing was registered from it).
    """
    experiment_id = run.client.get_run(run.run_id).info.experiment_id
    found = [m for m in run.client.search_logged_models([experiment_id], filter_string=f"name = '{GENERATOR_ARTIFACT}'")
             if m.source_run_id == run.run_id and str(getattr(m.status, "name", m.status)).upper().endswith("READY")]
    return f"models:/{found[0].model_id}" if found else None


@contextmanager
def download_version_checkpoint(client: MlflowClient, model_name: str, version: str) -> Iterator[Path]:
    """The ganpipe checkpoint inside registered version ``model_name``/``version``, in a temp folder."""
    from mlflow.artifacts import download_artifacts

    with tempfile.TemporaryDirectory() as tmp:
        local = Path(download_artifacts(artifact_uri=f"models:/{model_name}/{version}", dst_path=tmp,
                                        tracking_uri=client._tracking_client.tracking_uri))
        found = sorted(local.rglob(CHECKPOINT_FILE))
        if not found:
            raise FileNotFoundError(f"registered version {model_name}/{version} holds no {CHECKPOINT_FILE}; it was "
                                    "not logged by ganpipe and cannot be re-scored")
        yield found[0]


def log_generator(run: RunLogger, checkpoint: str | os.PathLike) -> str:
    """Log the trained generator as an MLflow pyfunc model with its named-tensor signature and an input
    example; returns its URI.

    Models-from-code (``pipelines/mlflow_model.py``): no pickled object. The ganpipe checkpoint is the
    model's artifact and ``ganmodels`` its code, so ``mlflow.pyfunc.load_model`` and ``ganpipe sample
    models:/…`` both rebuild it from plain state dicts. The signature comes from the model family
    (``z`` float32 (N, z_dim), plus ``c`` int64 (N,) for conditional models).
    """
    import numpy as np
    import torch
    from mlflow.models import ModelSignature
    from mlflow.types import Schema
    from mlflow.types import TensorSpec as MlflowTensorSpec

    import ganmodels
    from ganmodels.train import load_model

    signature = load_model(checkpoint).signature()
    spec = lambda s: MlflowTensorSpec(np.dtype(s.dtype), (-1, *s.shape), s.name)  # noqa: E731
    mlflow_signature = ModelSignature(inputs=Schema([spec(s) for s in signature.inputs]),
                                      outputs=Schema([spec(s) for s in signature.outputs]))
    example = {s.name: s.draw(2, torch.Generator().manual_seed(0)).numpy() for s in signature.inputs}
    with tempfile.TemporaryDirectory() as tmp:
        ckpt_copy = Path(tmp) / CHECKPOINT_FILE
        ckpt_copy.write_bytes(Path(checkpoint).read_bytes())
        with mlflow.start_run(run_id=run.run_id):
            info = mlflow.pyfunc.log_model(
                name=GENERATOR_ARTIFACT, python_model=str(Path(__file__).with_name("mlflow_model.py")),
                artifacts={"checkpoint": str(ckpt_copy)}, code_paths=[str(Path(ganmodels.__file__).parent)],
                signature=mlflow_signature, input_example=example,
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", f"numpy=={np.__version__}", "mlflow"],
            )
    return info.model_uri
