"""Data validation of raw ``SourceData`` with Great Expectations, before anything is prepared.

Two steps on purpose: ``profiling`` turns the source into plain per-sample and per-class tables
with numpy alone (fast, testable without GX); ``suites`` judges those tables with expectation
suites built in code and writes Data Docs. The thresholds are ``ValidationConfig``, the typed
``validation`` section of ``params.yaml``.
"""

from pipelines.config import ValidationConfig
from pipelines.errors import DataValidationError
from pipelines.validation.profiling import class_counts, pair_statistics, sample_statistics
from pipelines.validation.suites import (CLASS_COUNTS_FILE, DOCS_DIR, PAIRS_FILE, STATS_FILE, SUMMARY_FILE,
                                         ValidationReport, build_suites, class_expectations, image_expectations,
                                         label_expectations, pair_expectations, point_expectations, validate,
                                         validate_or_raise)

__all__ = [
    "CLASS_COUNTS_FILE", "DOCS_DIR", "DataValidationError", "PAIRS_FILE", "STATS_FILE", "SUMMARY_FILE",
    "ValidationConfig", "ValidationReport", "build_suites", "class_counts", "class_expectations", "image_expectations",
    "label_expectations", "pair_expectations", "pair_statistics", "point_expectations", "sample_statistics",
    "validate", "validate_or_raise",
]
