"""``SourceData`` -> ``PreparedDataset``: split, resize, scale; bit-for-bit reproducible."""

from __future__ import annotations

import numpy as np
import torch

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


def split_indices(source: SourceData, cfg: DataConfig) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: the source's official split, else a seeded stratified one."""
    if source.split is None:
        return train_test_split(source.labels, len(source), cfg.test_fraction, cfg.split_seed)
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


def prepare(source: SourceData, cfg: DataConfig) -> PreparedDataset:
    """Split ``source`` and make it model-ready; the same inputs give bit-identical tensors.

    Images become float32 ``(N, C, R, R)`` in [-1, 1] (``value_range`` mapped linearly, centre
    square cropped, bilinear resize antialiased when downscaling, C = ``cfg.channels`` or 3 when any
    sample is colour, else 1); points stay float32 ``(N, 2)``. Train and test keep source order.
    """
    validate_preparation(cfg)
    check_source(source)
    train, test = split_indices(source, cfg)
    channels = cfg.channels or (default_channels(source.samples) if source.kind == "image" else 0)
    labels = None if source.labels is None else torch.from_numpy(np.asarray(source.labels, dtype=np.int64))
    return PreparedDataset(
        name=source.name,
        kind=source.kind,
        x_train=prepare_rows(source, train, channels, cfg.resolution),
        x_test=prepare_rows(source, test, channels, cfg.resolution),
        y_train=None if labels is None else labels[torch.from_numpy(train)],
        y_test=None if labels is None else labels[torch.from_numpy(test)],
        class_names=list(source.class_names) if source.class_names else None,
        config=cfg.to_dict(),
    )
