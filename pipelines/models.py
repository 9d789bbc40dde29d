"""Resolve a model reference (registry URI or checkpoint path) to a trained model; sample it; load image sets for FID."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import numpy as np
import torch

from ganmodels.families import GANFamily
from ganmodels.train import load_model
from pipelines.errors import UsageError

_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def load_model_from_uri(model_uri: str, *, project_dir: str | os.PathLike | None = None) -> GANFamily:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION`` or a checkpoint path -> the trained model (EMA
    weights) in eval mode."""
    if not model_uri.startswith("models:/"):
        path = Path(model_uri)
        if not path.is_file():
            raise FileNotFoundError(f"{model_uri}: no such checkpoint; pass a checkpoint path (runs/<run>/train/"
                                    "checkpoints/last.pt) or models:/NAME@ALIAS or models:/NAME/VERSION")
        return load_model(path)
    match = _MODELS_URI.match(model_uri)
    if not match:
        raise UsageError(f"{model_uri!r} is not models:/NAME@ALIAS or models:/NAME/VERSION")
    from mlflow import MlflowClient
    from mlflow.artifacts import download_artifacts
    from mlflow.exceptions import MlflowException

    from pipelines.config import load_tracking_config
    from pipelines.tracking import CHECKPOINT_FILE, tracking_uri

    # The store `ganpipe run` registers to from this project: params.yaml's tracking.tracking_uri, else
    # $MLFLOW_TRACKING_URI, else the project's mlflow.db (a shared server set in params.yaml is found too).
    root = Path(project_dir or os.getcwd()).resolve()
    uri = tracking_uri(load_tracking_config(root / "params.yaml"), root)
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
        return load_model(found[0])


@torch.no_grad()
def sample_array(model: GANFamily, n: int, *, seed: int = 0, classes: list[int] | None = None,
                 truncation: float = 1.0) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` samples as float32 numpy (images clamped to [-1, 1]) and, for conditional models, their
    int64 labels: the classes in turn, or cycling through ``classes``. ``truncation``: StyleGAN2's psi."""
    import inspect

    if not hasattr(model, "sample"):
        raise UsageError(f"model {model.name!r} ({model.family} family) is not sampled from noise")
    options = {}
    if truncation != 1.0:
        if "truncation" not in inspect.signature(model.sample).parameters:
            raise UsageError(f"--truncation: model {model.name!r} ({model.family} family) has no truncation")
        options["truncation"] = truncation
    if classes and not getattr(model, "conditional", False):
        raise UsageError(f"--class: model {model.name!r} is unconditional; it takes no class")
    if classes:
        bad = [k for k in classes if not 0 <= k < model.generator.c_dim]
        if bad:
            raise UsageError(f"--class {bad[0]}: model {model.name!r} has classes 0..{model.generator.c_dim - 1}")
    samples, labels = model.sample(n, seed=seed, labels=classes or None, **options)
    samples = samples.float().clamp(-1, 1) if samples.dim() == 4 else samples.float()
    return samples.numpy(), (labels.numpy().astype(np.int64) if labels is not None else None)


def read_image_files(spec: str, purpose: str):
    """The raw ``SourceData`` of an image folder or a .npy array given on the command line."""
    from ganmodels.data import DataConfig, DataError, read_source

    path = Path(spec)
    if path.is_dir():
        name = "folder"
    elif path.suffix == ".npy" and path.is_file():
        name = "npy"
    else:
        raise DataError(f"{spec}: expected an image folder or a .npy array file")
    source = read_source(DataConfig(name=name, root=str(path)))
    if source.kind != "image":
        raise DataError(f"{spec} holds 2D points, not images; {purpose} needs images")
    return source


def load_images(spec: str) -> torch.Tensor:
    """An image folder or a .npy array -> float32 (N, C, H, W) in [-1, 1] (via the data package's readers)."""
    from ganmodels.data import DataConfig, prepare

    source = read_image_files(spec, "FID")
    resolution = int(max(source.samples[0].shape[:2]))
    data = prepare(source, DataConfig(name=source.name, root=spec, resolution=resolution, test_fraction=0.5))
    return torch.cat([data.x_train, data.x_test])


def read_inputs(spec: str, shape: tuple[int, ...]) -> tuple[torch.Tensor, list[str]]:
    """An image folder or a .npy array -> float32 (N, C, h, w) in [-1, 1] at the model's input ``shape``,
    and one name per input (for output files). Values are scaled like training data (see the npy reader)."""
    from ganmodels.data import DataError
    from ganmodels.data.imaging import prepare_images

    source = read_image_files(spec, "translation")
    name, path = source.name, Path(spec)
    channels, height, width = shape
    if height != width:
        raise DataError(f"the model takes {height}x{width} inputs; only square inputs are supported")
    inputs = prepare_images(source.samples, source.ids, source.value_range, height, channels)
    return inputs, [Path(i).stem if name == "folder" else f"{path.stem}_{k:05d}" for k, i in enumerate(source.ids)]


def _onnx_image_input(model_uri: str):
    """The one image input of an exported translation model (``TensorSpec``)."""
    from ganmodels.export import read_metadata

    if not Path(model_uri).is_file():
        raise FileNotFoundError(f"{model_uri}: no such ONNX file")
    inputs = read_metadata(model_uri)["signature"].inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 3:
        raise UsageError(f"{model_uri} takes inputs {[i.name for i in inputs]}, not one image input")
    return inputs[0]


def translate_array(model_uri: str, inputs: torch.Tensor, direction: str | None = None) -> np.ndarray:
    """Outputs for ``inputs`` from a registered model / checkpoint, or from an exported .onnx file.

    direction: for two-domain models, ``a2b`` (default) or ``b2a``; an .onnx file is one direction.
    """
    if model_uri.endswith(".onnx"):
        import onnxruntime as ort

        spec = _onnx_image_input(model_uri)
        session = ort.InferenceSession(model_uri, providers=["CPUExecutionProvider"])
        return np.concatenate([session.run(None, {spec.name: inputs[i:i + 256].numpy()})[0]
                               for i in range(0, len(inputs), 256)]).astype(np.float32)
    model = load_model_from_uri(model_uri)
    if not hasattr(model, "translate"):
        raise UsageError(f"model {model.name!r} ({model.family} family) does not translate inputs; use "
                         "`ganpipe sample` for models that generate from noise")
    if len(model.export_targets()) > 1:
        return model.translate(inputs, direction or "a2b").clamp(-1, 1).numpy()
    if direction is not None:
        raise UsageError(f"--direction: model {model.name!r} translates one way only")
    return model.translate(inputs).clamp(-1, 1).numpy()


def model_input_shape(model_uri: str, direction: str | None = None) -> tuple[int, ...]:
    """The (C, h, w) input of a translation model (registered, a checkpoint, or an .onnx file)."""
    if model_uri.endswith(".onnx"):
        return tuple(_onnx_image_input(model_uri).shape)
    model = load_model_from_uri(model_uri)
    targets = model.export_targets()
    if direction is not None and f"generator_{direction}" not in targets:
        raise UsageError(f"--direction {direction}: model {model.name!r} exports {sorted(targets)}")
    _, signature = targets.get(f"generator_{direction}", next(iter(targets.values())))
    inputs = signature.inputs
    if len(inputs) != 1 or len(inputs[0].shape) != 3:
        raise UsageError(f"model {model.name!r} ({model.family} family) does not translate images; use "
                         "`ganpipe sample` for models that generate from noise")
    return tuple(inputs[0].shape)
