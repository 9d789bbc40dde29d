"""What kind of data a data set holds, and which kinds a model accepts: the one ``DataKind`` definition.

A data set declares its kind when it is registered (or, for folders and arrays, by a cheap look
at the path before anything is read); a model declares the kinds it trains on. The pipeline
compares the two before any work starts, so a mismatch is a clear configuration error, not a
shape error deep inside training.

``Modality`` is the coarser sample layout that readers and ``prepare`` deal in: ``"image"``
samples ``(C, H, W)`` or ``"points"`` ``(2,)``. A kind adds what a model needs beyond the layout
(labels; pairs or two domains for the translation families).
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable, Literal

Modality = Literal["image", "points"]


class DataKind(str, Enum):
    IMAGES = "images"  # unlabelled images
    LABELLED_IMAGES = "labelled-images"  # images with a class label each
    POINTS = "points"  # 2D points
    PAIRED_IMAGES = "paired-images"  # (input A, target B) of the same sample
    UNPAIRED_IMAGES = "unpaired-images"  # two domains A and B, no correspondence

    def __str__(self) -> str:
        return self.value

    @property
    def modality(self) -> Modality:
        return "points" if self is DataKind.POINTS else "image"

    @property
    def parent(self) -> "DataKind | None":
        """Labelled images are images too: a model for images trains on them (ignoring the labels)."""
        return DataKind.IMAGES if self is DataKind.LABELLED_IMAGES else None

    def lineage(self) -> tuple["DataKind", ...]:
        """This kind and the kinds it also counts as, most general first: (images, labelled-images)."""
        return (self,) if self.parent is None else (*self.parent.lineage(), self)

    def satisfies(self, accepted: Iterable["DataKind"]) -> bool:
        return any(kind in set(accepted) for kind in self.lineage())

    @classmethod
    def parse(cls, value: "str | DataKind") -> "DataKind":
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"unknown data kind {value!r}; kinds: {', '.join(k.value for k in cls)}") from None


def kind_of(modality: Modality, labelled: bool) -> DataKind:
    """The kind of a single-domain data set from its layout and whether it carries labels."""
    if modality == "points":
        return DataKind.POINTS
    return DataKind.LABELLED_IMAGES if labelled else DataKind.IMAGES


def describe(kinds: Iterable[DataKind]) -> str:
    return " or ".join(k.value for k in kinds)
