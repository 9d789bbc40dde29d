"""Fréchet distance between two Gaussians, without ``scipy.linalg.sqrtm``.

    d² = ||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr sqrt(S1 S2)

(Dowson & Landau 1982; used as FID by Heusel et al. 2017, "GANs Trained by a Two Time-Scale
Update Rule Converge to a Local Nash Equilibrium", eq. 6.)

Why not ``sqrtm``: it computes the full (complex) Schur form of the non-symmetric product S1 S2,
which is slow at 2048-d and leaks small imaginary parts that callers must strip. Only the *trace*
of the square root is needed, and for PSD S1, S2:

    eig(S1 S2) = eig(S1^½ S2 S1^½)          (similar matrices, S1^½ S1^½ = S1)

and the right-hand side is symmetric PSD, so ``tr sqrt(S1 S2) = Σ sqrt(λ_i)`` with λ from a
symmetric eigen-solver (``eigvalsh``), which is real, stable and several times faster. Any factor
F with F Fᵀ = S1 gives the same spectrum (eig(Fᵀ S2 F) = eig(S2 F Fᵀ)), so S1^½ need not be formed:
we use the Cholesky factor when S1 is positive definite and V diag(√w) from ``eigh`` (tiny negative
eigenvalues clipped to 0) when it is singular.
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


def _sqrt_factor(sigma: np.ndarray, method: str) -> np.ndarray:
    """F (D, r) with F Fᵀ = sigma (D, D), by Cholesky when sigma is numerically PD, else by eigh.

    Cholesky costs about a fifth of a full eigendecomposition and is backward stable; it fails on
    singular or rounding-indefinite covariances (fewer samples than dimensions), where the
    eigendecomposition V diag(√w) over the positive part of the spectrum takes over.
    """
    sym = (sigma + sigma.T) * 0.5  # both solvers read one triangle: symmetrise first
    if method in ("auto", "cholesky"):
        try:
            return np.linalg.cholesky(sym)
        except np.linalg.LinAlgError:
            if method == "cholesky":
                raise
    w, v = np.linalg.eigh(sym)
    # Keep the numerical range only (the np.linalg.matrix_rank tolerance): dropped directions carry
    # rounding noise, not variance. With fewer samples than dimensions (FID on a few hundred
    # images: rank ≪ 2048) this makes F tall and thin, so the second eigen-solve is rank × rank.
    keep = w > w.max(initial=0.0) * sym.shape[0] * np.finfo(np.float64).eps
    return v[:, keep] * np.sqrt(w[keep])[None, :]  # (D, rank)


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray, method: str = "auto") -> float:
    """tr sqrt(sigma1 @ sigma2) for symmetric PSD (D, D) matrices.

    With F Fᵀ = sigma1, eig(sigma1 sigma2) = eig(Fᵀ sigma2 F) (similar up to a cyclic shift), and
    Fᵀ sigma2 F is symmetric PSD, so a symmetric eigenvalue solver gives the trace.
    method: "auto" (Cholesky, falling back to eigh), "cholesky" or "eigh".
    """
    if method not in ("auto", "cholesky", "eigh"):
        raise ValueError(f"method must be 'auto', 'cholesky' or 'eigh', got {method!r}")
    f = _sqrt_factor(sigma1, method)
    m = f.T @ sigma2 @ f  # (r, r), r = D or the numerical rank of sigma1
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
