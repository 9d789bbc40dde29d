"""Kernel Inception Distance (Bińkowski, Sutherland, Arbel & Gretton 2018, "Demystifying MMD GANs").

KID is the squared MMD between two feature distributions under the cubic polynomial kernel

    k(x, y) = (xᵀy / d + 1)³                                   (paper §4, d = feature dimension)

estimated with the unbiased U-statistic (Gretton et al. 2012, eq. 3) on random subsets of m rows
from each set, averaged over subsets. Unlike FID its estimator is unbiased, so values from
different sample counts are comparable and a value near 0 (possibly slightly negative) means
"indistinguishable". Works on any features (Inception or the domain classifier's).
"""

from __future__ import annotations

import numpy as np

from ganmodels.metrics.stats import as_numpy_features

__all__ = ["kid", "mmd2_unbiased", "polynomial_kernel"]


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """(n, d), (m, d) -> (n, m) kernel matrix (xᵀy / d + coef0)^degree, float64."""
    k = x @ y.T
    k /= x.shape[1]
    k += coef0
    if degree == 3:  # np.power has no fast path for 3; two in-place products are ~10x quicker
        k3 = k * k
        k3 *= k
        return k3
    return k**degree


def mmd2_unbiased(x: np.ndarray, y: np.ndarray, degree: int = 3) -> float:
    """Unbiased MMD² between samples x (m, d) and y (n, d): within-set sums exclude the diagonal."""
    m, n = x.shape[0], y.shape[0]
    if m < 2 or n < 2:
        raise ValueError(f"unbiased MMD needs at least 2 samples per set, got {m} and {n}")
    kxx = polynomial_kernel(x, x, degree)
    kyy = polynomial_kernel(y, y, degree)
    kxy = polynomial_kernel(x, y, degree)
    term_xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    term_yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(term_xx + term_yy - 2.0 * kxy.mean())


def kid(
    feats_a,
    feats_b,
    *,
    num_subsets: int = 100,
    subset_size: int = 1000,
    degree: int = 3,
    seed: int = 0,
) -> tuple[float, float]:
    """KID between (N_a, D) and (N_b, D) features -> (mean, std) over ``num_subsets`` subsets.

    Each subset draws min(subset_size, N_a, N_b) rows without replacement from each set (as the
    reference implementation and stylegan2-ada's ``kernel_inception_distance.py`` do).
    """
    a = as_numpy_features(feats_a).astype(np.float64, copy=False)
    b = as_numpy_features(feats_b).astype(np.float64, copy=False)
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"feature dimensions differ: {a.shape} vs {b.shape}")
    m = min(subset_size, a.shape[0], b.shape[0])
    rng = np.random.default_rng(seed)
    values = np.empty(num_subsets)
    for i in range(num_subsets):
        xa = a[rng.choice(a.shape[0], m, replace=False)]
        xb = b[rng.choice(b.shape[0], m, replace=False)]
        values[i] = mmd2_unbiased(xa, xb, degree)
    return float(values.mean()), float(values.std())
