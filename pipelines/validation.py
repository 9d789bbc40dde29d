"""Data validation of raw ``SourceData`` with Great Expectations, before anything is prepared.

Two steps on purpose. ``sample_statistics`` turns the source into a plain per-sample table (shape,
dtype, value statistics, NaN/inf counts, label validity, content hash) with numpy alone, so it is
fast and testable without GX. ``validate`` then judges that table with an expectation suite built in
code for the data-set kind, and a second small suite on the per-class count table, and writes
the table, GX Data Docs and a JSON summary into one output directory.

GX is imported lazily, inside the functions that need it: importing this module has no side
effects and costs nothing. The GX context is ephemeral (in-memory stores) and its only file output
is a filesystem Data Docs site under ``out_dir``, so no ``gx/`` folder appears in the cwd.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
import urllib.parse
import urllib.request
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ganmodels.data.base import DataError, SourceData

if TYPE_CHECKING:  # pragma: no cover - typing only
    import great_expectations as gx_type

STATS_FILE = "sample_stats.csv"
CLASS_COUNTS_FILE = "class_counts.csv"
SUMMARY_FILE = "validation_summary.json"
DOCS_DIR = "data_docs"

# Elements per chunk when stacking equally shaped images into float64: 2**24 * 8 bytes = 128 MiB,
# so CIFAR-size sets (50k x 3072) never materialise as one 1.2 GB array.
_CHUNK_ELEMENTS = 1 << 24

_TELEMETRY_OFF = {"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1"}


# --------------------------------------------------------------------------------------------
# Configuration and report types
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationConfig:
    """Thresholds for the expectation suites; the pipeline reads them from ``params.yaml``.

    Checks without a threshold here are strict (every row must pass): NaN and inf counts, the
    declared value range, the channel set, the minimum image size and label validity. A single bad
    sample of those kinds points at a broken reader or a corrupt file, not at noise.

    min_samples: the table must have at least this many rows (images or points).
    min_image_size: smallest height and width accepted, in pixels.
    allowed_channels: channel counts accepted; (H, W) arrays count as 1 channel.
    max_blank_share: share of constant images (std == 0) tolerated, as GX ``mostly = 1 - share``.
      A few empty scans are harmless; many mean a reader that fills with zeros.
    max_duplicate_share: share of byte-identical repeats tolerated (the first copy is not counted).
    min_class_ratio: smallest class count / largest class count, over classes that are present.
      Every class must also be present (count >= 1); that is a separate expectation.
    points_abs_bound: 2D points must satisfy |x|, |y| <= this bound.
    example_ids: how many offending sample ids each failure names.
    """

    min_samples: int = 100
    min_image_size: int = 8
    allowed_channels: tuple[int, ...] = (1, 3)
    max_blank_share: float = 0.01
    max_duplicate_share: float = 0.01
    min_class_ratio: float = 0.2
    points_abs_bound: float = 1e3
    example_ids: int = 5

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_channels", tuple(int(c) for c in self.allowed_channels))
        for name in ("max_blank_share", "max_duplicate_share", "min_class_ratio"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"ValidationConfig.{name} must lie in [0, 1], got {value!r}")
        for name in ("min_samples", "min_image_size", "example_ids"):
            if getattr(self, name) < 0:
                raise ValueError(f"ValidationConfig.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.points_abs_bound <= 0:
            raise ValueError(f"ValidationConfig.points_abs_bound must be > 0, got {self.points_abs_bound!r}")
        if not self.allowed_channels:
            raise ValueError("ValidationConfig.allowed_channels must not be empty")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> "ValidationConfig":
        """Build from a ``params.yaml`` section; unknown keys are an error, not silently ignored."""
        values = dict(values or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown validation setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["allowed_channels"] = list(self.allowed_channels)
        return d


@dataclass
class ValidationReport:
    """Outcome of one validation run.

    failures: one dict per failed expectation with keys ``expectation`` (GX type, e.g.
      ``expect_column_values_to_be_between``), ``check`` (our short name), ``table``
      (``samples`` or ``classes``), ``column``, ``description``, ``observed_value``,
      ``unexpected_count``, ``unexpected_percent``, ``example_ids``, ``example_values`` and
      ``exception`` (GX's message when the expectation itself errored, else None).
    seconds: wall time per phase (statistics, gx_import, gx_setup, gx_validate, gx_docs).
    """

    success: bool
    dataset: str
    kind: str
    n_samples: int
    n_expectations: int
    failures: list[dict] = field(default_factory=list)
    stats_path: str = ""
    docs_path: str = ""
    summary_path: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return _jsonable(asdict(self))

    def format(self) -> str:
        """Human-readable outcome: each failing expectation, example offending ids, and where to look."""
        head = f"'{self.dataset}' ({self.kind}, {self.n_samples} samples)"
        if self.success:
            lines = [f"Data validation passed for {head}: all {self.n_expectations} expectations met."]
        else:
            lines = [
                f"Data validation FAILED for {head}: {len(self.failures)} of "
                f"{self.n_expectations} expectations failed."
            ]
            lines += [_format_failure(f) for f in self.failures]
        lines.append(f"Data Docs: {self.docs_path}")
        lines.append(f"Per-sample statistics: {self.stats_path}")
        return "\n".join(lines)


class DataValidationError(Exception):
    """The source data failed validation. ``report`` holds the details; the message says what and where."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report
        super().__init__(report.format())


def _format_failure(failure: dict) -> str:
    column = f"(column={failure['column']!r})" if failure.get("column") else "(table)"
    text = f"  - {failure['expectation']}{column} [{failure['check']}]"
    if failure.get("unexpected_count") is not None:
        share = failure.get("unexpected_percent") or 0.0
        text += f": {failure['unexpected_count']} unexpected rows ({share:.2f}%)"
    elif failure.get("observed_value") is not None:
        text += f": observed {failure['observed_value']!r}"
    if failure.get("example_ids"):
        examples = ", ".join(
            f"{i} ({failure['column']}={v!r})" if failure.get("column") else str(i)
            for i, v in zip(failure["example_ids"], failure["example_values"], strict=True)
        )
        text += f"; e.g. {examples}"
    if failure.get("description"):
        text += f"\n      why: {failure['description']}"
    return text


# --------------------------------------------------------------------------------------------
# Per-sample statistics (numpy only)
# --------------------------------------------------------------------------------------------


def sample_statistics(source: SourceData) -> pd.DataFrame:
    """One row per sample; columns depend on ``source.kind``.

    images: id, ndim, height, width, channels, dtype, min, max, mean, std, nan_count, inf_count,
      label (nullable Int64), label_valid (nullable boolean, NA when unlabelled), hash, duplicate.
      min/max/mean/std are taken over the finite values only, so a NaN or inf shows up in its own
      count column and not again as an out-of-range value; std is the population std (ddof=0),
      exactly 0 for constant images (min == max).
      hash is sha1 over the shape and the raw bytes; duplicate is True for every repeat of a hash
      seen earlier in the source (the first copy is not a duplicate).
    points: id, x, y, finite, label, label_valid.
    """
    n = len(source.ids)
    if source.kind == "image":
        table = _image_statistics(source.samples, source.ids)
    elif source.kind == "points":
        table = _point_statistics(source.samples, source.ids)
    else:
        raise DataError(f"{source.name}: unknown data kind {source.kind!r}; expected 'image' or 'points'")
    label, valid = _label_columns(source, n)
    table["label"] = label
    table["label_valid"] = valid
    if source.kind == "image":  # keep hash/duplicate last, as documented
        table = table[[c for c in table.columns if c not in ("hash", "duplicate")] + ["hash", "duplicate"]]
    return table


def _image_statistics(samples: list[np.ndarray] | np.ndarray, ids: list[str]) -> pd.DataFrame:
    n = len(ids)
    if len(samples) != n:
        raise DataError(f"{len(samples)} image samples but {n} ids; a reader must give one id per sample")
    arrays = [np.asarray(s) for s in samples]
    dtype_names = {dt: str(dt) for dt in {a.dtype for a in arrays}}  # str(dtype) is slow; 60k calls add up
    bad = [name for dt, name in dtype_names.items() if dt.kind not in "biuf"]
    if bad:
        first = next(ids[i] for i, a in enumerate(arrays) if a.dtype.kind not in "biuf")
        raise DataError(f"image dtype(s) {bad} are not numeric, e.g. {first}")
    shapes = [a.shape for a in arrays]
    ndim = np.array([len(s) for s in shapes], dtype=np.int64)
    height = np.array([s[0] if len(s) >= 1 else 1 for s in shapes], dtype=np.int64)
    width = np.array([s[1] if len(s) >= 2 else 1 for s in shapes], dtype=np.int64)
    channels = np.array([s[2] if len(s) == 3 else (1 if len(s) == 2 else -1) for s in shapes], dtype=np.int64)
    values = _value_statistics(arrays, shapes)
    hashes = [_content_hash(a) for a in arrays]
    table = pd.DataFrame(
        {
            "id": pd.array(list(ids), dtype=object),
            "ndim": ndim,
            "height": height,
            "width": width,
            "channels": channels,
            "dtype": [dtype_names[a.dtype] for a in arrays],
            **values,
            "hash": hashes,
        }
    )
    table["duplicate"] = table["hash"].duplicated(keep="first")
    return table


def _content_hash(array: np.ndarray) -> str:
    h = hashlib.sha1(repr(array.shape).encode())
    h.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))  # raw bytes, no copy
    return h.hexdigest()


def _value_statistics(arrays: list[np.ndarray], shapes: list[tuple]) -> dict[str, np.ndarray]:
    """min/max/mean/std over finite values and NaN/inf counts, vectorised per group of equal shapes."""
    n = len(arrays)
    out = {k: np.full(n, np.nan) for k in ("min", "max", "mean", "std")}
    out["nan_count"] = np.zeros(n, dtype=np.int64)
    out["inf_count"] = np.zeros(n, dtype=np.int64)
    groups: dict[tuple, list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(i)
    for shape, members in groups.items():
        size = int(np.prod(shape, dtype=np.int64))
        if size == 0:
            continue  # empty image: stats stay NaN, and its height/width fail the size check
        rows = max(1, _CHUNK_ELEMENTS // size)
        for start in range(0, len(members), rows):
            idx = np.asarray(members[start : start + rows])
            block = np.stack([arrays[i].reshape(-1) for i in idx]).astype(np.float64, copy=False)  # (B, P)
            for key, value in _block_statistics(block).items():
                out[key][idx] = value
    return out


def _block_statistics(block: np.ndarray) -> dict[str, np.ndarray]:
    finite = np.isfinite(block)  # (B, P)
    if finite.all():  # the common case: plain reductions, no masking
        lo, hi = block.min(1), block.max(1)
        return {
            "min": lo,
            "max": hi,
            "mean": block.mean(1),
            "std": _exact_zero_if_constant(block.std(1), lo, hi),
            "nan_count": np.zeros(len(block), dtype=np.int64),
            "inf_count": np.zeros(len(block), dtype=np.int64),
        }
    masked = np.where(finite, block, np.nan)
    with warnings.catch_warnings():  # all-NaN rows give NaN statistics, which is what we want
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(masked, 1), np.nanmax(masked, 1)
        return {
            "min": lo,
            "max": hi,
            "mean": np.nanmean(masked, 1),
            "std": _exact_zero_if_constant(np.nanstd(masked, 1), lo, hi),
            "nan_count": np.isnan(block).sum(1),
            "inf_count": np.isinf(block).sum(1),
        }


def _exact_zero_if_constant(std: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Constant float images can get std ~1e-16 from rounding in the mean (np.full(.., 0.8).std()
    is not 0); min == max is the exact test for blank, so use it."""
    return np.where(lo == hi, 0.0, std)


def _point_statistics(samples: list[np.ndarray] | np.ndarray, ids: list[str]) -> pd.DataFrame:
    points = np.asarray(samples)
    if points.ndim != 2 or points.shape[1] != 2 or points.dtype.kind not in "biuf":
        raise DataError(f"points must be a numeric (N, 2) array, got {points.dtype} {points.shape}")
    if len(points) != len(ids):
        raise DataError(f"{len(points)} points but {len(ids)} ids; a reader must give one id per sample")
    points = points.astype(np.float64, copy=False)
    return pd.DataFrame(
        {
            "id": pd.array(list(ids), dtype=object),
            "x": points[:, 0],
            "y": points[:, 1],
            "finite": np.isfinite(points).all(1),
        }
    )


def _label_columns(source: SourceData, n: int) -> tuple[pd.arrays.IntegerArray, pd.arrays.BooleanArray]:
    """Nullable label and label_valid columns; valid means an integer in [0, number of classes)."""
    if source.labels is None:
        return pd.array([pd.NA] * n, dtype="Int64"), pd.array([pd.NA] * n, dtype="boolean")
    labels = np.asarray(source.labels)
    if labels.shape != (n,):
        raise DataError(f"{source.name}: labels have shape {labels.shape}, expected ({n},) like the ids")
    if labels.dtype.kind in "biu":
        integral = np.ones(n, dtype=bool)
        as_int = labels.astype(np.int64)
    elif labels.dtype.kind == "f":
        integral = np.isfinite(labels) & (labels == np.round(labels))
        as_int = np.where(integral, labels, 0).astype(np.int64)
    else:
        raise DataError(f"{source.name}: labels must be integers, got dtype {labels.dtype}")
    num_classes = _num_classes(source, as_int[integral])
    valid = integral & (as_int >= 0) & (as_int < num_classes)
    label = pd.arrays.IntegerArray(np.where(integral, as_int, 0), mask=~integral)
    return label, pd.arrays.BooleanArray(valid, mask=np.zeros(n, dtype=bool))


def _num_classes(source: SourceData, labels: np.ndarray) -> int:
    """len(class_names) when given; otherwise inferred as max label + 1 (only negatives are invalid)."""
    if source.class_names:
        return len(source.class_names)
    return int(labels.max()) + 1 if len(labels) else 0


def class_counts(source: SourceData, stats: pd.DataFrame) -> pd.DataFrame:
    """Per-class table over the valid labels: id, class_index, class_name, count, share_of_largest.

    Every class in [0, num_classes) gets a row, so a missing class shows up with count 0.
    share_of_largest is NaN for absent classes: their absence is reported by the presence check,
    and GX treats NaN as missing, so it is not reported a second time by the balance check.
    """
    valid = stats["label"][stats["label_valid"].fillna(False).astype(bool)].to_numpy(dtype=np.int64)
    num_classes = _num_classes(source, valid)
    counts = np.bincount(valid, minlength=num_classes)
    names = list(source.class_names) if source.class_names else [str(k) for k in range(num_classes)]
    largest = counts.max() if len(counts) else 0
    share = np.where(counts > 0, counts / max(largest, 1), np.nan)
    return pd.DataFrame(
        {
            "id": pd.array([f"class {k} ({names[k]})" for k in range(num_classes)], dtype=object),
            "class_index": np.arange(num_classes, dtype=np.int64),
            "class_name": names,
            "count": counts.astype(np.int64),
            "share_of_largest": share,
        }
    )


# --------------------------------------------------------------------------------------------
# Expectation suites (Great Expectations 1.x, built in code)
# --------------------------------------------------------------------------------------------


def _import_gx() -> "gx_type":
    """Import GX with telemetry switched off first (its env vars are read at import/context time)."""
    os.environ.update(_TELEMETRY_OFF)
    import great_expectations as gx

    return gx


def _expectation(gx: Any, cls_name: str, check: str, why: str, **kwargs: Any) -> Any:
    cls = getattr(gx.expectations, cls_name)
    return cls(meta={"check": check}, description=why, **kwargs)


def image_expectations(value_range: tuple[float, float], config: ValidationConfig) -> list:
    """Expectations on the per-sample image table (see ``sample_statistics``)."""
    gx = _import_gx()
    lo, hi = (float(v) for v in value_range)
    size = config.min_image_size
    return [
        _expectation(gx, "ExpectTableRowCountToBeBetween", "min_samples",
                     f"at least {config.min_samples} samples", min_value=config.min_samples),
        _expectation(gx, "ExpectColumnValuesToBeInSet", "image_ndim",
                     "images are (H, W) or (H, W, C) arrays", column="ndim", value_set=[2, 3]),
        _expectation(gx, "ExpectColumnValuesToBeInSet", "channels",
                     f"channel count in {list(config.allowed_channels)}",
                     column="channels", value_set=list(config.allowed_channels)),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "min_height",
                     f"height >= {size} px", column="height", min_value=size),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "min_width",
                     f"width >= {size} px", column="width", min_value=size),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "no_nan",
                     "no NaN pixel values", column="nan_count", min_value=0, max_value=0),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "no_inf",
                     "no infinite pixel values", column="inf_count", min_value=0, max_value=0),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "value_range_low",
                     f"smallest finite pixel >= declared low {lo}", column="min", min_value=lo),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "value_range_high",
                     f"largest finite pixel <= declared high {hi}", column="max", max_value=hi),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "not_blank",
                     f"at most {config.max_blank_share:.1%} constant (blank) images",
                     column="std", min_value=0, strict_min=True, mostly=1.0 - config.max_blank_share),
        _expectation(gx, "ExpectColumnValuesToBeInSet", "not_duplicate",
                     f"at most {config.max_duplicate_share:.1%} byte-identical repeats",
                     column="duplicate", value_set=[False], mostly=1.0 - config.max_duplicate_share),
    ]


def point_expectations(config: ValidationConfig) -> list:
    """Expectations on the per-point table (see ``sample_statistics``)."""
    gx = _import_gx()
    bound = float(config.points_abs_bound)
    return [
        _expectation(gx, "ExpectTableRowCountToBeBetween", "min_samples",
                     f"at least {config.min_samples} points", min_value=config.min_samples),
        _expectation(gx, "ExpectColumnValuesToBeInSet", "finite",
                     "both coordinates finite (no NaN or inf)", column="finite", value_set=[True]),
        # NaN counts as missing in GX and is left to the finite check; inf fails here too.
        _expectation(gx, "ExpectColumnValuesToBeBetween", "x_bound",
                     f"|x| <= {bound}", column="x", min_value=-bound, max_value=bound),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "y_bound",
                     f"|y| <= {bound}", column="y", min_value=-bound, max_value=bound),
    ]


def label_expectations() -> list:
    """Per-sample label check, added to the sample suite when the source is labelled."""
    gx = _import_gx()
    return [
        _expectation(gx, "ExpectColumnValuesToBeInSet", "label_valid",
                     "every label is an integer class index in [0, num_classes)",
                     column="label_valid", value_set=[True]),
    ]


def class_expectations(config: ValidationConfig) -> list:
    """Expectations on the per-class count table (see ``class_counts``)."""
    gx = _import_gx()
    return [
        _expectation(gx, "ExpectColumnValuesToBeBetween", "class_present",
                     "every class has at least one sample", column="count", min_value=1),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "class_balance",
                     f"smallest class >= {config.min_class_ratio:.0%} of the largest",
                     column="share_of_largest", min_value=config.min_class_ratio),
    ]


def build_suites(source: SourceData, config: ValidationConfig) -> dict[str, Any]:
    """``{"samples": suite}`` plus ``{"classes": suite}`` for labelled sources, named after the data set."""
    gx = _import_gx()
    if source.kind == "image":
        sample_checks = image_expectations(source.value_range, config)
    else:
        sample_checks = point_expectations(config)
    labelled = source.labels is not None
    if labelled:
        sample_checks += label_expectations()
    suites = {"samples": gx.ExpectationSuite(name=f"{source.name}-{source.kind}-samples", expectations=sample_checks)}
    if labelled:
        suites["classes"] = gx.ExpectationSuite(
            name=f"{source.name}-{source.kind}-classes", expectations=class_expectations(config)
        )
    return suites


# --------------------------------------------------------------------------------------------
# Running the suites
# --------------------------------------------------------------------------------------------


def _ephemeral_context(docs_dir: Path) -> Any:
    """In-memory GX context whose one output is a filesystem Data Docs site at ``docs_dir``."""
    gx = _import_gx()
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    project = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        data_docs_sites={"local_site": site},
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
    )
    return gx.get_context(mode="ephemeral", project_config=project)


def _run_suite(context: Any, suite: Any, table: pd.DataFrame, table_name: str, config: ValidationConfig) -> Any:
    gx = _import_gx()
    datasource = context.data_sources.add_or_update_pandas("ganpipe")
    asset = datasource.add_dataframe_asset(table_name)
    batch = asset.add_batch_definition_whole_dataframe("whole")
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name=f"{suite.name}-validation", data=batch, suite=suite)
    )
    # SUMMARY keeps the stored result small on 60k rows while still naming the first offending ids.
    result_format = {
        "result_format": "SUMMARY",
        "unexpected_index_column_names": ["id"],
        "partial_unexpected_count": max(config.example_ids, 1),
    }
    return definition.run(batch_parameters={"dataframe": table}, result_format=result_format)


def _failures(result: Any, table_name: str, config: ValidationConfig) -> list[dict]:
    failures = []
    for r in result.results:
        if r.success:
            continue
        expectation = r.expectation_config
        column = expectation.kwargs.get("column")
        details = dict(r.result or {})
        examples = (details.get("partial_unexpected_index_list") or [])[: config.example_ids]
        failures.append(
            {
                "expectation": expectation.type,
                "check": (expectation.meta or {}).get("check", expectation.type),
                "table": table_name,
                "column": column,
                "description": expectation.description,
                "observed_value": details.get("observed_value"),
                "unexpected_count": details.get("unexpected_count"),
                "unexpected_percent": details.get("unexpected_percent"),
                "example_ids": [e["id"] for e in examples],
                "example_values": [e.get(column) for e in examples],
                "exception": (r.exception_info or {}).get("exception_message") if r.exception_info else None,
            }
        )
    return _jsonable(failures)


def _docs_index(context: Any) -> str:
    urls = context.build_data_docs()
    url = next(iter(urls.values()))
    return urllib.request.url2pathname(urllib.parse.urlparse(url).path)


def validate(source: SourceData, out_dir: str | os.PathLike, config: ValidationConfig | None = None) -> ValidationReport:
    """Validate ``source``; write statistics CSV, GX Data Docs and a JSON summary into ``out_dir``.

    Returns the report whether or not the data passed; see ``validate_or_raise`` for a gate.
    """
    config = config or ValidationConfig()
    out = Path(out_dir).resolve()
    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}

    t = time.perf_counter()
    stats = sample_statistics(source)
    tables = {"samples": stats}
    if source.labels is not None:
        tables["classes"] = class_counts(source, stats)
    stats_path = out / STATS_FILE
    stats.to_csv(stats_path, index=False)
    if "classes" in tables:
        tables["classes"].to_csv(out / CLASS_COUNTS_FILE, index=False)
    seconds["statistics"] = time.perf_counter() - t

    t = time.perf_counter()
    _import_gx()  # timed on its own: the first import in a process dominates GX's cost
    seconds["gx_import"] = time.perf_counter() - t

    t = time.perf_counter()
    docs_dir = out / DOCS_DIR
    shutil.rmtree(docs_dir, ignore_errors=True)  # the site index lists every page on disk: start clean
    context = _ephemeral_context(docs_dir)
    suites = build_suites(source, config)
    seconds["gx_setup"] = time.perf_counter() - t

    t = time.perf_counter()
    failures: list[dict] = []
    n_expectations = 0
    success = True
    for name, suite in suites.items():
        n_expectations += len(suite.expectations)
        result = _run_suite(context, suite, tables[name], name, config)
        success = success and bool(result.success)
        failures += _failures(result, name, config)
    seconds["gx_validate"] = time.perf_counter() - t

    t = time.perf_counter()
    docs_path = _docs_index(context)
    seconds["gx_docs"] = time.perf_counter() - t

    report = ValidationReport(
        success=success,
        dataset=source.name,
        kind=source.kind,
        n_samples=len(stats),
        n_expectations=n_expectations,
        failures=failures,
        stats_path=str(stats_path),
        docs_path=docs_path,
        summary_path=str(out / SUMMARY_FILE),
        seconds={k: round(v, 4) for k, v in seconds.items()},
    )
    summary = {**report.to_dict(), "config": config.to_dict(), "origin": source.origin,
               "value_range": list(source.value_range)}
    Path(report.summary_path).write_text(json.dumps(summary, indent=2) + "\n")
    return report


def validate_or_raise(
    source: SourceData, out_dir: str | os.PathLike, config: ValidationConfig | None = None
) -> ValidationReport:
    """``validate``, raising ``DataValidationError`` (message = ``report.format()``) on failure."""
    report = validate(source, out_dir, config)
    if not report.success:
        raise DataValidationError(report)
    return report


def _jsonable(value: Any) -> Any:
    """Plain JSON types from numpy/pandas scalars and containers (GX results carry numpy values)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, float) and not np.isfinite(value):
        return str(value)  # JSON has no NaN/inf literals
    return value
