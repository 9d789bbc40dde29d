"""Two unpaired image domains A and B (``DataKind.UNPAIRED_IMAGES``), read from files.

* ``unpaired-folder``: junyanz/pytorch-CycleGAN-and-pix2pix's layout, ``trainA/``, ``trainB/`` and,
  when present, ``testA/``, ``testB/`` (their official split; otherwise a seeded split per domain).
* ``two-domains``: domain A at ``data.root`` and domain B at ``data.root_b``, each an image folder or
  a ``.npy`` array (read by the ``folder`` / ``npy`` readers, so every format they accept works).

The samples of both domains are one ``SourceData`` with a ``domain`` entry ("A"/"B") per sample, so
validation profiles them together and judges each domain (not empty, not degenerate).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind
from ganmodels.data.registry import register_dataset
from ganmodels.data.sources.folder import read_folder
from ganmodels.data.sources.npy import read_npy


def _merge(name: str, parts: list[tuple[str, str | None, SourceData]], origin: str) -> SourceData:
    """One two-domain source from (domain, split or None, source) parts."""
    ranges = {p.value_range for _, _, p in parts}
    if len(ranges) > 1:
        raise DataError(f"{name}: the domains declare different value ranges {sorted(ranges)}; convert them to one "
                        "bit depth / dtype")
    labelled = all(p.labels is not None for _, _, p in parts)
    names = [p.class_names for _, _, p in parts]
    if labelled and any(n != names[0] for n in names):
        labelled = False  # classes that differ between domains cannot be compared: treat as unlabelled
    samples, ids, domain, split, labels = [], [], [], [], []
    for d, part_split, part in parts:
        samples.extend(part.samples)
        ids.extend(f"{d}/{i}" for i in part.ids)
        domain.extend([d] * len(part))
        split.extend([part_split] * len(part))
        if labelled:
            labels.append(np.asarray(part.labels))
    return SourceData(name=name, kind="image", samples=samples, labels=np.concatenate(labels) if labelled else None,
                      ids=ids, value_range=ranges.pop(), class_names=names[0] if labelled else None, origin=origin,
                      split=None if None in split else split, domain=domain)


@register_dataset("unpaired-folder", kind=DataKind.UNPAIRED_IMAGES,
                  description="junyanz's CycleGAN layout: trainA/, trainB/ (and testA/, testB/)")
def read_unpaired_folder(cfg: DataConfig) -> SourceData:
    root = Path(cfg.root or "")
    if not ((root / "trainA").is_dir() and (root / "trainB").is_dir()):
        raise DataError(f"unpaired-folder data set: {root} needs sub-folders trainA/ and trainB/ (and optionally "
                        "testA/, testB/)")
    has_test = (root / "testA").is_dir() and (root / "testB").is_dir()
    parts = []
    for d in ("A", "B"):
        for split in (("train", "test") if has_test else ("train",)):
            folder = root / f"{split}{d}"
            part = read_folder(DataConfig(name="folder", root=str(folder), max_samples=cfg.max_samples,
                                          split_seed=cfg.split_seed))
            parts.append((d, split if has_test else None, part))
    return _merge("unpaired-folder", parts, str(root))


def _read_path(path: str, cfg: DataConfig) -> SourceData:
    kind = "npy" if path.lower().endswith(".npy") else "folder"
    reader = read_npy if kind == "npy" else read_folder
    source = reader(DataConfig(name=kind, root=path, max_samples=cfg.max_samples, split_seed=cfg.split_seed))
    if source.kind != "image":
        raise DataError(f"two-domains: {path} holds 2D points; both domains must be images")
    return source


@register_dataset("two-domains", kind=DataKind.UNPAIRED_IMAGES,
                  description="domain A at data.root and domain B at data.root_b (image folders or .npy arrays)")
def read_two_domains(cfg: DataConfig) -> SourceData:
    if not cfg.root or not cfg.root_b:
        raise DataError("two-domains data set: set data.root (domain A) and data.root_b (domain B), each an image "
                        "folder or a .npy array")
    return _merge("two-domains", [("A", None, _read_path(cfg.root, cfg)), ("B", None, _read_path(cfg.root_b, cfg))],
                  f"{cfg.root} | {cfg.root_b}")
