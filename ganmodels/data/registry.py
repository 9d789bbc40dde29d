"""Explicit data-set registry: ``@register_dataset(name)`` a reader ``DataConfig -> SourceData``.

No discovery by file name: a data set exists when its module registers it, and
``ganmodels.data.sources`` imports every built-in reader module by name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ganmodels.data.base import DataConfig, DataError, SourceData

Reader = Callable[[DataConfig], SourceData]


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    reader: Reader
    description: str = ""


_DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(name: str, *, description: str = "") -> Callable[[Reader], Reader]:
    """Decorator registering ``reader(cfg) -> SourceData`` under ``name``; duplicates are refused."""

    def decorator(reader: Reader) -> Reader:
        if name in _DATASETS:
            raise ValueError(f"data set {name!r} is already registered (by {_DATASETS[name].reader.__module__})")
        _DATASETS[name] = DatasetSpec(name, reader, description)
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
