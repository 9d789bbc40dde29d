"""Class coverage and the VEEGAN/PacGAN 2D mode metrics against closed forms."""

import math

import numpy as np
import pytest

from ganmodels.metrics import class_coverage, mode_metrics_2d
from ganmodels.metrics.modes import KL_EPS


def ring8():
    angles = 2 * np.pi * np.arange(8) / 8
    return np.stack([np.cos(angles), np.sin(angles)], 1), 0.01


def grid25():
    g = np.array([-4.0, -2.0, 0.0, 2.0, 4.0])
    return np.stack(np.meshgrid(g, g), -1).reshape(-1, 2), 0.05


def mixture(means, std, n, rng, modes=None):
    idx = rng.integers(0, len(means), n) if modes is None else rng.choice(modes, n)
    return means[idx] + std * rng.standard_normal((n, 2))


# --------------------------------------------------------------------------------------------
# class_coverage
# --------------------------------------------------------------------------------------------
def test_single_class_generator():
    real = np.repeat(np.arange(10), 50)
    out = class_coverage(np.full(2000, 3), real, 10)
    assert out["classes_covered"] == 1 and out["class_coverage"] == pytest.approx(0.1)
    assert out["class_kl"] == pytest.approx(math.log(10), rel=1e-3)  # all mass on 1 of 10 uniform classes
    np.testing.assert_allclose(out["generated_histogram"], np.eye(10)[3])


def test_uniform_generator():
    real = np.repeat(np.arange(10), 50)
    out = class_coverage(np.tile(np.arange(10), 200), real, 10)
    assert out["classes_covered"] == 10 and out["class_coverage"] == 1.0
    assert out["class_kl"] == pytest.approx(0.0, abs=1e-9)


def test_stray_predictions_below_threshold_do_not_count():
    real = np.repeat(np.arange(10), 50)
    pred = np.concatenate([np.full(1980, 1), np.arange(10).repeat(2)])  # 2 strays per class: 1% of fair share
    assert class_coverage(pred, real, 10)["classes_covered"] == 1
    assert class_coverage(pred, real, 10, min_share=0.005)["classes_covered"] == 10


def test_kl_is_finite_for_a_class_missing_from_the_reference_and_matches_formula():
    real = np.repeat(np.arange(5), [10, 10, 10, 10, 0])
    pred = np.repeat(np.arange(5), [1, 1, 1, 1, 4])
    out = class_coverage(pred, real, 5)
    assert np.isfinite(out["class_kl"]) and out["class_kl"] > 5
    eps = KL_EPS
    p = (np.array([1, 1, 1, 1, 4]) / 8 + eps) / (1 + 5 * eps)
    q = (np.array([0.25, 0.25, 0.25, 0.25, 0.0]) + eps) / (1 + 5 * eps)
    assert out["class_kl"] == pytest.approx(float(np.sum(p * np.log(p / q))), rel=1e-12)
    with pytest.raises(ValueError, match="labels must lie"):
        class_coverage(np.array([7]), real, 5)


# --------------------------------------------------------------------------------------------
# mode_metrics_2d
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("make", [ring8, grid25])
def test_all_modes(make):
    means, std = make()
    rng = np.random.default_rng(0)
    out = mode_metrics_2d(mixture(means, std, 20000, rng), means, std)
    assert out["modes_captured"] == len(means)
    # Share of a 2D isotropic Gaussian within 3σ: the Rayleigh CDF 1 - exp(-9/2) ≈ 0.9889.
    assert out["high_quality_fraction"] == pytest.approx(1 - math.exp(-4.5), abs=0.004)
    assert out["reverse_kl"] < 0.005


@pytest.mark.parametrize("make", [ring8, grid25])
def test_collapsed_onto_one_mode(make):
    means, std = make()
    out = mode_metrics_2d(mixture(means, std, 5000, np.random.default_rng(1), modes=[2]), means, std)
    assert out["modes_captured"] == 1
    assert out["reverse_kl"] == pytest.approx(math.log(len(means)), rel=1e-12)


def test_half_the_modes_and_off_manifold_samples():
    means, std = ring8()
    rng = np.random.default_rng(2)
    on = mixture(means, std, 1000, rng, modes=[0, 2, 4, 6])
    off = np.zeros((1000, 2))  # the ring's centre: nearest to some mode, but far outside 3σ
    out = mode_metrics_2d(np.concatenate([on, off]), means, std)
    assert out["modes_captured"] == 4
    assert out["high_quality_fraction"] == pytest.approx(0.5 * (1 - math.exp(-4.5)), abs=0.01)
    assert 0 < out["reverse_kl"] < math.log(8)
