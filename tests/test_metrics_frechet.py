"""Fréchet distance and streaming feature statistics against independent references."""

import numpy as np
import pytest
import scipy.linalg
import torch

from ganmodels.metrics import FeatureStats, frechet_distance
from ganmodels.metrics.frechet import trace_sqrt_product


def sqrtm_reference(mu1, s1, mu2, s2) -> float:
    """The textbook formula with scipy's general matrix square root (what pytorch-fid does)."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def random_spd(rng, d, rank=None, jitter=0.0):
    a = rng.standard_normal((d, rank or 2 * d))
    return a @ a.T / a.shape[1] + jitter * np.eye(d)


@pytest.mark.parametrize("d", [1, 2, 16, 64, 200])
def test_matches_sqrtm_on_random_spd(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = random_spd(rng, d), random_spd(rng, d) * 3.0
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(sqrtm_reference(mu1, s1, mu2, s2), rel=1e-6)


@pytest.mark.parametrize("d", [32, 128])
def test_matches_sqrtm_on_near_singular(d):
    # Rank-deficient covariances (fewer samples than dimensions, as with small FID sets) plus a tiny ridge.
    rng = np.random.default_rng(100 + d)
    s1, s2 = random_spd(rng, d, rank=d // 4, jitter=1e-10), random_spd(rng, d, rank=d // 2, jitter=1e-10)
    mu1, mu2 = np.zeros(d), np.full(d, 0.1)
    assert frechet_distance(mu1, s1, mu2, s2) == pytest.approx(sqrtm_reference(mu1, s1, mu2, s2), rel=1e-6)


@pytest.mark.parametrize("method", ["auto", "cholesky", "eigh"])
def test_trace_sqrt_product_methods_agree_with_sqrtm(method):
    rng = np.random.default_rng(7)
    s1, s2 = random_spd(rng, 48), random_spd(rng, 48, rank=10)
    expected = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2, method) == pytest.approx(expected, rel=1e-8)


def test_singular_first_covariance_falls_back_to_eigh():
    # Rank 5 in 40-d with a rounding-sized negative eigenvalue: Cholesky must fail, eigh copes.
    rng = np.random.default_rng(8)
    a = rng.standard_normal((40, 5))
    s1, s2 = a @ a.T - 1e-13 * np.eye(40), random_spd(rng, 40)
    with pytest.raises(np.linalg.LinAlgError):
        trace_sqrt_product(s1, s2, "cholesky")
    mu = np.zeros(40)
    assert frechet_distance(mu, s1, mu, s2) == pytest.approx(sqrtm_reference(mu, s1, mu, s2), rel=1e-6)


def test_closed_forms():
    # 1-D: (m1 - m2)^2 + (s1 - s2)^2 for standard deviations s.
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([-2.0]), np.array([[9.0]])) == pytest.approx(9 + 1)
    # Diagonal covariances: sum of per-dimension 1-D distances.
    a, b = np.array([1.0, 2.0, 0.5]), np.array([3.0, 0.5, 0.5])
    expected = 1.0**2 * 3 + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    assert frechet_distance(np.zeros(3), np.diag(a), np.ones(3), np.diag(b)) == pytest.approx(expected)


def test_zero_covariance():
    # A point mass vs N(mu2, S): ||mu1 - mu2||² + tr S (the cross term vanishes).
    s = random_spd(np.random.default_rng(9), 5)
    assert frechet_distance(np.zeros(5), np.zeros((5, 5)), np.ones(5), s) == pytest.approx(5 + np.trace(s))
    assert frechet_distance(np.zeros(5), np.zeros((5, 5)), np.zeros(5), np.zeros((5, 5))) == 0.0


def test_identical_statistics_give_zero():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 64)) * 5 + 3
    mu, s = x.mean(0), np.cov(x, rowvar=False)
    assert abs(frechet_distance(mu, s, mu, s)) < 1e-6 * np.trace(s)
    # Singular covariance (N < D): still ~0, never negative.
    y = rng.standard_normal((10, 64))
    mu, s = y.mean(0), np.cov(y, rowvar=False)
    value = frechet_distance(mu, s, mu, s)
    assert 0.0 <= value < 1e-6 * np.trace(s)


def test_shape_errors_name_the_mismatch():
    mu, s = np.zeros(3), np.eye(3)
    with pytest.raises(ValueError, match=r"sigma1.*\(3, 3\).*\(4, 4\)"):
        frechet_distance(mu, np.eye(4), mu, s)
    with pytest.raises(ValueError, match=r"D=3.*D=4"):
        frechet_distance(mu, s, np.zeros(4), np.eye(4))
    with pytest.raises(ValueError, match=r"1-D"):
        frechet_distance(np.zeros((3, 1)), s, mu, s)
    with pytest.raises(ValueError, match=r"NaN"):
        frechet_distance(np.array([np.nan, 0, 0]), s, mu, s)


# --------------------------------------------------------------------------------------------
# FeatureStats
# --------------------------------------------------------------------------------------------
def chunk(x, sizes):
    out, i = [], 0
    for s in sizes:
        out.append(x[i : i + s])
        i += s
    assert i == len(x)
    return out


@pytest.mark.parametrize(
    "sizes",
    [[300], [1] * 300, [7] * 42 + [6], [150, 1, 149], list(np.random.default_rng(0).multinomial(300, np.ones(13) / 13))],
)
def test_streaming_matches_numpy(sizes):
    rng = np.random.default_rng(1)
    # A large offset relative to the spread is where naive Σx, Σxxᵀ accumulation loses digits.
    x = rng.standard_normal((300, 12)) @ rng.standard_normal((12, 12)) + 1e4
    stats = FeatureStats()
    for part in chunk(x, sizes):
        stats.update(part)
    assert stats.n == 300
    np.testing.assert_allclose(stats.mean, x.mean(0), rtol=1e-12)
    np.testing.assert_allclose(stats.cov, np.cov(x, rowvar=False), rtol=1e-8, atol=1e-9)


def test_accepts_torch_and_checks_dims():
    x = torch.randn(50, 4)
    stats = FeatureStats().update(x[:20]).update(x[20:].numpy())
    np.testing.assert_allclose(stats.cov, np.cov(x.double().numpy(), rowvar=False), rtol=1e-6)
    with pytest.raises(ValueError, match="D=4"):
        stats.update(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="at least 2"):
        FeatureStats().update(np.zeros((1, 4))).cov


def test_save_load_roundtrip_and_resume(tmp_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((100, 6))
    full = FeatureStats(reservoir_size=30, seed=5)
    for part in chunk(x, [40, 35, 25]):
        full.update(part)
    half = FeatureStats(reservoir_size=30, seed=5).update(x[:40])
    path = tmp_path / "stats" / "ref.npz"
    half.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["ref.npz"]  # no temp file left behind
    resumed = FeatureStats.load(path).update(x[40:75]).update(x[75:])
    np.testing.assert_allclose(resumed.mean, full.mean, rtol=1e-12)
    np.testing.assert_allclose(resumed.cov, full.cov, rtol=1e-12)
    np.testing.assert_array_equal(resumed.reservoir, full.reservoir)
    with pytest.raises(FileNotFoundError):
        FeatureStats.load(tmp_path / "missing.npz")


def test_reservoir_is_capped_and_uniform():
    x = np.arange(20, dtype=np.float64)[:, None]  # (20, 1): row i has value i
    small = FeatureStats(reservoir_size=50).update(x)
    np.testing.assert_array_equal(small.reservoir[:, 0], x[:, 0])
    counts = np.zeros(20)
    trials = 2000
    for seed in range(trials):
        stats = FeatureStats(reservoir_size=5, seed=seed)
        for part in chunk(x, [3, 9, 1, 7]):
            stats.update(part)
        kept = stats.reservoir[:, 0].astype(int)
        assert kept.shape == (5,) and len(set(kept)) == 5
        counts[kept] += 1
    # Algorithm R keeps every row with probability cap / N = 0.25 (binomial sd ≈ 0.0097).
    np.testing.assert_allclose(counts / trials, 0.25, atol=0.045)
