"""Great Expectations suites over the profiling tables, run in an ephemeral context, with Data Docs.

``validate`` profiles the source (``profiling``), judges the per-sample table with an expectation
suite built in code for the data's modality, and the per-class count table with a second small
suite, and writes the table, GX Data Docs and a JSON summary into one output directory.

GX is imported lazily, inside the functions that need it: importing this module has no side
effects and costs nothing. The GX context is ephemeral (in-memory stores) and its only file output
is a filesystem Data Docs site under ``out_dir``, so no ``gx/`` folder appears in the cwd.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.parse
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ganmodels.data.base import SourceData
from pipelines.config import ValidationConfig
from pipelines.errors import DataValidationError
from pipelines.validation.profiling import (class_counts, domain_counts, pair_statistics, readable_targets,
                                           sample_statistics)

if TYPE_CHECKING:  # pragma: no cover - typing only
    import great_expectations as gx_type

STATS_FILE = "sample_stats.csv"
PAIRS_FILE = "pair_stats.csv"
DOMAINS_FILE = "domain_counts.csv"
CLASS_COUNTS_FILE = "class_counts.csv"
SUMMARY_FILE = "validation_summary.json"
DOCS_DIR = "data_docs"

_TELEMETRY_OFF = {"GX_ANALYTICS_ENABLED": "False", "DO_NOT_TRACK": "1"}


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


# Checks that apply a policy (a threshold in params.yaml's ``validation`` section), and the setting
# that changes it: a refusal of too few samples is a choice the user may revise, not a broken file.
POLICY_SETTINGS = {"min_samples": "min_samples", "min_height": "min_image_size", "min_width": "min_image_size",
                   "channels": "allowed_channels", "not_blank": "max_blank_share",
                   "not_duplicate": "max_duplicate_share", "class_balance": "min_class_ratio",
                   "domain_size": "min_domain_samples", "x_bound": "points_abs_bound",
                   "y_bound": "points_abs_bound"}


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
    if failure.get("check") in POLICY_SETTINGS:
        text += f"\n      setting: validation.{POLICY_SETTINGS[failure['check']]} (params.yaml or --set)"
    return text


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


def pair_expectations(value_range: tuple[float, float], scale: float) -> list:
    """Expectations on the per-pair table of a paired source read from files (see ``pair_statistics``)."""
    gx = _import_gx()
    lo, hi = (float(v) for v in value_range)
    return [
        _expectation(gx, "ExpectColumnValuesToBeInSet", "pair_complete",
                     "every input A has its target B and both files are readable", column="problem", value_set=[""]),
        _expectation(gx, "ExpectColumnValuesToBeInSet", "pair_scale_height",
                     f"every target is {scale:g}x its input's height (the scale of most pairs)",
                     column="scale_h", value_set=[scale]),
        _expectation(gx, "ExpectColumnValuesToBeInSet", "pair_scale_width",
                     f"every target is {scale:g}x its input's width", column="scale_w", value_set=[scale]),
        _expectation(gx, "ExpectColumnPairValuesToBeEqual", "pair_channels",
                     "input and target have the same channel count", column_A="a_channels", column_B="b_channels",
                     ignore_row_if="either_value_is_missing"),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "input_no_nan",
                     "no NaN pixel values in the inputs", column="a_nan_count", min_value=0, max_value=0),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "input_no_inf",
                     "no infinite pixel values in the inputs", column="a_inf_count", min_value=0, max_value=0),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "input_range_low",
                     f"smallest finite input pixel >= declared low {lo}", column="a_min", min_value=lo),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "input_range_high",
                     f"largest finite input pixel <= declared high {hi}", column="a_max", max_value=hi),
    ]


def domain_expectations(config: ValidationConfig) -> list:
    """Expectations on the per-domain table of a two-domain source (see ``domain_counts``)."""
    gx = _import_gx()
    return [
        _expectation(gx, "ExpectColumnValuesToBeBetween", "domain_size",
                     f"each domain has at least {config.min_domain_samples} images", column="count",
                     min_value=config.min_domain_samples),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "domain_not_degenerate",
                     "at least half of each domain's images are distinct (not one image repeated)",
                     column="distinct_share", min_value=0.5),
        _expectation(gx, "ExpectColumnValuesToBeBetween", "domain_not_blank",
                     "at least half of each domain's images are not blank", column="informative_share",
                     min_value=0.5),
    ]


def common_scale(pairs: pd.DataFrame) -> float:
    """The scale most complete pairs share; the others are reported as mismatched."""
    scales = pairs["scale_h"].dropna()
    return float(scales.mode().iloc[0]) if len(scales) else 1.0


def build_suites(source: SourceData, config: ValidationConfig, pairs: pd.DataFrame | None = None) -> dict[str, Any]:
    """``{"samples": suite}``, plus ``{"classes": suite}`` for labelled sources and ``{"pairs": suite}``
    for paired sources read from files, named after the data set."""
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
    if pairs is not None:
        suites["pairs"] = gx.ExpectationSuite(name=f"{source.name}-pairs",
                                              expectations=pair_expectations(source.value_range, common_scale(pairs)))
    if source.domain is not None:
        suites["domains"] = gx.ExpectationSuite(name=f"{source.name}-domains", expectations=domain_expectations(config))
    return suites


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
    targets = readable_targets(source)
    stats = sample_statistics(targets)
    tables = {"samples": stats}
    if source.labels is not None:
        tables["classes"] = class_counts(targets, stats)
    if source.inputs is not None:
        tables["pairs"] = pair_statistics(source)
        tables["pairs"].to_csv(out / PAIRS_FILE, index=False)
    if source.domain is not None:
        tables["domains"] = domain_counts(source, stats)
        tables["domains"].to_csv(out / DOMAINS_FILE, index=False)
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
    suites = build_suites(source, config, tables.get("pairs"))
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
