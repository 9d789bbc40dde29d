"""Checking a ``DataConfig`` and building one from a command-line string."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from ganmodels.data.base import DataConfig, DataError
from ganmodels.data.registry import get_dataset, list_datasets

# Below 4 pixels nothing is left of an image; above 1024 the in-memory tensors of a data set
# stop fitting (the whole prepared set is held as one float32 tensor).
MIN_RESOLUTION = 4
MAX_RESOLUTION = 1024

PATH_FORMS = ("a directory of images (-> 'folder'; with A/ and B/ sub-folders -> 'paired-folder'; with trainA/ and "
              "trainB/ -> 'unpaired-folder'), a file ending in .npy (-> 'npy') or .npz with arrays a and b "
              "(-> 'npz-pairs')")
TASKS = {"": "none", "sr": "super-resolution", "edges": "edges to image"}
# Data sets read from a path, and what the path must be.
ROOTED = {"folder": "a directory of images", "npy": "a .npy file", "paired-folder": "a directory with A/ and B/",
          "aligned": "a directory of side-by-side A|B images", "npz-pairs": "a .npz file with arrays a and b",
          "unpaired-folder": "a directory with trainA/ and trainB/", "two-domains": "domain A's folder or .npy "
          "(and data.root_b: domain B's)"}


def is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def validate_config(cfg: DataConfig) -> DataConfig:
    """Raise ``DataError`` naming the first bad field and its fix; return ``cfg`` unchanged."""
    get_dataset(cfg.name)  # unknown names raise, listing the registered ones
    if cfg.name in ROOTED and not cfg.root:
        raise DataError(f"data set {cfg.name!r} needs data.root: the path of {ROOTED[cfg.name]}")
    return validate_preparation(cfg)


def validate_preparation(cfg: DataConfig) -> DataConfig:
    """The checks of ``validate_config`` on the fields that ``prepare`` uses."""
    if cfg.resolution is not None and (not is_int(cfg.resolution)
                                       or not MIN_RESOLUTION <= cfg.resolution <= MAX_RESOLUTION):
        raise DataError(
            f"data.resolution={cfg.resolution!r} is out of range; use an integer in "
            f"[{MIN_RESOLUTION}, {MAX_RESOLUTION}], e.g. 32, or null for the source's own size"
        )
    if cfg.task not in TASKS:
        raise DataError(f"data.task={cfg.task!r} is unknown; use one of {sorted(TASKS)} "
                        "('sr': super-resolution pairs, 'edges': edge map -> image pairs, '': none)")
    if not is_int(cfg.scale) or cfg.scale < 2:
        raise DataError(f"data.scale={cfg.scale!r} must be an integer >= 2 (target size / input size)")
    if cfg.task == "sr" and cfg.resolution is not None and cfg.resolution % cfg.scale:
        raise DataError(f"data.resolution={cfg.resolution} is not divisible by data.scale={cfg.scale}; "
                        "super-resolution inputs are the targets downsampled by the scale")
    if cfg.channels is not None and not (is_int(cfg.channels) and cfg.channels in (1, 3)):
        raise DataError(f"data.channels={cfg.channels!r} is invalid; use 1 (grey), 3 (RGB) or None (the source's own)")
    fraction = cfg.test_fraction
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float, np.number)) or not 0.0 < fraction < 1.0:
        raise DataError(f"data.test_fraction={cfg.test_fraction!r} must lie strictly between 0 and 1, e.g. 0.2")
    if not is_int(cfg.split_seed) or cfg.split_seed < 0:
        raise DataError(f"data.split_seed={cfg.split_seed!r} must be a non-negative integer")
    if not is_int(cfg.num_points) or cfg.num_points < 4:
        raise DataError(f"data.num_points={cfg.num_points!r} must be an integer >= 4 (training points of a 2D mixture)")
    if cfg.max_samples is not None and (not is_int(cfg.max_samples) or cfg.max_samples < 2):
        raise DataError(
            f"data.max_samples={cfg.max_samples!r} must be None (no cap) or an integer >= 2 (one train, one test sample)"
        )
    return cfg


def source_for(spec: str) -> dict | None:
    """``{"name": ..., "root": ...}`` for a registered name or an accepted path; None otherwise."""
    if spec in list_datasets():
        return {"name": spec}
    path = Path(spec)
    if spec.lower().endswith(".npy"):
        return {"name": "npy", "root": spec}
    if spec.lower().endswith(".npz"):
        return {"name": "npz-pairs", "root": spec}
    if path.is_dir():
        if (path / "trainA").is_dir() and (path / "trainB").is_dir():
            return {"name": "unpaired-folder", "root": spec}
        return {"name": "paired-folder" if (path / "A").is_dir() and (path / "B").is_dir() else "folder", "root": spec}
    return None


def resolve_data_config(spec: str, **overrides: Any) -> DataConfig:
    """A validated ``DataConfig`` from a CLI string plus field overrides.

    ``spec`` is a registered data-set name, a directory (read as ``folder``), or a path ending in
    ``.npy`` (read as ``npy``; its existence is checked when it is read). Anything else raises
    ``DataError`` listing the registered names and the accepted path forms.
    """
    valid = {f.name for f in dataclasses.fields(DataConfig)}
    unknown = sorted(set(overrides) - valid)
    if unknown:
        raise DataError(f"unknown data config field(s) {unknown}; valid fields: {sorted(valid)}")
    if "name" in overrides:
        raise DataError("give the data set as the spec string, not as a 'name' override")

    names = list_datasets()
    source = source_for(spec)
    if source is not None:
        values = source
    else:
        raise DataError(
            f"data set {spec!r} is neither a registered name nor an accepted path. "
            f"Registered names: {', '.join(names)}. Paths: {PATH_FORMS}."
        )
    if "root" in overrides and values.get("root"):
        raise DataError(f"{spec!r} is a path already; drop the 'root' override")
    values.update(overrides)
    return validate_config(DataConfig(**values))
