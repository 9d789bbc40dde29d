"""ONNX export of a model family's inference network, checked against PyTorch with onnxruntime.

What is exported and how it is called comes from the family's ``Signature``
(``ganmodels.families``): named, typed inputs with a dynamic batch dimension, and a named output.
For the noise family that is ``z`` float32 ``(B, z_dim)``, plus ``c`` int64 ``(B,)`` for
class-conditional models, giving ``image`` ``(B, C, H, W)`` or ``points`` ``(B, 2)``. A bare
generator module following the ``G(z, c)`` interface (``z_dim``, ``c_dim``) exports with that
noise signature too.

Exporters: the ``torch.export``-based exporter (``dynamo=True``, the default since torch 2.9) is
tried first; if it fails, the legacy TorchScript exporter is used and a warning logged. The one
used is recorded in the model's ``metadata_props`` (key ``exporter``), next to ``signature``
(JSON), ``family``, ``output_name``, ``output_shape``, ``ganpipe_version`` and, for noise
generators, ``z_dim`` and ``c_dim``; read them with ``read_metadata``.

onnx and onnxruntime are imported inside the functions so that ``import ganmodels`` does not
need them (they are in the ``pipeline`` extra).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ganmodels.io import StorageError, is_storage_error
from ganmodels.families.base import GANFamily, Signature
from ganmodels.families.noise import NoiseCall, noise_signature
from ganmodels.inference import module_device

log = logging.getLogger(__name__)

# Above this size the weights go to a side file: protobuf cannot serialise a message over 2 GiB.
_SINGLE_FILE_LIMIT_BYTES = 1_800_000_000


class OnnxExportError(RuntimeError):
    """Both exporters failed for a model; the message carries both errors."""


class OnnxMismatchError(AssertionError):
    """The ONNX model does not reproduce the PyTorch model within tolerance (or its output is not finite)."""

    def __init__(self, message: str, max_abs_diff: float, atol: float):
        super().__init__(message)
        self.max_abs_diff = max_abs_diff
        self.atol = atol


def _callable_and_signature(model: nn.Module, target: str | None = None) -> tuple[nn.Module, Signature, str]:
    """(module called with the signature's inputs, signature, family name) for one export target of a
    family (``export_targets``: the only one unless named), or for a bare ``G(z, c)``."""
    if isinstance(model, GANFamily):
        targets = model.export_targets()
        name = target if target is not None else next(iter(targets))
        if name not in targets:
            raise ValueError(f"model {model.name!r} exports {sorted(targets)}, not {name!r}")
        module, signature = targets[name]
        return module, signature, model.family
    if target is not None:
        raise ValueError("a bare generator has one export target; do not name one")
    signature = noise_signature(model)
    return NoiseCall(model, conditional=len(signature.inputs) > 1), signature, "noise"


def export_onnx(model: nn.Module, path: str | os.PathLike, *, opset: int = 18, batch_example: int = 2,
                target: str | None = None) -> Path:
    """Export ``model`` (a ``GANFamily``, or a bare ``G(z, c)`` generator) in eval mode to ONNX at
    ``path``, with the inputs and output its signature names and a dynamic batch dimension.

    The file appears at ``path`` only once complete: the exporter writes into a temporary
    directory beside it and the result is moved in with ``os.replace``. A failed export leaves
    ``path`` as it was (absent, or the previous model). Models under ~1.8 GB are one file;
    larger ones also get ``<name>.data`` beside it (moved in before the ``.onnx`` file).
    The model's train/eval modes are restored afterwards. ``target`` names one of a family's
    ``export_targets`` (CycleGAN: ``generator_a2b``, ``generator_b2a``); by default the first.
    """
    if batch_example < 2:
        # torch.export specialises dimensions of size 0 and 1, so the example batch must be >= 2.
        raise ValueError(f"batch_example must be >= 2 for a dynamic batch dimension, got {batch_example}")
    path = Path(path)
    call, signature, family = _callable_and_signature(model, target)
    example = tuple(x.to(module_device(call)) for x in signature.example(batch_example, torch.Generator().manual_seed(0)))
    with _eval_mode(call), torch.no_grad():
        out = call(*example)
    output = signature.outputs[0]
    if tuple(out.shape[1:]) != output.shape:
        raise OnnxExportError(f"the model returns shape {tuple(out.shape[1:])} per sample but its signature says "
                              f"{output.shape}")
    metadata = {
        "signature": signature.to_json(),
        "family": family,
        "output_name": output.name,
        "output_shape": json.dumps(list(output.shape)),  # per sample: [C, H, W] or [2]
        "ganpipe_version": _ganpipe_version(),
        "opset": str(opset),
    }
    if family in ("noise", "stylegan2"):  # onnx_sample reads these to draw the documented noise
        metadata["z_dim"] = str(signature.inputs[0].shape[0])
        classes = [spec for spec in signature.inputs if spec.name == "c"]
        metadata["c_dim"] = str(classes[0].high if classes else 0)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp_dir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
        try:
            tmp_file = tmp_dir / path.name  # same base name: an external-data reference stays valid after the move
            with _eval_mode(call):
                metadata["exporter"] = _export_with_fallback(call, example, tmp_file, opset, signature)
            _embed_metadata(tmp_file, metadata)
            _move_into_place(tmp_dir, path)
        finally:
            shutil.rmtree(tmp_dir, ignore_errors=True)
    except OSError as e:  # a full disk or read-only folder names the file the user asked for, not a temp name
        if is_storage_error(e) and not isinstance(e, StorageError):
            raise StorageError(path, e) from e
        raise
    return path


def check_onnx(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    batch_sizes: Sequence[int] = (1, 7, 64),
    seed: int = 0,
    atol: float = 1e-4,
    target: str | None = None,
) -> dict:
    """Run the ONNX model with onnxruntime (CPU) and compare it with ``model`` in eval mode.

    Fresh random inputs are drawn for every batch size, so passing at several sizes proves the
    batch dimension is dynamic. Returns ``{max_abs_diff, batch_sizes, atol, passed}``; raises
    ``OnnxMismatchError`` when the largest absolute difference is above ``atol``, when either
    output holds NaN or inf (a broken model must not pass because both sides are broken), or when
    the ONNX model's signature differs from the model's.
    """
    call, signature, _ = _callable_and_signature(model, target)
    saved = read_metadata(path).get("signature")
    if saved != signature:
        raise OnnxMismatchError(f"{path}: the ONNX model's signature {_describe(saved)} differs from the model's "
                                f"{_describe(signature)}", float("inf"), atol)
    session = _session(path)
    generator = torch.Generator().manual_seed(seed)
    max_abs_diff = 0.0
    with _eval_mode(call), torch.no_grad():
        for batch in batch_sizes:
            inputs = signature.example(batch, generator)
            expected = call(*(x.to(module_device(call)) for x in inputs)).cpu().numpy()
            (got,) = session.run(None, _feed(signature, inputs))
            if got.shape != expected.shape:
                raise OnnxMismatchError(
                    f"{path}: ONNX output shape {got.shape} != PyTorch {expected.shape} at batch {batch}",
                    float("inf"), atol)
            for side, values in (("PyTorch", expected), ("ONNX", got)):
                if not np.isfinite(values).all():
                    raise OnnxMismatchError(
                        f"{path}: the {side} output holds NaN or inf at batch {batch} (seed {seed}); a model with "
                        "non-finite outputs cannot be checked, let alone served", float("nan"), atol)
            diff = float(np.abs(got.astype(np.float64) - expected).max()) if got.size else 0.0
            max_abs_diff = diff if diff > max_abs_diff or not math.isfinite(diff) else max_abs_diff
    passed = math.isfinite(max_abs_diff) and max_abs_diff <= atol
    if not passed:
        raise OnnxMismatchError(
            f"{path}: ONNX output differs from PyTorch by max |diff| = {max_abs_diff:.3g} > atol = {atol:.3g} "
            f"(batch sizes {list(batch_sizes)}, seed {seed})",
            max_abs_diff,
            atol,
        )
    return {"max_abs_diff": max_abs_diff, "batch_sizes": list(batch_sizes), "atol": atol, "passed": passed}


def onnx_sample(
    path: str | os.PathLike,
    n: int,
    *,
    seed: int,
    labels: int | Sequence[int] | np.ndarray | None = None,
    batch_size: int = 256,
) -> np.ndarray:
    """Generate ``n`` samples with the ONNX model; returns float32 ``(n, *output_shape)``.

    Noise is ``np.random.default_rng(seed).standard_normal((n, z_dim), dtype=np.float32)``
    (documented so callers can reproduce it). For conditional models ``labels`` is one class
    index for all samples or ``n`` indices; when None, labels are drawn uniformly from the same
    generator after the noise. ``labels`` must be None for unconditional models.
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    meta = read_metadata(path)
    if meta.get("family", "noise") not in ("noise", "stylegan2") or "z_dim" not in meta:
        raise ValueError(f"{path} is not a noise-to-sample generator (family {meta.get('family')!r}); "
                         "onnx_sample draws z (and c) for those only")
    takes_psi = any(spec.name == "psi" for spec in meta["signature"].inputs)
    z_dim, c_dim = meta["z_dim"], meta["c_dim"]
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, z_dim), dtype=np.float32)
    c = _labels(labels, n, c_dim, rng)
    if n == 0:
        return np.zeros((0, *meta["output_shape"]), dtype=np.float32)
    session = _session(path)
    chunks = []
    for start in range(0, n, batch_size):
        feed = {"z": z[start : start + batch_size]}
        if c is not None:
            feed["c"] = c[start : start + batch_size]
        if takes_psi:  # StyleGAN2: untruncated samples
            feed["psi"] = np.ones(len(feed["z"]), dtype=np.float32)
        chunks.append(session.run(None, feed)[0])
    return np.concatenate(chunks).astype(np.float32, copy=False)


def read_metadata(path: str | os.PathLike) -> dict:
    """The ganpipe metadata of an exported model: ints for z_dim/c_dim/opset, a list for output_shape,
    a ``Signature`` for signature."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    meta: dict = {p.key: p.value for p in model.metadata_props}
    for key in ("z_dim", "c_dim", "opset"):
        if key in meta:
            meta[key] = int(meta[key])
    if "output_shape" in meta:
        meta["output_shape"] = json.loads(meta["output_shape"])
    if "signature" in meta:
        meta["signature"] = Signature.from_json(meta["signature"])
    return meta


def _describe(signature: Signature | None) -> str:
    if signature is None:
        return "(none recorded)"
    inputs = ", ".join(f"{i.name} {i.dtype}{list(i.shape)}" for i in signature.inputs)
    outputs = ", ".join(f"{o.name} {o.dtype}{list(o.shape)}" for o in signature.outputs)
    return f"({inputs}) -> ({outputs})"


def _feed(signature: Signature, inputs: tuple) -> dict[str, np.ndarray]:
    arrays = [x.cpu().numpy() if isinstance(x, torch.Tensor) else x for x in inputs]
    return {spec.name: array for spec, array in zip(signature.inputs, arrays)}


@contextlib.contextmanager
def _eval_mode(G: nn.Module) -> Iterator[None]:
    """Eval mode (BatchNorm uses running stats), restoring each submodule's own mode afterwards."""
    modes = [(m, m.training) for m in G.modules()]
    G.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def _export_with_fallback(model: nn.Module, example: tuple, file: Path, opset: int, signature: Signature) -> str:
    """Write ``model`` to ``file``; returns the exporter used, ``"dynamo"`` or ``"torchscript"``."""
    try:
        _export_dynamo(model, example, file, opset, signature)
        return "dynamo"
    except Exception as dynamo_err:  # the exporter raises many error types; any failure means "try the other one"
        log.warning("dynamo ONNX export failed (%s: %s); falling back to the TorchScript exporter",
                    type(dynamo_err).__name__, dynamo_err)
        for leftover in file.parent.iterdir():  # the temp dir is ours alone: clear what dynamo left
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        try:
            _export_torchscript(model, example, file, opset, signature)
        except Exception as ts_err:
            raise OnnxExportError(
                f"ONNX export failed with both exporters. dynamo: {type(dynamo_err).__name__}: {dynamo_err}; "
                f"torchscript: {type(ts_err).__name__}: {ts_err}"
            ) from ts_err
        return "torchscript"


def _export_dynamo(model: nn.Module, example: tuple, file: Path, opset: int, signature: Signature) -> None:
    batch = torch.export.Dim("batch", min=1)
    with warnings.catch_warnings():
        # z and c share one Dim on purpose; the exporter warns that the second name is unused.
        warnings.filterwarnings("ignore", message=".*shares the same shape constraints.*")
        program = torch.onnx.export(
            model,
            example,
            None,  # with a path, torch.onnx.export always writes <name>.data beside it (external_data=True)
            dynamo=True,
            opset_version=opset,
            input_names=[spec.name for spec in signature.inputs],
            output_names=[spec.name for spec in signature.outputs],
            dynamic_shapes=tuple({0: batch} for _ in example),
            verbose=False,
        )
    program.save(file, external_data=_param_bytes(model) > _SINGLE_FILE_LIMIT_BYTES)


def _export_torchscript(model: nn.Module, example: tuple, file: Path, opset: int, signature: Signature) -> None:
    names = [spec.name for spec in signature.inputs]
    output_name = signature.outputs[0].name
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export.*")
        warnings.filterwarnings("ignore", message=".*will be removed.*")
        torch.onnx.export(
            model,
            example,
            str(file),
            dynamo=False,
            opset_version=opset,
            input_names=names,
            output_names=[output_name],
            dynamic_axes={name: {0: "batch"} for name in [*names, output_name]},
        )


def _embed_metadata(file: Path, metadata: dict[str, str]) -> None:
    """Set model-level ``metadata_props``; weights in a side file, if any, are left untouched."""
    import onnx

    model = onnx.load(str(file), load_external_data=False)
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        if key in existing:
            existing[key].value = value
        else:
            model.metadata_props.add(key=key, value=value)
    onnx.checker.check_model(model)  # structure only; catches a broken graph before it is published
    onnx.save(model, str(file))


def _move_into_place(tmp_dir: Path, path: Path) -> None:
    """Move side files first and the ``.onnx`` file last, so ``path`` never refers to missing weights."""
    for side_file in tmp_dir.iterdir():
        if side_file.name != path.name:
            os.replace(side_file, path.parent / side_file.name)
    os.replace(tmp_dir / path.name, path)


def _session(path: str | os.PathLike):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3  # errors only
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _labels(labels, n: int, c_dim: int, rng: np.random.Generator) -> np.ndarray | None:
    if c_dim == 0:
        if labels is not None:
            raise ValueError("labels given for an unconditional model (c_dim=0)")
        return None
    if labels is None:
        return rng.integers(0, c_dim, size=n, dtype=np.int64)
    c = np.asarray(labels, dtype=np.int64)
    c = np.full(n, int(c), dtype=np.int64) if c.ndim == 0 else c
    if c.shape != (n,):
        raise ValueError(f"labels must be one int or {n} ints, got shape {c.shape}")
    if n and (c.min() < 0 or c.max() >= c_dim):
        raise ValueError(f"labels must lie in [0, {c_dim}), got range [{c.min()}, {c.max()}]")
    return c


def _param_bytes(model: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])


def _ganpipe_version() -> str:
    from ganmodels import __version__  # the package's own version; no install metadata needed

    return __version__
