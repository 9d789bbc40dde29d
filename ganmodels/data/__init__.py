"""Data sets: a registry of readers, the raw ``SourceData`` stage and the model-ready ``PreparedDataset``.

    cfg = resolve_data_config("digits", resolution=32)
    source = read_source(cfg)        # raw records, for validation
    data = prepare(source, cfg)      # tensors in [-1, 1], split, with a content hash
    data = load_dataset(cfg)         # both in one call

Nothing here downloads unless a config says ``download=True``.
"""

from __future__ import annotations

from ganmodels.data.base import DataConfig, DataError, PreparedDataset, SourceData, atomic_torch_save
from ganmodels.data.config import resolve_data_config, validate_config
from ganmodels.data.prepare import prepare
from ganmodels.data.kinds import DataKind, Modality
from ganmodels.data.registry import (dataset_has_truth, dataset_kind, dataset_labelled, get_dataset, list_datasets,
                                     register_dataset)
from ganmodels.data.sources.mixtures import mixture_spec


def read_source(cfg: DataConfig) -> SourceData:
    """The raw samples of the data set ``cfg`` names: native sizes, dtypes and ranges, one id each."""
    validate_config(cfg)
    return get_dataset(cfg.name).reader(cfg)


def load_dataset(cfg: DataConfig) -> PreparedDataset:
    """``prepare(read_source(cfg), cfg)``."""
    return prepare(read_source(cfg), cfg)


__all__ = [
    "DataConfig",
    "DataError",
    "DataKind",
    "Modality",
    "PreparedDataset",
    "SourceData",
    "atomic_torch_save",
    "dataset_has_truth",
    "dataset_kind",
    "dataset_labelled",
    "get_dataset",
    "list_datasets",
    "load_dataset",
    "mixture_spec",
    "prepare",
    "read_source",
    "register_dataset",
    "resolve_data_config",
    "validate_config",
]
