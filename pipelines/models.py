"""Resolve a model reference (registry URI or checkpoint path) to a generator; load image sets for FID."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from ganmodels.train import load_generator

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def load_generator_from_uri(model_uri: str, *, project_dir: str | os.PathLike | None = None) -> torch.nn.Module:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a checkpoint path -> generator in eval mode."""
    if not model_uri.startswith("models:/"):
        path = Path(model_uri)
        if not path.is_file():
            raise FileNotFoundError(f"{model_uri}: no such checkpoint; pass a checkpoint path (runs/<run>/train/"
                                    "checkpoints/last.pt) or models:/NAME@ALIAS or models:/NAME/VERSION")
        return load_generator(path)
    match = _MODELS_URI.match(model_uri)
    if not match:
        from pipelines.cli import UsageError

        raise UsageError(f"{model_uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from pipelines.tracking import CHECKPOINT_FILE

    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path(project_dir or os.getcwd()).resolve() / 'mlflow.db'}"
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    name, alias, version = match["name"], match["alias"], match["version"]
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException as e:
        raise FileNotFoundError(f"{model_uri} not found in the registry at {uri}: {e.message}. "
                                "List models in the MLflow UI or run `ganpipe run` first.") from None
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(download_artifacts(artifact_uri=f"models:/{name}/{mv.version}", dst_path=tmp))
        found = list(local.rglob(CHECKPOINT_FILE))
        if not found:
            raise FileNotFoundError(f"{model_uri} (version {mv.version}) holds no {CHECKPOINT_FILE}; it was not "
                                    "logged by ganpipe")
        return load_generator(found[0])


@torch.no_grad()
def sample_array(G: torch.nn.Module, n: int, *, seed: int = 0) -> np.ndarray:
    from ganmodels.metrics.evaluate import sample_generator

    samples, _ = sample_generator(G, n, seed=seed)
    return samples.float().clamp(-1, 1).numpy() if samples.dim() == 4 else samples.float().numpy()


def load_images(spec: str) -> torch.Tensor:
    """An image folder or a .npy array -> float32 (N, C, H, W) in [-1, 1] (via the data package's readers)."""
    from ganmodels.data import DataConfig, DataError, prepare, read_source

    path = Path(spec)
    if path.is_dir():
        name = "folder"
    elif path.suffix == ".npy" and path.is_file():
        name = "npy"
    else:
        raise DataError(f"{spec}: expected an image folder or a .npy array file")
    source = read_source(DataConfig(name=name, root=str(path)))
    first = source.samples[0]
    resolution = int(max(first.shape[:2])) if source.kind == "image" else 0
    if source.kind != "image":
        raise DataError(f"{spec} holds 2D points, not images; FID needs images")
    data = prepare(source, DataConfig(name=name, root=str(path), resolution=resolution, test_fraction=0.5))
    return torch.cat([data.x_train, data.x_test])
