"""Quality gates: each threshold in ``params.yaml`` becomes one named decision with its reason."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pipelines.config import GateConfig


@dataclass(frozen=True)
class GateResult:
    name: str
    metric: str
    value: float | None
    threshold: float
    comparison: str  # "<=" or ">="
    passed: bool
    reason: str


@dataclass(frozen=True)
class GateReport:
    results: list[GateResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> dict[str, str]:
        return {r.name: r.reason for r in self.results if not r.passed}

    def to_dict(self) -> dict:
        return {"passed": self.passed, "gates": [asdict(r) for r in self.results]}


def _gate(name: str, metric: str, metrics: dict[str, float], threshold: float, comparison: str) -> GateResult:
    value = metrics.get(metric)
    if value is None or not math.isfinite(value):
        return GateResult(name, metric, value, threshold, comparison, False,
                          f"{metric} is {'missing' if value is None else value}: cannot judge {comparison} {threshold}")
    ok = value <= threshold if comparison == "<=" else value >= threshold
    verdict = "passes" if ok else "FAILS"
    return GateResult(name, metric, float(value), threshold, comparison, ok,
                      f"{metric}={value:.4g} {verdict} {comparison} {threshold:g}")


def evaluate_gates(metrics: dict[str, float], gates: GateConfig, *, kind: str, primary_metric: str,
                   num_modes: int = 0, labelled: bool = True) -> GateReport:
    """Judge ``metrics`` against ``gates``. Gates whose metric does not apply to ``kind`` are skipped;
    a gate that applies but whose metric is missing fails (an evaluation that could not measure
    something must not let a model through)."""
    checks: list[tuple[str, str, float | None, str]] = [("primary", primary_metric, gates.max_primary, "<=")]
    if kind == "image":
        checks += [("precision", "precision", gates.min_precision, ">="), ("recall", "recall", gates.min_recall, ">=")]
        if labelled:
            checks += [("class_coverage", "class_coverage", gates.min_class_coverage, ">="),
                       ("class_kl", "class_kl", gates.max_class_kl, "<=")]
    else:
        modes = None if gates.min_modes_fraction is None else gates.min_modes_fraction * num_modes
        checks += [("modes_captured", "modes_captured", modes, ">="),
                   ("high_quality", "high_quality_fraction", gates.min_high_quality, ">="),
                   ("reverse_kl", "reverse_kl", gates.max_reverse_kl, "<=")]
    results = [_gate(name, metric, metrics, threshold, cmp) for name, metric, threshold, cmp in checks
               if threshold is not None]
    return GateReport(results)
