"""Quality gates: each ``gates: {metric: {min: x} | {max: x}}`` entry becomes one named decision with its reason.

The config has already checked every gated metric against the metric registry (it exists, can be
gated, and this run produces it). A metric still missing or not finite at judgement time fails
its gate: an evaluation that could not measure something must not let a model through.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from pipelines.config import GateSpec


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


def _judge(name: str, metric: str, value: float | None, threshold: float, comparison: str) -> GateResult:
    if value is None or not math.isfinite(value):
        return GateResult(name, metric, value, threshold, comparison, False,
                          f"{metric} is {'missing' if value is None else value}: cannot judge {comparison} {threshold:g}")
    ok = value <= threshold if comparison == "<=" else value >= threshold
    verdict = "passes" if ok else "FAILS"
    return GateResult(name, metric, float(value), threshold, comparison, ok,
                      f"{metric}={value:.4g} {verdict} {comparison} {threshold:g}")


def evaluate_gates(metrics: dict[str, float], gates: dict[str, GateSpec]) -> GateReport:
    """One ``GateResult`` per bound. A gate with one bound is named after its metric; with both,
    ``<metric>.min`` and ``<metric>.max``."""
    results = []
    for metric, spec in gates.items():
        bounds = [(b, value) for b, value in (("min", spec.min), ("max", spec.max)) if value is not None]
        for bound, threshold in bounds:
            name = metric if len(bounds) == 1 else f"{metric}.{bound}"
            results.append(_judge(name, metric, metrics.get(metric), float(threshold), ">=" if bound == "min" else "<="))
    return GateReport(results)


def failed_early_stop(stop_reason: str) -> dict[str, str]:
    """The verdict on a run the collapse monitor stopped: it never passes, whatever its final metrics."""
    return {"early_stop": stop_reason} if stop_reason else {}
