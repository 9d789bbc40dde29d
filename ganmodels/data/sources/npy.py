"""``npy``: one ``.npy`` array of images or 2D points, with optional labels beside it.

Accepted shapes: ``(N, H, W)`` grey images; ``(N, C, H, W)`` with C in {1, 3}; ``(N, H, W, C)`` with
C in {1, 3, 4}; ``(N, 2)`` points. A 4-D array whose axis 1 is 1 or 3 is read as channels-first
(PyTorch's order). Labels come from a sibling ``<stem>.labels.npy``: N integers or strings, mapped
to class indices in sorted order, the original values becoming the class names.

Declared value range, which ``prepare`` maps onto [-1, 1]: uint8 -> (0, 255); uint16 ->
(0, 65535); any other dtype -> the first of (0, 1), (-1, 1), (0, 255) that holds every finite
value, else the observed (min, max) of the finite values (a stretch to [-1, 1] per data set).
Points keep their coordinates; their range is the observed one, for validation only.
Arrays are never unpickled (``allow_pickle=False``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind, kind_of
from ganmodels.data.registry import register_dataset
from ganmodels.data.splits import cap_indices

STANDARD_RANGES = ((0.0, 1.0), (-1.0, 1.0), (0.0, 255.0))


def labels_path(path: Path) -> Path:
    return path.with_name(path.name[: -len(".npy")] + ".labels.npy")


def load_array(path: Path) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)  # mmap: a cap reads only what it keeps
    except (OSError, ValueError) as e:
        if "Python objects" in str(e) or "allow_pickle" in str(e):
            raise DataError(f"array file {path} holds Python objects (a pickled array); data files are never "
                            "unpickled (allow_pickle=False), save a numeric array instead") from e
        raise DataError(f"cannot read array file {path}: {e}") from e


def sample_layout(shape: tuple[int, ...], path: Path) -> str:
    """'points', 'nhw', 'nchw' or 'nhwc' for an array shape; anything else raises."""
    if len(shape) == 2 and shape[1] == 2:
        return "points"
    if len(shape) == 3:
        return "nhw"
    if len(shape) == 4 and shape[1] in (1, 3):
        return "nchw"
    if len(shape) == 4 and shape[3] in (1, 3, 4):
        return "nhwc"
    raise DataError(
        f"array {path} has shape {shape}; accepted: (N, H, W), (N, C, H, W) with C in {{1, 3}}, "
        f"(N, H, W, C) with C in {{1, 3, 4}}, or (N, 2) points"
    )


def declared_range(values: np.ndarray, points: bool) -> tuple[float, float]:
    """The value range declared for an array (see module docstring)."""
    if not points and values.dtype == np.uint8:
        return (0.0, 255.0)
    if not points and values.dtype == np.uint16:
        return (0.0, 65535.0)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size == 0:
        raise DataError("the array holds no finite values")
    lo, hi = float(finite.min()), float(finite.max())
    if not points:
        for r in STANDARD_RANGES:
            if r[0] <= lo and hi <= r[1]:
                return r
    if hi == lo:  # a constant array: widen so that the range is not empty
        return (lo - 1.0, hi + 1.0) if points else (lo, lo + 1.0)
    return (lo, hi)


def _declared_range_of(values: np.ndarray, points: bool, path: Path) -> tuple[float, float]:
    try:
        return declared_range(values, points)
    except DataError as e:
        raise DataError(f"array {path}: {e}; replace the NaN/inf values") from e


def read_labels(path: Path, n: int) -> tuple[np.ndarray | None, list[str] | None]:
    lpath = labels_path(path)
    if not lpath.is_file():
        return None, None
    raw = load_array(lpath)
    if raw.shape != (n,) or raw.dtype.kind not in "iuUb":
        raise DataError(f"labels file {lpath} must hold {n} integers or strings (shape ({n},)), got {raw.dtype}{raw.shape}")
    values, labels = np.unique(np.asarray(raw), return_inverse=True)
    return labels.astype(np.int64), [str(v) for v in values.tolist()]


def npy_kind(cfg: DataConfig) -> DataKind:
    """From the array's header (shape) and whether a labels file lies beside it; no data read."""
    path = Path(cfg.root or "")
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise DataError(f"npy data set: data.root {path} must be an existing .npy file")
    layout = sample_layout(load_array(path).shape, path)  # memory-mapped: only the header is read
    return kind_of("points" if layout == "points" else "image", labelled=labels_path(path).is_file())


@register_dataset("npy", kind=npy_kind,
                  description="one .npy array: (N,H,W), (N,C,H,W), (N,H,W,C) images or (N,2) points")
def read_npy(cfg: DataConfig) -> SourceData:
    path = Path(cfg.root or "")
    if path.suffix.lower() != ".npy" or not path.is_file():
        raise DataError(f"npy data set: data.root {path} must be an existing .npy file")
    array = load_array(path)
    layout = sample_layout(array.shape, path)
    if len(array) == 0 or array.size == 0:
        raise DataError(f"array {path} holds no samples (shape {array.shape}); an empty data set cannot be trained on")
    labels_all, class_names = read_labels(path, len(array))
    keep = cap_indices(labels_all, None, len(array), cfg.max_samples, cfg.split_seed)
    if array.dtype.kind not in "biuf":
        raise DataError(f"array {path} has dtype {array.dtype}; use a boolean, integer or floating-point array")
    # Into memory (a copy, so no file stays mapped), native dtype.
    values = np.asarray(array[keep]) if len(keep) < len(array) else np.array(array)
    labels = None if labels_all is None else labels_all[keep]
    ids = [f"{path.name}[all:{i}]" for i in keep]
    if layout == "points":
        samples: list[np.ndarray] | np.ndarray = values
    elif layout == "nchw":
        samples = list(np.moveaxis(values, 1, -1))  # SourceData images are (H, W, C)
    else:
        samples = list(values)
    return SourceData(
        name="npy",
        kind="points" if layout == "points" else "image",
        samples=samples,
        labels=labels,
        ids=ids,
        value_range=_declared_range_of(values, layout == "points", path),
        class_names=class_names,
        origin=str(path),
    )
