"""Fréchet distance between two Gaussians, without ``scipy.linalg.sqrtm``.

    d² = ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

(Dowson & Landau 1982; used as FID by Heusel et al. 2017, "GANs Trained by a Two Time-Scale
Update Rule Converge to a Local Nash Equilibrium", eq. 6.)

Why not ``sqrtm``: it computes the full (complex) Schur form of the non-symmetric product S1 S2,
which is slow at 2048-d and leaks small imaginary parts that callers must strip. Only the *trace*
of the square root is needed, and for PSD S1, S2:

    eig(S1 S2) = eig(S1^½ S2 S1^½)          (similar matrices, S1^½ S1^½ = S1)

and the right-hand side is symmetric PSD, so ``tr sqrt(S1 S2) = Σ sqrt(λ_i)`` with λ from a
symmetric eigen-solver (``eigh``/``eigvalsh``), which is real, stable and several times faster.
With S1 = V diag(w) Vᵀ we use the orthogonally similar M = diag(√w) Vᵀ S2 V diag(√w), which
saves one D×D matrix product.
"""

from __future__ import annotations

import numpy as np

__all__ = ["frechet_distance", "trace_sqrt_product"]


def _as_stats(mu: np.ndarray, sigma: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    mu = np.asarray(mu, dtype=np.float64)
    sigma = np.asarray(sigma, dtype=np.float64)
    if mu.ndim != 1:
        raise ValueError(f"mu{name} must be a 1-D mean vector (D,), got shape {mu.shape}")
    d = mu.shape[0]
    if sigma.shape != (d, d):
        raise ValueError(f"sigma{name} must be a ({d}, {d}) covariance matching mu{name} (D={d}), got shape {sigma.shape}")
    if not (np.isfinite(mu).all() and np.isfinite(sigma).all()):
        raise ValueError(f"mu{name}/sigma{name} contain NaN or inf")
    return mu, sigma


def _psd_sqrt_factor(sigma: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(V, √w) with sigma = V diag(w) Vᵀ; tiny negative eigenvalues from rounding are clipped to 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) * 0.5)  # eigh reads one triangle: symmetrise first
    return v, np.sqrt(np.clip(w, 0.0, None))


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """tr sqrt(sigma1 @ sigma2) for symmetric PSD (D, D) matrices, via two symmetric eigen-solves."""
    v, s = _psd_sqrt_factor(sigma1)
    m = (v.T @ sigma2 @ v) * s[:, None] * s[None, :]  # diag(s) Vᵀ S2 V diag(s), (D, D)
    lam = np.linalg.eigvalsh((m + m.T) * 0.5)
    return float(np.sqrt(np.clip(lam, 0.0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """Squared Fréchet distance between N(mu1, sigma1) and N(mu2, sigma2), float64.

    mu: (D,), sigma: (D, D) symmetric PSD (e.g. ``np.cov(feats, rowvar=False)``).
    The result is clipped at 0: it is a squared distance, and for identical statistics rounding
    can otherwise leave a value like -1e-12.
    """
    mu1, sigma1 = _as_stats(mu1, sigma1, "1")
    mu2, sigma2 = _as_stats(mu2, sigma2, "2")
    if mu1.shape != mu2.shape:
        raise ValueError(f"feature dimensions differ: mu1 has D={mu1.shape[0]}, mu2 has D={mu2.shape[0]}")
    diff = mu1 - mu2
    value = diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * trace_sqrt_product(sigma1, sigma2)
    return max(float(value), 0.0)
