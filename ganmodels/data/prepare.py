"""``SourceData`` -> ``PreparedDataset``: split, resize, scale; bit-for-bit reproducible.

Paired data (``DataKind.PAIRED_IMAGES``): the samples are the targets B; the inputs A are either
read from files (``source.inputs``, resized to the target size divided by the pair's scale) or
derived from the prepared targets: super-resolution inputs are the targets area-downsampled by
the scale (the mean of each s x s block, as in the SR literature's "bicubic-free" degradation),
edge inputs a fixed morphological gradient of the targets.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from ganmodels.data.base import DataConfig, DataError, PreparedDataset, SourceData
from ganmodels.data.config import validate_preparation
from ganmodels.data.imaging import default_channels, prepare_images
from ganmodels.data.splits import train_test_split


def check_source(source: SourceData) -> None:
    """Per-sample fields must line up, or labels would silently attach to the wrong samples."""
    n = len(source.ids)
    lengths = {"samples": len(source.samples)}
    if source.labels is not None:
        lengths["labels"] = len(source.labels)
    if source.split is not None:
        lengths["split"] = len(source.split)
    wrong = {k: v for k, v in lengths.items() if v != n}
    if wrong:
        raise DataError(f"source {source.name!r}: {n} ids but lengths {wrong}; each field needs one entry per sample")
    if source.kind not in ("image", "points"):
        raise DataError(f"source {source.name!r} has kind {source.kind!r}; expected 'image' or 'points'")
    if source.inputs is not None and len(source.inputs) != n:
        raise DataError(f"source {source.name!r}: {n} targets but {len(source.inputs)} inputs; pairs must line up")
    if source.counterparts is not None and (source.domain is None or source.derive is not None
                                            or len(source.counterparts) != n):
        raise DataError(f"source {source.name!r}: counterparts need two domains, no derivation and one per sample "
                        f"({n} samples, {len(source.counterparts)} counterparts)")
    bad = [(i, p) for i, p in enumerate(source.problems or []) if p]
    if bad:  # validation reports these first; prepare must never silently drop a pair
        shown = "; ".join(f"{source.ids[i]}: {p}" for i, p in bad[:5])
        raise DataError(f"source {source.name!r} has {len(bad)} unusable sample(s): {shown}")


def split_indices(source: SourceData, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: the source's official split, else a seeded one stratified by label (and,
    for two-domain sources, by domain, so that each domain keeps its share of test samples)."""
    if source.split is None:
        strata = source.labels
        if source.domain is not None:
            domain = (np.asarray(source.domain) == "B").astype(np.int64)
            labels = np.zeros(len(source), np.int64) if source.labels is None else np.asarray(source.labels)
            strata = domain * (int(labels.max()) + 1) + labels
        return train_test_split(strata, len(source), cfg.test_fraction, cfg.split_seed)
    split = np.asarray(source.split)
    unknown = sorted(set(split.tolist()) - {"train", "test"})
    if unknown:
        raise DataError(f"source {source.name!r} has split names {unknown}; use 'train' and 'test'")
    train, test = np.flatnonzero(split == "train"), np.flatnonzero(split == "test")
    if len(train) == 0 or len(test) == 0:
        raise DataError(f"source {source.name!r} has {len(train)} train and {len(test)} test samples; need both")
    return train, test


def prepare_points(source: SourceData, rows: np.ndarray) -> torch.Tensor:
    """float32 ``(n, 2)`` at their true coordinates (not rescaled: see sources/mixtures.py)."""
    x = np.asarray(source.samples, dtype=np.float64)[rows]
    if x.ndim != 2 or x.shape[1] != 2:
        raise DataError(f"points source {source.name!r} has shape {x.shape}; expected (N, 2)")
    bad = ~np.isfinite(x).all(axis=1)
    if bad.any():
        names = [source.ids[rows[i]] for i in np.flatnonzero(bad)[:5]]
        raise DataError(f"{int(bad.sum())} point(s) are NaN or infinite, e.g. {names}")
    return torch.from_numpy(x.astype(np.float32))


def prepare_rows(source: SourceData, rows: np.ndarray, channels: int, resolution: int) -> torch.Tensor:
    if source.kind == "points":
        return prepare_points(source, rows)
    samples = [np.asarray(source.samples[i]) for i in rows]
    return prepare_images(samples, [source.ids[i] for i in rows], source.value_range, resolution, channels)


def native_resolution(source: SourceData) -> int:
    """The side of the source's images when they are all the same square size (``resolution: null``)."""
    sizes = {tuple(np.asarray(s).shape[:2]) for s in source.samples}
    if len(sizes) != 1 or len(next(iter(sizes))) != 2 or len(set(next(iter(sizes)))) != 1:
        raise DataError(f"data.resolution=null keeps the source's own size, but {source.name!r} has images of "
                        f"sizes {sorted(sizes)[:4]}; set data.resolution to one size, e.g. 32")
    return int(next(iter(sizes))[0])


def derive_inputs(targets: torch.Tensor, task: str, scale: int) -> torch.Tensor:
    """Inputs A computed from prepared targets B ``(N, C, H, W)`` in [-1, 1]."""
    if task == "sr":
        if targets.shape[-1] % scale:
            raise DataError(f"super-resolution by {scale} needs a target size divisible by it; "
                            f"got {targets.shape[-1]}")
        return F.avg_pool2d(targets, scale)  # (N, C, H/s, W/s): the block means, i.e. area downsampling
    if task == "edges":
        # Morphological gradient (3x3 max - 3x3 min): strokes become their outlines, in [0, 2] -> [-1, 1].
        grad = F.max_pool2d(targets, 3, 1, 1) + F.max_pool2d(-targets, 3, 1, 1)
        return (grad - 1.0).clamp(-1.0, 1.0)
    raise DataError(f"unknown pairing task {task!r}")


def prepare(source: SourceData, cfg: DataConfig) -> PreparedDataset:
    """Split ``source`` and make it model-ready; the same inputs give bit-identical tensors.

    Images become float32 ``(N, C, R, R)`` in [-1, 1] (``value_range`` mapped linearly, centre
    square cropped, bilinear resize antialiased when downscaling, C = ``cfg.channels`` or 3 when any
    sample is colour, else 1; R = ``cfg.resolution``, or the source's own size when it is None);
    points stay float32 ``(N, 2)``. Train and test keep source order. Paired data also gets its
    inputs ``a_train``/``a_test`` (see the module docstring).
    """
    validate_preparation(cfg)
    check_source(source)
    if cfg.task and (source.paired or source.domain is not None):
        raise DataError(f"data.task={cfg.task!r}: data set {source.name!r} is paired already")
    train, test = split_indices(source, cfg)
    image = source.kind == "image"
    channels = cfg.channels or (default_channels(source.samples) if image else 0)
    resolution = cfg.resolution if (cfg.resolution is not None or not image) else native_resolution(source)
    labels = None if source.labels is None else torch.from_numpy(np.asarray(source.labels, dtype=np.int64))
    if source.domain is not None:
        return _two_domains(source, cfg, train, test, channels, resolution, labels)
    data = PreparedDataset(
        name=source.name,
        kind=source.kind,
        x_train=prepare_rows(source, train, channels, resolution),
        x_test=prepare_rows(source, test, channels, resolution),
        y_train=None if labels is None else labels[torch.from_numpy(train)],
        y_test=None if labels is None else labels[torch.from_numpy(test)],
        class_names=list(source.class_names) if source.class_names else None,
        config=cfg.to_dict(),
    )
    derive = source.derive or ((cfg.task, cfg.scale) if cfg.task else None)
    if derive is not None:
        data.a_train, data.a_test = (derive_inputs(x, *derive) for x in (data.x_train, data.x_test))
    elif source.inputs is not None:
        scale = source_scale(source)
        if resolution % scale:
            raise DataError(f"paired set {source.name!r}: targets {scale}x the inputs' size need a resolution "
                            f"divisible by {scale}; got {resolution}")
        inputs = SourceData(source.name, "image", source.inputs, None, source.ids, source.value_range)
        data.a_train, data.a_test = (prepare_rows(inputs, rows, channels, resolution // scale) for rows in (train, test))
    return data


def _two_domains(source: SourceData, cfg: DataConfig, train: np.ndarray, test: np.ndarray, channels: int,
                 resolution: int, labels: torch.Tensor | None) -> PreparedDataset:
    """Unpaired data: x_* hold domain A, b_* domain B, each split train/test."""
    domain = np.asarray(source.domain)
    rows = {(d, part): idx[domain[idx] == d] for d in ("A", "B") for part, idx in (("train", train), ("test", test))}
    empty = [f"{d}/{part}" for (d, part), idx in rows.items() if len(idx) == 0]
    if empty:
        raise DataError(f"two-domain set {source.name!r} has no samples in {empty}; each domain needs train and test")
    images = {key: prepare_rows(source, idx, channels, resolution) for key, idx in rows.items()}
    pick = lambda key: None if labels is None else labels[torch.from_numpy(rows[key])]  # noqa: E731
    data = PreparedDataset(source.name, source.kind, images[("A", "train")], images[("A", "test")],
                           pick(("A", "train")), pick(("A", "test")),
                           list(source.class_names) if source.class_names else None, cfg.to_dict())
    data.b_train, data.b_test = images[("B", "train")], images[("B", "test")]
    data.yb_train, data.yb_test = pick(("B", "train")), pick(("B", "test"))
    if source.derive is not None:
        kind, size = source.derive
        if kind != "dilate":
            raise DataError(f"two-domain set {source.name!r}: unknown derivation {kind!r}")
        # Domain B is its images' grey-level dilation (a size x size maximum filter, stride 1): so the
        # B-style truth of every held-out A image is known, and so is the A-style original of every B one.
        dilate = lambda x: F.max_pool2d(x, size, 1, size // 2)  # noqa: E731
        data.truth_b2a_test = data.b_test
        data.b_train, data.b_test = dilate(data.b_train), dilate(data.b_test)
        data.truth_a2b_test = dilate(data.x_test)
    elif source.counterparts is not None:
        # Each held-out sample's drawing in the other domain's style, prepared like the samples.
        drawn = SourceData(source.name, "image", source.counterparts, None, source.ids, source.value_range)
        data.truth_a2b_test = prepare_rows(drawn, rows[("A", "test")], channels, resolution)
        data.truth_b2a_test = prepare_rows(drawn, rows[("B", "test")], channels, resolution)
    return data


def source_scale(source: SourceData) -> int:
    """Target size / input size of a paired source read from files (1 for same-size translation)."""
    ratios = {round(np.asarray(b).shape[0] / np.asarray(a).shape[0]) for a, b in zip(source.inputs, source.samples)}
    if len(ratios) != 1 or min(ratios) < 1:
        raise DataError(f"paired set {source.name!r} mixes input/target size ratios {sorted(ratios)}; "
                        "every pair must have the same scale")
    return int(ratios.pop())
