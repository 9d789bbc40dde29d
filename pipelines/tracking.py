"""MLflow tracking for one pipeline run: explicit run id, SQLite store, explicit artifact location.

Every call names its run id (no reliance on a thread's "active run"), so Prefect tasks may run in
any thread.
"""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import mlflow
import mlflow.pyfunc
from mlflow import MlflowClient
from mlflow.entities import Metric, Param

from ganmodels.train import Callback
from pipelines.config import RunConfig

GENERATOR_ARTIFACT = "generator"
CHECKPOINT_FILE = "checkpoint.pt"


def tracking_uri(cfg: RunConfig, project_dir: Path) -> str:
    """params.yaml's tracking.tracking_uri, else $MLFLOW_TRACKING_URI, else sqlite:///<project>/mlflow.db.

    MLflow >= 3.13 refuses the ./mlruns file store, so the default is a SQLite database.
    """
    return cfg.tracking.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_dir / 'mlflow.db'}"


def artifact_root(cfg: RunConfig, project_dir: Path) -> str:
    root = cfg.tracking.artifact_root or str(project_dir / "mlartifacts")
    return root if "://" in root else Path(root).resolve().as_uri()


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str) -> str:
    """The experiment id; created with an explicit artifact location (else MLflow fixes it to the cwd)."""
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return client.create_experiment(name, artifact_location=f"{artifact_location.rstrip('/')}/{name}")


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
    def start(cls, cfg: RunConfig, project_dir: Path, run_name: str) -> "RunLogger":
        uri = tracking_uri(cfg, project_dir)
        mlflow.set_tracking_uri(uri)  # log_model and the registry's models:/ lookups use the global URI
        client = MlflowClient(uri)
        experiment_id = ensure_experiment(client, cfg.tracking.experiment, artifact_root(cfg, project_dir))
        run = client.create_run(experiment_id, run_name=run_name, tags={
            "ganpipe.model": cfg.model, "ganpipe.dataset": cfg.dataset, "ganpipe.preset": cfg.preset,
            "mlflow.source.git.commit": git_commit(project_dir)})
        logger = cls(client, run.info.run_id)
        params = flatten({k: v for k, v in cfg.to_dict().items()})
        logger.log_params(params)
        return logger

    @property
    def ui_url(self) -> str:
        return f"run {self.run_id}"

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

    def on_train_end(self, trainer, result):
        self.flush()

    def flush(self) -> None:
        for i in range(0, len(self.buffer), 1000):
            self.run.client.log_batch(self.run.run_id, metrics=self.buffer[i:i + 1000])
        self.buffer = []


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
