"""Quality gates: each threshold passes at its boundary and fails just beyond it, ``None`` switches a
gate off, and a metric that could not be measured never lets a model through."""

from __future__ import annotations

import dataclasses
import math

import pytest

from pipelines.config import GateConfig
from pipelines.gates import evaluate_gates

OFF = GateConfig(**{f.name: None for f in dataclasses.fields(GateConfig)})

# (gate name, GateConfig field, metric, comparison, kind). For the modes gate the threshold is a
# fraction of the modes and the metric a count: the boundary is fraction * num_modes.
IMAGE_GATES = [
    ("primary", "max_primary", "domain_fd", "<=", "image"),
    ("precision", "min_precision", "precision", ">=", "image"),
    ("recall", "min_recall", "recall", ">=", "image"),
    ("class_coverage", "min_class_coverage", "class_coverage", ">=", "image"),
    ("class_kl", "max_class_kl", "class_kl", "<=", "image"),
]
POINT_GATES = [
    ("primary", "max_primary", "reverse_kl", "<=", "points"),
    ("modes_captured", "min_modes_fraction", "modes_captured", ">=", "points"),
    ("high_quality", "min_high_quality", "high_quality_fraction", ">=", "points"),
    ("reverse_kl", "max_reverse_kl", "reverse_kl", "<=", "points"),
]
NUM_MODES = 8


def judge(metrics: dict, gates: GateConfig, kind: str):
    primary = "domain_fd" if kind == "image" else "reverse_kl"
    return evaluate_gates(metrics, gates, kind=kind, primary_metric=primary, num_modes=NUM_MODES)


def only(name: str, field: str, threshold: float):
    """Gates with only ``field`` switched on, and the boundary value its metric is compared with."""
    boundary = threshold * NUM_MODES if name == "modes_captured" else threshold
    return dataclasses.replace(OFF, **{field: threshold}), boundary


@pytest.mark.parametrize("name, field, metric, comparison, kind", IMAGE_GATES + POINT_GATES)
def test_gate_passes_at_its_threshold_and_fails_beyond(name, field, metric, comparison, kind):
    gates, boundary = only(name, field, 0.75)
    worse = boundary + 0.01 if comparison == "<=" else boundary - 0.01
    better = boundary - 0.01 if comparison == "<=" else boundary + 0.01
    for value, passed in ((boundary, True), (better, True), (worse, False)):
        report = judge({metric: value}, gates, kind)
        assert [r.name for r in report.results] == [name]
        result = report.results[0]
        assert (result.metric, result.comparison, result.threshold) == (metric, comparison, boundary)
        assert result.passed is passed and report.passed is passed
        assert report.failed == ({} if passed else {name: result.reason})
        assert ("FAILS" in result.reason) is not passed and metric in result.reason


@pytest.mark.parametrize("name, field, metric, comparison, kind", IMAGE_GATES + POINT_GATES)
@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_missing_or_non_finite_metric_fails(name, field, metric, comparison, kind, value):
    gates, _ = only(name, field, 0.75)
    metrics = {} if value is None else {metric: value}
    report = judge(metrics, gates, kind)
    assert not report.passed
    assert set(report.failed) == {name}
    assert ("missing" if value is None else "cannot judge") in report.failed[name]


def test_none_switches_every_gate_off():
    for kind in ("image", "points"):
        report = judge({}, OFF, kind)  # nothing measured, nothing judged
        assert report.results == [] and report.passed and report.failed == {}


def test_image_and_point_gate_sets():
    all_on = GateConfig(max_primary=1.0, min_class_coverage=1.0, max_class_kl=1.0, min_precision=1.0, min_recall=1.0,
                        min_modes_fraction=1.0, min_high_quality=1.0, max_reverse_kl=1.0)
    names = lambda kind, **kw: [r.name for r in evaluate_gates({}, all_on, kind=kind, primary_metric="m", **kw).results]
    assert names("image") == [g[0] for g in IMAGE_GATES]
    assert names("image", labelled=False) == ["primary", "precision", "recall"]  # no classes to cover
    assert names("points", num_modes=NUM_MODES) == [g[0] for g in POINT_GATES]


def test_report_lists_every_failure_and_serialises():
    gates = dataclasses.replace(OFF, max_primary=10.0, min_precision=0.5, min_recall=0.3, max_class_kl=0.05)
    report = judge({"domain_fd": 12.0, "precision": 0.6, "recall": 0.1, "class_kl": 0.05}, gates, "image")
    assert set(report.failed) == {"primary", "recall"}
    as_dict = report.to_dict()
    assert as_dict["passed"] is False
    assert [(g["name"], g["passed"]) for g in as_dict["gates"]] == [
        ("primary", False), ("precision", True), ("recall", False), ("class_kl", True)]


def test_project_default_gates_judge_a_good_and_a_collapsed_model():
    gates = GateConfig(max_primary=50.0)  # the other thresholds: GateConfig's defaults
    good = {"domain_fd": 20.0, "precision": 0.8, "recall": 0.6, "class_coverage": 1.0, "class_kl": 0.01}
    collapsed = {"domain_fd": 300.0, "precision": 0.03, "recall": 0.0, "class_coverage": 0.1, "class_kl": 2.3}
    assert judge(good, gates, "image").passed
    assert set(judge(collapsed, gates, "image").failed) == {"primary", "precision", "recall", "class_coverage",
                                                            "class_kl"}
