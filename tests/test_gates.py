"""Quality gates: each bound passes at its threshold and fails just beyond it, a metric that could not be
measured never lets a model through, gates are checked against the metric registry before a run starts,
and the thresholds params.yaml ships (and the README quotes) are pinned here."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ganmodels.data import DataConfig, load_dataset, mixture_spec
from ganmodels.metrics import evaluate_generator, get_metric, list_metrics
from pipelines.config import ConfigError, GateSpec, load_run_config
from pipelines.gates import evaluate_gates, failed_early_stop

PROJECT_PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"
GATEABLE = [m for m in list_metrics() if get_metric(m).direction != "none"]


@pytest.mark.parametrize("metric", GATEABLE)
def test_a_gate_passes_at_its_threshold_and_fails_just_beyond(metric):
    lower = get_metric(metric).lower_is_better
    spec = GateSpec(max=0.75) if lower else GateSpec(min=0.75)
    worse, better = (0.76, 0.74) if lower else (0.74, 0.76)
    for value, passed in ((0.75, True), (better, True), (worse, False)):
        report = evaluate_gates({metric: value}, {metric: spec})
        (result,) = report.results
        assert (result.name, result.metric, result.threshold) == (metric, metric, 0.75)
        assert result.comparison == ("<=" if lower else ">=")
        assert result.passed is passed and report.passed is passed
        assert report.failed == ({} if passed else {metric: result.reason})
        assert ("FAILS" in result.reason) is not passed and metric in result.reason


@pytest.mark.parametrize("value", [None, math.nan, math.inf, -math.inf])
def test_missing_or_non_finite_metric_fails(value):
    metrics = {} if value is None else {"recall": value}
    report = evaluate_gates(metrics, {"recall": GateSpec(min=0.3)})
    assert not report.passed and set(report.failed) == {"recall"}
    assert ("missing" if value is None else "cannot judge") in report.failed["recall"]


def test_both_bounds_are_two_named_gates():
    report = evaluate_gates({"class_kl": 0.2}, {"class_kl": GateSpec(min=0.0, max=0.1)})
    assert [(r.name, r.passed) for r in report.results] == [("class_kl.min", True), ("class_kl.max", False)]


def test_no_gates_judge_nothing():
    report = evaluate_gates({"domain_fd": 1e9}, {})
    assert report.results == [] and report.passed


def test_early_stop_is_a_failed_gate():
    assert failed_early_stop("") == {}
    assert failed_early_stop("mode collapse: ...") == {"early_stop": "mode collapse: ..."}


# -- what params.yaml ships ---------------------------------------------------------------------------

SHIPPED = {
    ("digits", "dcgan"): {"domain_fd": (None, 50.0), "precision": (0.5, None), "recall": (0.3, None),
                          "class_coverage": (1.0, None), "class_kl": (None, 0.05),
                          "authenticity": (0.4, None), "data_copying_ct": (-3.0, None)},
    ("ring8", "mlp2d"): {"modes_fraction": (1.0, None), "high_quality_fraction": (0.9, None),
                         "reverse_kl": (None, 0.05)},
}
SHIPPED[("digits", "cgan")] = {**SHIPPED[("digits", "dcgan")], "cond_accuracy": (0.9, None)}
SHIPPED[("grid25", "mlp2d")] = SHIPPED[("ring8", "mlp2d")]
SHIPPED[("digits-sr", "pix2pix")] = {"psnr_gain_over_bicubic": (3.0, None), "ssim": (0.7, None)}
SHIPPED[("glyphs-sr", "pix2pix")] = SHIPPED[("glyphs-edges", "pix2pix")] = SHIPPED[("digits-sr", "pix2pix")]
SHIPPED[("digits", "stylegan2")] = SHIPPED[("digits", "dcgan")]
SHIPPED[("digits-bold", "cyclegan")] = {"cycle_l1_a": (None, 0.2), "cycle_l1_b": (None, 0.2),
                                         "psnr_a2b": (20.0, None), "class_preservation_a2b": (0.9, None)}
SHIPPED[("glyphs-fonts", "cyclegan")] = {"cycle_l1_a": (None, 0.2), "cycle_l1_b": (None, 0.2),
                                          "style_transfer_a2b": (0.75, None), "class_preservation_a2b": (0.85, None),
                                          "psnr_a2b": (18.5, None)}
PRIMARY = {"digits-bold": "psnr_a2b", "glyphs-fonts": "psnr_a2b", "ring8": "reverse_kl", "grid25": "reverse_kl", "digits-sr": "psnr_gain_over_bicubic",
           "glyphs-sr": "psnr_gain_over_bicubic", "glyphs-edges": "psnr_gain_over_bicubic"}


@pytest.mark.parametrize("dataset, model", list(SHIPPED))
def test_params_yaml_gates_are_the_documented_ones(dataset, model):
    cfg = load_run_config(PROJECT_PARAMS, dataset=dataset, model=model)
    assert {metric: (g.min, g.max) for metric, g in cfg.gates.items()} == SHIPPED[(dataset, model)]
    assert cfg.primary_metric == PRIMARY.get(dataset, "domain_fd")


def test_smoke_preset_switches_every_gate_off():
    assert load_run_config(PROJECT_PARAMS, preset="smoke").gates == {}
    assert load_run_config(PROJECT_PARAMS, dataset="ring8", preset="smoke").gates == {}


class RingG(torch.nn.Module):
    """Points on the ring8 modes (or only on ``modes``): a stand-in generator with a known answer."""

    def __init__(self, modes=range(8), std=0.01):
        super().__init__()
        self.z_dim, self.c_dim, self.modes, self.std = 2, 0, list(modes), std
        self.anchor = torch.nn.Parameter(torch.zeros(()))

    def forward(self, z, c=None):
        means = torch.from_numpy(mixture_spec("ring8")[0]).float()[self.modes]
        pick = (z[:, 0].abs() * 1000).long() % len(self.modes)
        return means[pick] + self.std * z + 0 * self.anchor


@pytest.mark.parametrize("generator, passes, failed", [
    (RingG(), True, set()),
    (RingG(modes=[0, 1, 2]), False, {"modes_fraction", "reverse_kl"}),  # collapsed onto 3 of 8 modes
    (RingG(std=0.05), False, {"high_quality_fraction"}),  # every mode, but samples 5 std wide
])
def test_shipped_point_gates_judge_mode_metrics(generator, passes, failed):
    """The mode metrics as evaluate computes them, judged by the gates params.yaml ships for ring8."""
    cfg = load_run_config(PROJECT_PARAMS, dataset="ring8")
    data = load_dataset(DataConfig(name="ring8", num_points=2000))
    metrics = evaluate_generator(generator, data, n_samples=2500, modes=mixture_spec("ring8"), seed=0)
    report = evaluate_gates(metrics, cfg.gates)
    assert report.passed is passes and set(report.failed) == failed


# -- gates are checked before anything runs ---------------------------------------------------------


@pytest.mark.parametrize("override, named", [
    ("gates.fid={max: 10}", "does not produce 'fid'"),  # no Inception weights on this machine
    ("gates.reverse_kl={max: 0.1}", "does not produce 'reverse_kl'"),  # a point metric on images
    ("gates.cond_accuracy={min: 0.9}", "does not produce 'cond_accuracy'"),  # dcgan is unconditional
    ("gates.sharpness={min: 1}", "unknown metric 'sharpness'"),
    ("gates.kid_std={max: 1}", "cannot be gated"),
    ("gates.recall={least: 1}", "must be {min: X}"),
    ("gates.recall={min: fast}", "gates.recall.min='fast' must be"),
    ("gates.recall={min: 0.9, max: 0.1}", "above max"),
    ("gates.max_primary=50", "write domain_fd: {max: X}"),  # the 0.1 field names point to the new form
])
def test_bad_gates_are_config_errors(override, named):
    with pytest.raises(ConfigError, match="gates") as err:
        load_run_config(PROJECT_PARAMS, overrides=[override])
    assert named in str(err.value)


def test_null_switches_one_gate_off():
    cfg = load_run_config(PROJECT_PARAMS, overrides=["gates.recall=null"])
    assert "recall" not in cfg.gates and "precision" in cfg.gates
