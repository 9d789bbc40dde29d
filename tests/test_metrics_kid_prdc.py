"""KID and precision/recall/density/coverage against brute-force references."""

import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from ganmodels.metrics import density_coverage, kid, precision_recall
from ganmodels.metrics.kid import mmd2_unbiased
from ganmodels.metrics.prdc import knn_radii


# --------------------------------------------------------------------------------------------
# KID
# --------------------------------------------------------------------------------------------
def mmd2_loops(x, y):
    """Unbiased MMD² (Gretton et al. 2012, eq. 3) with the cubic kernel, written as plain loops."""
    d = x.shape[1]
    k = lambda a, b: (float(a @ b) / d + 1.0) ** 3  # noqa: E731
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_mmd2_matches_loops():
    rng = np.random.default_rng(0)
    x, y = rng.standard_normal((15, 5)), rng.standard_normal((12, 5)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(mmd2_loops(x, y), rel=1e-10)


def test_kid_with_whole_sets_is_the_full_estimate():
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((20, 4)), rng.standard_normal((20, 4)) * 2
    mean, std = kid(x, y, num_subsets=3, subset_size=1000)
    # A subset of all rows is a permutation, and the U-statistic is permutation invariant.
    assert mean == pytest.approx(mmd2_loops(x, y), rel=1e-10)
    assert std == pytest.approx(0.0, abs=1e-12)


def test_kid_same_vs_shifted():
    rng = np.random.default_rng(2)
    a, b = rng.standard_normal((1000, 32)), rng.standard_normal((1000, 32))
    same, same_std = kid(a, b, num_subsets=20, subset_size=500)
    shifted, _ = kid(a, b + 0.5, num_subsets=20, subset_size=500)
    assert abs(same) < 3 * same_std + 1e-3
    assert shifted > 50 * max(abs(same), 1e-4)


# --------------------------------------------------------------------------------------------
# PR / DC
# --------------------------------------------------------------------------------------------
def brute_force_prdc(real, fake, k_pr, k_dc):
    d_rr, d_ff, d_rf = cdist(real, real), cdist(fake, fake), cdist(real, fake)
    r_real = lambda k: np.sort(d_rr, axis=1)[:, k]  # noqa: E731  column 0 is the point itself
    r_fake = np.sort(d_ff, axis=1)[:, k_pr]
    precision = np.mean([any(d_rf[i, j] <= r_real(k_pr)[i] for i in range(len(real))) for j in range(len(fake))])
    recall = np.mean([any(d_rf[i, j] <= r_fake[j] for j in range(len(fake))) for i in range(len(real))])
    rd = r_real(k_dc)
    density = sum(d_rf[i, j] <= rd[i] for i in range(len(real)) for j in range(len(fake))) / (k_dc * len(fake))
    coverage = np.mean([d_rf[i].min() <= rd[i] for i in range(len(real))])
    return precision, recall, density, coverage


@pytest.mark.parametrize("chunk_size", [1, 7, 1024])
def test_prdc_matches_brute_force(chunk_size):
    rng = np.random.default_rng(3)
    real = rng.standard_normal((60, 3))
    fake = rng.standard_normal((45, 3)) * 1.3 + 0.4
    p, r = precision_recall(real, fake, k=3, chunk_size=chunk_size)
    d, c = density_coverage(real, fake, k=5, chunk_size=chunk_size)
    bp, br, bd, bc = brute_force_prdc(real, fake, 3, 5)
    assert (p, r, c) == pytest.approx((bp, br, bc), abs=1e-12)
    assert d == pytest.approx(bd, abs=1e-12)
    assert 0 < p < 1 and 0 < r < 1  # the case is not degenerate


def test_knn_radii():
    x = np.array([[0.0], [1.0], [3.0], [6.0]])
    np.testing.assert_allclose(knn_radii(x, 1), np.array([1, 1, 2, 3]) ** 2)
    np.testing.assert_allclose(knn_radii(x, 2), np.array([3, 2, 3, 5]) ** 2)
    with pytest.raises(ValueError, match="k must be"):
        knn_radii(x, 4)


def test_identical_and_disjoint_sets():
    rng = np.random.default_rng(4)
    x = rng.standard_normal((300, 16))
    assert precision_recall(x, x.copy()) == (1.0, 1.0)
    density, coverage = density_coverage(x, x.copy())
    assert coverage == 1.0 and 0.8 < density < 1.5
    far = x + 100.0
    assert precision_recall(x, far) == (0.0, 0.0)
    assert density_coverage(x, far) == (0.0, 0.0)
    with pytest.raises(ValueError, match="dimensions differ"):
        precision_recall(x, x[:, :3])
