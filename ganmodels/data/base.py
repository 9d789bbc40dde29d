"""Typed data-set config, raw source records and the prepared (model-ready) data set.

Two stages on purpose: ``SourceData`` is what was read from disk or a bundled set, untouched,
so data validation can judge the source itself (shapes, ranges, NaNs, duplicates, labels);
``PreparedDataset`` is what training sees (resized, scaled to [-1, 1], split), identified by a
content hash that doubles as the data version and as the key for cached reference statistics.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
import numpy as np
import torch

from ganmodels.data.kinds import DataKind, Modality, kind_of
from ganmodels.io import atomic_torch_save


class DataError(ValueError):
    """Bad or missing data-set input. The message names the file or field and the fix."""


@dataclass(frozen=True)
class DataConfig:
    """Which data set to read and how to prepare it.

    name: a registered data-set name (``digits``, ``mnist``, ``fashion-mnist``, ``cifar10``,
      ``ring8``, ``grid25``), ``folder`` (an image folder at ``root``) or ``npy`` (an array at ``root``).
    resolution: side of the prepared (target) images; None keeps the source's own size, which all
      its images must share (the super-resolution sets: digits-sr's 8x8 are the real high resolution).
    task: derive paired (input, target) samples from a single-domain image set: ``"sr"`` (inputs
      are the targets area-downsampled by ``scale``) or ``"edges"`` (inputs are the targets' edge
      maps); ``""`` keeps the set as it is.
    """

    name: str = "digits"
    root: str | None = None
    resolution: int | None = 32
    channels: int | None = None  # None: the source's own channel count
    download: bool = False  # torchvision sets only; never implied
    test_fraction: float = 0.2
    split_seed: int = 0
    num_points: int = 20_000  # 2D mixtures: training points drawn
    max_samples: int | None = None  # cap on source samples (quick runs)
    root_b: str | None = None  # two-domains: the second domain's folder or .npy (data.root is the first)
    task: str = ""  # "" | "sr" | "edges"
    scale: int = 2  # task "sr": target size / input size

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class SourceData:
    """Raw samples as read from the source, before any resizing or scaling.

    samples: images as a list of arrays ``(H, W)`` or ``(H, W, C)`` in any dtype and size, or a
      ``(N, 2)`` float array for 2D points.
    labels: int64 ``(N,)`` class indices, or None when the source has no labels.
    ids: one human-readable identifier per sample (a file path, or ``name[index]``) so that
      validation failures can point at the offending rows.
    value_range: the range raw values are declared to lie in (e.g. (0, 16) for digits, (0, 255) for
      8-bit images), checked by validation and used to scale to [-1, 1].
    """

    name: str
    kind: Modality
    samples: list[np.ndarray] | np.ndarray
    labels: np.ndarray | None
    ids: list[str]
    value_range: tuple[float, float]
    class_names: list[str] | None = None
    origin: str = ""  # where it was read from, for messages
    # Per-sample "train"/"test" where the source has an official split (torchvision sets, the
    # 2D mixtures); None: ``prepare`` draws a seeded split from the config.
    split: list[str] | None = None
    # Paired sources: the input image A of each sample (``samples`` are the targets B), read from
    # files; an entry is None where the partner is missing or unreadable (validation reports it).
    inputs: list[np.ndarray | None] | None = None
    # Paired sources whose inputs are computed from the prepared targets: ("sr", scale) or ("edges", 1);
    # unpaired sources whose domain B is computed from its prepared images: ("dilate", size).
    derive: tuple[str, int] | None = None
    # Unpaired (two-domain) sources: "A" or "B" per sample; None for single-domain sources.
    domain: list[str] | None = None
    # Unpaired sources that know each sample's drawing in the other domain's style (rendered sets): one
    # image per sample, never itself a sample; the held-out ones become the truth of the translations.
    counterparts: list[np.ndarray] | None = None
    # What went wrong reading each sample ("" when nothing): paired readers record missing partners
    # and corrupt files here instead of raising, so that validation can name every bad pair.
    problems: list[str] | None = None

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def paired(self) -> bool:
        return self.domain is None and (self.inputs is not None or self.derive is not None)

    @property
    def data_kind(self) -> DataKind:
        if self.domain is not None:
            return DataKind.UNPAIRED_IMAGES
        if self.paired:
            return DataKind.PAIRED_IMAGES
        return kind_of(self.kind, labelled=self.labels is not None)


# Tensors only some kinds of data have (paired inputs; the second domain and the known truths of
# unpaired data), in a fixed order for the data hash.
OPTIONAL_TENSORS = ("a_train", "a_test", "b_train", "b_test", "yb_train", "yb_test", "truth_a2b_test",
                    "truth_b2a_test")


@dataclass
class PreparedDataset:
    """Model-ready tensors. Images: float32 ``(N, C, H, W)`` in [-1, 1]; points: float32 ``(N, 2)``."""

    name: str
    kind: Modality
    x_train: torch.Tensor
    x_test: torch.Tensor
    y_train: torch.Tensor | None = None  # int64 (N,)
    y_test: torch.Tensor | None = None
    class_names: list[str] | None = None
    config: dict = field(default_factory=dict)
    # Paired data: the inputs A of each sample, float32 (N, C, h, w) in [-1, 1]; x_* are the targets B.
    a_train: torch.Tensor | None = None
    a_test: torch.Tensor | None = None
    # Unpaired (two-domain) data: x_* are domain A, b_* domain B (no correspondence), yb_* B's labels.
    b_train: torch.Tensor | None = None
    b_test: torch.Tensor | None = None
    yb_train: torch.Tensor | None = None
    yb_test: torch.Tensor | None = None
    # Where the truth is known (embedded sets): the B-style version of each held-out A image, and the
    # A-style version of each held-out B image, for scoring translations that training never paired.
    truth_a2b_test: torch.Tensor | None = None
    truth_b2a_test: torch.Tensor | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names) if self.class_names else 0

    @property
    def data_kind(self) -> DataKind:
        if self.b_train is not None:
            return DataKind.UNPAIRED_IMAGES
        if self.a_train is not None:
            return DataKind.PAIRED_IMAGES
        return kind_of(self.kind, labelled=self.y_train is not None and self.num_classes > 0)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """Per-sample shape of the paired inputs A, or None for single-domain data."""
        return tuple(self.a_train.shape[1:]) if self.a_train is not None else None

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    @property
    def data_hash(self) -> str:
        """sha256 over the prepared tensors (dtype, shape, bytes) and class names: the data version."""
        h = hashlib.sha256()
        keys = ("x_train", "y_train", "x_test", "y_test") + tuple(k for k in OPTIONAL_TENSORS
                                                                  if getattr(self, k) is not None)
        for key in keys:  # single-domain hashes are unchanged by the paired and unpaired fields
            t = getattr(self, key)
            h.update(key.encode())
            if t is None:
                h.update(b"none")
                continue
            t = t.detach().cpu().contiguous()
            h.update(f"{t.dtype}:{tuple(t.shape)}".encode())
            h.update(t.numpy().tobytes())
        h.update(repr(self.class_names).encode())
        return h.hexdigest()

    def to_state(self) -> dict:
        return {
            "name": self.name,
            "kind": self.kind,
            "x_train": self.x_train,
            "x_test": self.x_test,
            "y_train": self.y_train,
            "y_test": self.y_test,
            "class_names": list(self.class_names) if self.class_names else None,
            "config": dict(self.config),
            **{key: getattr(self, key) for key in OPTIONAL_TENSORS},
        }

    def save(self, path: str | os.PathLike) -> str:
        """Write atomically (temp file + rename); loadable with ``torch.load(weights_only=True)``.

        Returns the data hash.
        """
        atomic_torch_save(self.to_state(), path)
        return self.data_hash

    @classmethod
    def load(cls, path: str | os.PathLike) -> "PreparedDataset":
        path = Path(path)
        if not path.is_file():
            raise DataError(f"prepared data set not found: {path}. Run the prepare stage first.")
        state = torch.load(path, map_location="cpu", weights_only=True)
        return cls(**state)
