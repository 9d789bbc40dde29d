"""Paired image sets read from files: input A and target B of the same sample (``DataKind.PAIRED_IMAGES``).

* ``paired-folder``: a directory with ``A/`` and ``B/`` sub-folders holding files of the same
  relative names (``A/0001.png`` pairs with ``B/0001.png``); A may be smaller than B by an integer
  scale (super-resolution) or the same size (translation).
* ``aligned``: pix2pix's reference format, one image per sample with A on the left half and B on
  the right (``W = 2 H``).
* ``npz-pairs``: one ``.npz`` with arrays ``a`` and ``b`` (the ``npy`` layouts: (N, H, W),
  (N, C, H, W) or (N, H, W, C)) and optionally ``labels`` (N,).

Readers never raise on a bad pair: a missing partner or an unreadable file becomes a ``problems``
entry on that sample, so that validation can name every bad pair in one report (exit 3) instead
of stopping at the first.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind
from ganmodels.data.registry import register_dataset
from ganmodels.data.sources.folder import common_range, find_images, read_image
from ganmodels.data.sources.npy import declared_range, sample_layout
from ganmodels.data.splits import cap_indices


def _root(cfg: DataConfig, what: str) -> Path:
    root = Path(cfg.root or "")
    if not root.exists():
        raise DataError(f"{cfg.name} data set: data.root {root} does not exist; it must be {what}")
    return root


def _read(path: Path, depths: list[int | None]) -> tuple[np.ndarray | None, str]:
    """Pixels (None when unreadable) and the problem; the bit depth is appended to ``depths``."""
    try:
        pixels, depth = read_image(path)
    except DataError as e:
        depths.append(None)
        return None, f"unreadable: {e}"
    depths.append(depth)
    return pixels, ""


def _unify(inputs: list, targets: list, depths_a: list, depths_b: list) -> tuple[list, list, tuple[float, float]]:
    """One value range for inputs and targets together (mixed bit depths: each scaled by its own, see
    ``folder.common_range``)."""
    n = len(inputs)
    both, value_range = common_range(inputs + targets, depths_a + depths_b)
    return both[:n], both[n:], value_range


@register_dataset("paired-folder", kind=DataKind.PAIRED_IMAGES,
                  description="a directory with A/ (inputs) and B/ (targets) of matching file names")
def read_paired_folder(cfg: DataConfig) -> SourceData:
    root = _root(cfg, "a directory with A/ and B/ sub-folders")
    if not ((root / "A").is_dir() and (root / "B").is_dir()):
        raise DataError(f"paired-folder data set: {root} needs sub-folders A/ (inputs) and B/ (targets)")
    a_names = {p.as_posix() for p in find_images(root / "A")}
    b_names = {p.as_posix() for p in find_images(root / "B")}
    names = sorted(a_names | b_names)
    if not names:
        raise DataError(f"paired-folder data set: no image files under {root}/A or {root}/B")
    keep = cap_indices(None, None, len(names), cfg.max_samples, cfg.split_seed)
    inputs, targets, problems, depths_a, depths_b = [], [], [], [], []
    for name in (names[i] for i in keep):
        if name in a_names:
            a, a_problem = _read(root / "A" / name, depths_a)
        else:
            a, a_problem = None, f"no partner A/{name}"
            depths_a.append(None)
        if name in b_names:
            b, b_problem = _read(root / "B" / name, depths_b)
        else:
            b, b_problem = None, f"no partner B/{name}"
            depths_b.append(None)
        inputs.append(a)
        targets.append(b)
        problems.append("; ".join(p for p in (a_problem and f"A: {a_problem}", b_problem and f"B: {b_problem}") if p))
    inputs, targets, value_range = _unify(inputs, targets, depths_a, depths_b)
    return SourceData(name="paired-folder", kind="image", samples=targets, labels=None,
                      ids=[names[i] for i in keep], value_range=value_range, origin=str(root),
                      inputs=inputs, problems=problems)


@register_dataset("aligned", kind=DataKind.PAIRED_IMAGES,
                  description="pix2pix's aligned format: A|B side by side in one image per sample")
def read_aligned(cfg: DataConfig) -> SourceData:
    root = _root(cfg, "a directory of side-by-side A|B images")
    relpaths = find_images(root)
    if not relpaths:
        raise DataError(f"aligned data set: no image files under {root}")
    keep = cap_indices(None, None, len(relpaths), cfg.max_samples, cfg.split_seed)
    inputs, targets, problems, depths = [], [], [], []
    for rel in (relpaths[i] for i in keep):
        pixels, problem = _read(root / rel, depths)
        if pixels is not None and pixels.shape[1] != 2 * pixels.shape[0]:
            pixels, problem = None, f"is {pixels.shape[1]}x{pixels.shape[0]} (W x H); aligned pairs are 2H wide"
        half = None if pixels is None else pixels.shape[1] // 2
        inputs.append(None if pixels is None else pixels[:, :half])
        targets.append(None if pixels is None else pixels[:, half:])
        problems.append(problem)
    inputs, targets, value_range = _unify(inputs, targets, depths, depths)
    return SourceData(name="aligned", kind="image", samples=targets, labels=None,
                      ids=[relpaths[i].as_posix() for i in keep], value_range=value_range,
                      origin=str(root), inputs=inputs, problems=problems)


def _images(array: np.ndarray, path: Path, key: str) -> list[np.ndarray]:
    layout = sample_layout(array.shape, path)
    if layout == "points":
        raise DataError(f"{path}: array {key!r} holds points {array.shape}; paired sets are images")
    return list(np.moveaxis(array, 1, -1)) if layout == "nchw" else list(array)


def npz_labelled(cfg: DataConfig) -> bool:
    """Whether the archive holds a ``labels`` array (its index only is read)."""
    try:
        with np.load(Path(cfg.root or ""), allow_pickle=False) as archive:
            return "labels" in archive.files
    except (OSError, ValueError):
        return False  # the reader reports the unreadable file


@register_dataset("npz-pairs", kind=DataKind.PAIRED_IMAGES, labelled=npz_labelled,
                  description="one .npz with image arrays a (inputs) and b (targets), optional labels")
def read_npz_pairs(cfg: DataConfig) -> SourceData:
    path = _root(cfg, "a .npz file with arrays a and b")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {k: np.asarray(archive[k]) for k in archive.files}
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read {path}: {e}") from e
    missing = [k for k in ("a", "b") if k not in arrays]
    if missing:
        raise DataError(f"{path} lacks array(s) {missing}; it needs 'a' (inputs) and 'b' (targets)")
    a, b = arrays["a"], arrays["b"]
    if len(a) != len(b):
        raise DataError(f"{path}: {len(a)} inputs but {len(b)} targets; arrays a and b must pair up")
    labels = arrays.get("labels")
    if labels is not None and (labels.shape != (len(b),) or labels.dtype.kind not in "iu"):
        raise DataError(f"{path}: labels must be {len(b)} integers, got {labels.dtype}{labels.shape}")
    keep = cap_indices(labels, None, len(b), cfg.max_samples, cfg.split_seed)
    lo_a, hi_a = declared_range(a, points=False)
    lo_b, hi_b = declared_range(b, points=False)
    return SourceData(name="npz-pairs", kind="image", samples=[_images(b, path, "b")[i] for i in keep],
                      labels=None if labels is None else labels[keep].astype(np.int64),
                      ids=[f"{path.name}[all:{i}]" for i in keep], value_range=(min(lo_a, lo_b), max(hi_a, hi_b)),
                      class_names=None if labels is None else [str(k) for k in range(int(labels.max()) + 1)],
                      origin=str(path), inputs=[_images(a, path, "a")[i] for i in keep], problems=[""] * len(keep))
