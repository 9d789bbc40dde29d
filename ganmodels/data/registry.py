"""Explicit data-set registry: ``@register_dataset(name, kind=...)`` a reader ``DataConfig -> SourceData``.

No discovery by file name: a data set exists when its module registers it, and
``ganmodels.data.sources`` imports every built-in reader module by name.

Each data set declares its ``DataKind``: a fixed kind (``digits`` are labelled images), or, for
readers whose kind depends on the path (an image folder with or without class sub-folders, an
array of images or of points), a function ``DataConfig -> DataKind`` that looks at the path
without reading the samples. ``dataset_kind(cfg)`` answers before anything is loaded, so a
model/data mismatch is refused before work starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind

Reader = Callable[[DataConfig], SourceData]
KindProbe = Callable[[DataConfig], DataKind]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    reader: Reader
    kind: DataKind | KindProbe
    description: str = ""
    # Whether samples carry class labels, for kinds that do not say it themselves (paired images):
    # a bool, a function of the DataConfig, or None (labelled exactly when the kind is labelled-images).
    labelled: bool | Callable[[DataConfig], bool] | None = None
    # Whether the set knows the true result of a translation (embedded unpaired sets built for it).
    truth: bool = False

    def kind_for(self, cfg: DataConfig) -> DataKind:
        return self.kind if isinstance(self.kind, DataKind) else self.kind(cfg)

    def labelled_for(self, cfg: DataConfig) -> bool:
        if self.labelled is None:
            return self.kind_for(cfg) is DataKind.LABELLED_IMAGES
        return self.labelled if isinstance(self.labelled, bool) else bool(self.labelled(cfg))


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, kind: DataKind | KindProbe, description: str = "",
                     labelled: bool | Callable[[DataConfig], bool] | None = None,
                     truth: bool = False) -> Callable[[Reader], Reader]:
    """Decorator registering ``reader(cfg) -> SourceData`` under ``name``; duplicates are refused."""

    def decorator(reader: Reader) -> Reader:
        if name in _DATASETS:
            raise ValueError(f"data set {name!r} is already registered (by {_DATASETS[name].reader.__module__})")
        if not (isinstance(kind, DataKind) or callable(kind)):
            raise TypeError(f"data set {name!r}: kind must be a DataKind or a function of the DataConfig")
        _DATASETS[name] = DatasetSpec(name, reader, kind, description, labelled, truth)
        return reader

    return decorator


def _ensure_builtin_datasets() -> None:
    import ganmodels.data.sources  # noqa: F401  (registers the built-in readers)


def list_datasets() -> list[str]:
    _ensure_builtin_datasets()
    return sorted(_DATASETS)


def get_dataset(name: str) -> DatasetSpec:
    _ensure_builtin_datasets()
    try:
        return _DATASETS[name]
    except KeyError:
        raise DataError(
            f"unknown data set name {name!r}; registered data sets: {', '.join(sorted(_DATASETS))}"
        ) from None


def dataset_kind(cfg: DataConfig) -> DataKind:
    """The declared kind of the data set ``cfg`` names, without reading its samples.

    A ``task`` ("sr", "edges") turns a single-domain image set into paired images.
    """
    kind = get_dataset(cfg.name).kind_for(cfg)
    if cfg.task:
        if kind.modality != "image" or kind is DataKind.PAIRED_IMAGES:
            raise DataError(f"data.task={cfg.task!r} derives pairs from a single-domain image set; data set "
                            f"{cfg.name!r} holds {kind.value}")
        return DataKind.PAIRED_IMAGES
    return kind


def dataset_labelled(cfg: DataConfig) -> bool:
    """Whether the data set ``cfg`` names carries class labels (a derived task keeps its source's labels)."""
    return get_dataset(cfg.name).labelled_for(cfg)


def dataset_has_truth(cfg: DataConfig) -> bool:
    """Whether the data set ``cfg`` names knows the true translation of its held-out images."""
    return get_dataset(cfg.name).truth
