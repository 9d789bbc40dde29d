"""ModeMonitor: evaluation schedule, logged metrics, collapse detection and early stop.

The collapsed and healthy generators are hand-built stand-ins whose metrics are known in closed
form (all mass on one of 8 modes: 1 mode captured, reverse KL = log 8; a perfect sampler: 8
modes, reverse KL ≈ 0), so the tests do not depend on how a GAN happens to train.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

import ganmodels
from ganmodels.train import TrainConfig, Trainer, seed_everything
from ganmodels.train.monitor import ModeMonitor, MonitorConfig, collapse_reasons

SMALL_MLP = {"g_width": 32, "g_depth": 2, "d_width": 32, "d_depth": 2}
RING_STD = 0.01


def ring_means(k: int = 8) -> torch.Tensor:
    angles = torch.arange(k) * (2 * torch.pi / k)
    return torch.stack([angles.cos(), angles.sin()], 1)  # (K, 2)


class RingSampler(nn.Module):
    """A generator that samples the ring mixture exactly: the angle of z picks one of the modes
    (uniformly, z being isotropic), z itself is the within-mode noise. ``collapsed`` puts every
    sample on mode 0 instead."""

    def __init__(self, collapsed: bool = False):
        super().__init__()
        self.z_dim, self.c_dim, self.out_shape = 2, 0, (2,)
        self.collapsed = collapsed
        self.scale = nn.Parameter(torch.ones(()))  # a parameter, so code that looks up the device works
        self.register_buffer("means", ring_means())

    def forward(self, z: torch.Tensor, c=None) -> torch.Tensor:
        k = len(self.means)
        mode = ((torch.atan2(z[:, 1], z[:, 0]) + torch.pi) / (2 * torch.pi) * k).long().clamp(0, k - 1)
        if self.collapsed:
            mode = torch.zeros_like(mode)
        return self.means[mode] + RING_STD * self.scale * z  # (B, 2)


def fake_trainer(G: nn.Module) -> SimpleNamespace:
    trainer = SimpleNamespace(generator=G, stop_reasons=[])
    trainer.request_stop = trainer.stop_reasons.append
    return trainer


def ring_monitor(**cfg) -> ModeMonitor:
    return ModeMonitor(MonitorConfig(**cfg), modes=(ring_means().numpy(), RING_STD))


def make_trainer(data, *callbacks, **train) -> Trainer:
    seed_everything(0)
    gan = ganmodels.build("mlp2d", SMALL_MLP)
    cfg = TrainConfig(**{"batch_size": 16, "checkpoint_every": 10_000, "seed": 0, "device": "cpu", **train})
    return Trainer(gan, data, cfg, callbacks=callbacks)


def test_metrics_are_logged_at_the_right_steps(tiny_points):
    logged = []
    monitor = ModeMonitor.for_data(tiny_points, MonitorConfig(every=5, n_samples=64),
                                   modes=(ring_means().numpy(), RING_STD), log_fn=lambda s, m: logged.append((s, m)))
    result = make_trainer(tiny_points, monitor).fit(17)
    assert result.steps == 17 and not result.stopped_early
    assert [step for step, _ in monitor.history] == [5, 10, 15]
    assert logged == monitor.history
    for _, metrics in monitor.history:
        assert {"modes_captured", "modes_fraction", "high_quality_fraction", "reverse_kl", "precision",
                "recall"} <= set(metrics)
        assert all(type(v) is float and math.isfinite(v) for v in metrics.values())


def test_monitoring_does_not_change_training(tiny_points):
    plain = make_trainer(tiny_points)
    plain.fit(12)
    monitored = make_trainer(tiny_points, ring_monitor(every=3, n_samples=32))
    monitored.fit(12)
    for a, b in zip(plain.networks["G"].parameters(), monitored.networks["G"].parameters()):
        assert torch.equal(a, b)


def test_generator_mode_is_restored(tiny_points):
    G = RingSampler().train()
    ring_monitor().evaluate(G)
    assert G.training
    ring_monitor().evaluate(G.eval())
    assert not G.training


def test_collapsed_and_healthy_metrics_match_closed_forms():
    monitor = ring_monitor(n_samples=2000)
    healthy = monitor.evaluate(RingSampler())
    assert healthy["modes_captured"] == 8 and healthy["modes_fraction"] == 1.0
    assert healthy["high_quality_fraction"] > 0.97  # P(|N(0, I2)| <= 3) = 1 - exp(-4.5) = 0.989
    assert healthy["reverse_kl"] < 0.01
    collapsed = monitor.evaluate(RingSampler(collapsed=True))
    assert collapsed["modes_captured"] == 1 and collapsed["modes_fraction"] == 1 / 8
    assert collapsed["reverse_kl"] == pytest.approx(math.log(8))


def test_forced_collapse_stops_training_after_patience_evaluations(tiny_points):
    monitor = ModeMonitor.for_data(tiny_points, MonitorConfig(every=5, n_samples=200, early_stop=True, patience=3),
                                   modes=(ring_means().numpy(), RING_STD))
    trainer = make_trainer(tiny_points, monitor, ema_beta=0.99)
    trainer.ema["G"].forward = RingSampler(collapsed=True).forward  # the evaluated (EMA) generator collapses
    result = trainer.fit(100)
    assert result.stopped_early and result.steps == 15  # evaluations at 5, 10, 15
    assert result.stop_reason == monitor.stop_reason
    assert "mode collapse" in result.stop_reason and "modes_fraction 0.125" in result.stop_reason
    assert "steps 5, 10, 15" in result.stop_reason
    assert [m["modes_captured"] for _, m in monitor.history] == [1.0, 1.0, 1.0]


def test_healthy_generator_is_not_stopped(tiny_points):
    monitor = ModeMonitor(MonitorConfig(every=5, n_samples=200, early_stop=True, patience=1,
                                        min_modes_fraction=1.0, max_reverse_kl=0.05),
                          modes=(ring_means().numpy(), RING_STD))
    trainer = make_trainer(tiny_points, monitor, ema_beta=0.99)
    trainer.ema["G"].forward = RingSampler().forward
    result = trainer.fit(30)
    assert not result.stopped_early and result.steps == 30 and result.stop_reason == ""
    assert len(monitor.history) == 6


def test_warmup_and_consecutive_counting():
    collapsed, healthy = RingSampler(collapsed=True), RingSampler()
    monitor = ring_monitor(every=1, n_samples=200, early_stop=True, patience=2, warmup=3)
    trainer = fake_trainer(collapsed)
    for step in (1, 2):  # before warmup: collapse is not counted
        monitor.on_step_end(trainer, step, {})
    assert trainer.stop_reasons == []
    monitor.on_step_end(trainer, 3, {})  # streak 1
    trainer.generator = healthy
    monitor.on_step_end(trainer, 4, {})  # a healthy evaluation resets the streak
    trainer.generator = collapsed
    monitor.on_step_end(trainer, 5, {})
    assert trainer.stop_reasons == []
    monitor.on_step_end(trainer, 6, {})
    assert len(trainer.stop_reasons) == 1 and "steps 5, 6" in trainer.stop_reasons[0]
    monitor.on_step_end(trainer, 7, {})  # asks once
    assert len(trainer.stop_reasons) == 1


def test_no_stop_without_early_stop():
    monitor = ring_monitor(every=1, n_samples=100, patience=1)
    trainer = fake_trainer(RingSampler(collapsed=True))
    for step in range(1, 4):
        monitor.on_step_end(trainer, step, {})
    assert trainer.stop_reasons == [] and len(monitor.history) == 3


def test_reverse_kl_threshold():
    cfg = MonitorConfig(min_modes_fraction=None, max_reverse_kl=1.0)
    assert collapse_reasons({"modes_captured": 1.0, "modes_fraction": 0.125, "reverse_kl": 2.08}, cfg) \
        == ["reverse_kl 2.08 > 1"]
    assert collapse_reasons({"modes_captured": 8.0, "modes_fraction": 1.0, "reverse_kl": 0.01}, cfg) == []


# -- labelled images through a domain classifier --------------------------------------------------


class PixelClassifier(nn.Module):
    """Stands in for a DomainClassifier: features are the first 10 pixels, the class their argmax."""

    def features(self, x):
        return x.flatten(1)[:, :10]  # (B, 10)

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(10, 10, bias=False)
        with torch.no_grad():
            self.head.weight.copy_(torch.eye(10))


class PixelGenerator(nn.Module):
    """(B, 1, 4, 4) images lighting pixel k, k from z (uniform over 10) or always 0 when collapsed."""

    def __init__(self, collapsed: bool):
        super().__init__()
        self.z_dim, self.c_dim, self.collapsed = 1, 0, collapsed
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z, c=None):
        k = torch.special.ndtr(z[:, 0]).mul(10).long().clamp(0, 9)  # Φ(z) is uniform on (0, 1)
        if self.collapsed:
            k = torch.zeros_like(k)
        return nn.functional.one_hot(k, 16).float().reshape(-1, 1, 4, 4)


def test_class_coverage_and_class_kl_collapse():
    labels = torch.arange(1000) % 10
    real = nn.functional.one_hot(labels, 16).float().reshape(-1, 1, 4, 4)
    cfg = MonitorConfig(every=1, n_samples=300, early_stop=True, patience=1, min_class_coverage=None,
                        max_class_kl=0.5)
    monitor = ModeMonitor(cfg, classifier=PixelClassifier(), num_classes=10, real=real, real_labels=labels)
    healthy = monitor.evaluate(PixelGenerator(collapsed=False))
    assert healthy["classes_covered"] == 10 and healthy["class_kl"] < 0.05
    assert healthy["precision"] == 1.0 and healthy["recall"] == 1.0  # the same 10 points on both sides
    trainer = fake_trainer(PixelGenerator(collapsed=True))
    monitor.on_step_end(trainer, 1, {})
    metrics = monitor.history[-1][1]
    assert metrics["classes_covered"] == 1 and metrics["class_coverage"] == 0.1
    assert metrics["class_kl"] == pytest.approx(math.log(10), abs=1e-3)
    assert len(trainer.stop_reasons) == 1 and "class_kl 2.3 > 0.5" in trainer.stop_reasons[0]


def test_class_coverage_threshold_names_the_classes():
    reasons = collapse_reasons({"classes_covered": 3.0, "class_coverage": 0.3, "class_kl": 1.2}, MonitorConfig())
    assert reasons == ["class_coverage 0.3 (3 classes) < 0.5"]


def test_every_zero_switches_monitoring_off(tiny_points):
    monitor = ModeMonitor.for_data(tiny_points, MonitorConfig(every=0, n_samples=64),
                                   modes=(ring_means().numpy(), RING_STD))
    assert make_trainer(tiny_points, monitor).fit(6).steps == 6
    assert monitor.history == []


@pytest.mark.parametrize("bad", [{"every": -1}, {"n_samples": 3}, {"patience": 0}, {"warmup": -1},
                                 {"min_modes_fraction": 1.5}, {"min_class_coverage": -0.1}, {"max_class_kl": -1.0}])
def test_config_rejects_bad_values(bad):
    with pytest.raises(ValueError, match="invalid monitor config"):
        MonitorConfig(**bad)


def test_monitor_needs_something_to_watch():
    with pytest.raises(ValueError, match="modes="):
        ModeMonitor(MonitorConfig())
    with pytest.raises(ValueError, match="num_classes"):
        ModeMonitor(MonitorConfig(), classifier=PixelClassifier())


def test_for_data_finds_the_modes_of_a_known_mixture():
    from ganmodels.data import DataConfig, load_dataset, mixture_spec

    data = load_dataset(DataConfig(name="grid25", num_points=400))
    monitor = ModeMonitor.for_data(data, MonitorConfig(n_samples=100))
    assert monitor.modes[0].shape == (25, 2) and monitor.modes[1] == mixture_spec("grid25")[1]
    assert monitor.real_features.shape == (100, 2)  # a seeded subset of the held-out points
