"""Speed and agreement of the eigen-route Fréchet distance vs the ``scipy.linalg.sqrtm`` route.

Covariances are built from random features (4096 samples, correlated through a random mixing
matrix, the second set shifted and rescaled) as FID statistics would be. Prints; asserts nothing.

    .venv/bin/python benchmarks/frechet_speed.py [--dim 2048] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import scipy.linalg

from ganmodels.metrics.frechet import frechet_distance, trace_sqrt_product


def sqrtm_frechet(mu1, s1, mu2, s2) -> float:
    """The pytorch-fid formula: general matrix square root of the product, real part of its trace."""
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def make_stats(dim: int, n: int = 4096, seed: int = 0):
    rng = np.random.default_rng(seed)
    mix = rng.standard_normal((dim, dim)) / np.sqrt(dim)
    a = np.maximum(rng.standard_normal((n, dim)) @ mix, 0)  # ReLU-like, as pool3 features are
    b = np.maximum(rng.standard_normal((n, dim)) @ mix * 1.1 + 0.05, 0)
    return a.mean(0), np.cov(a, rowvar=False), b.mean(0), np.cov(b, rowvar=False)


def _best_time(fn, repeats: int) -> tuple[float, float]:
    times, value = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - start)
    return min(times), value


def run(dim: int = 2048, repeats: int = 3, n: int = 4096) -> dict:
    """Times for full-rank covariances (n > dim: Cholesky path), plus the eigh fallback alone."""
    stats = make_stats(dim, n)
    t_eig, v_eig = _best_time(lambda: frechet_distance(*stats), repeats)
    t_sqrtm, v_sqrtm = _best_time(lambda: sqrtm_frechet(*stats), repeats)
    mu1, s1, mu2, s2 = stats
    t_eigh, v_trace = _best_time(lambda: trace_sqrt_product(s1, s2, method="eigh"), repeats)
    v_eigh = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * v_trace)
    return {
        "dim": dim,
        "n": n,
        "eigen_s": t_eig,
        "eigh_only_s": t_eigh,
        "sqrtm_s": t_sqrtm,
        "speedup": t_sqrtm / t_eig,
        "speedup_eigh_only": t_sqrtm / t_eigh,
        "eigen_value": v_eig,
        "sqrtm_value": v_sqrtm,
        "rel_diff": abs(v_eig - v_sqrtm) / abs(v_sqrtm),
        "rel_diff_eigh_only": abs(v_eigh - v_sqrtm) / abs(v_sqrtm),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    r = run(args.dim, args.repeats)
    print(f"Fréchet distance, {r['dim']}-d covariances from {r['n']} samples (best of {args.repeats}):")
    print(f"  eigen route (Cholesky + eigvalsh): {r['eigen_s']:.3f} s   value {r['eigen_value']:.9g}")
    print(f"  eigh fallback (eigh + eigvalsh):   {r['eigh_only_s']:.3f} s   rel. diff {r['rel_diff_eigh_only']:.2e}")
    print(f"  scipy sqrtm route:                 {r['sqrtm_s']:.3f} s   value {r['sqrtm_value']:.9g}")
    print(f"  speed-up {r['speedup']:.1f}x (eigh fallback {r['speedup_eigh_only']:.1f}x), relative difference {r['rel_diff']:.2e}")


if __name__ == "__main__":
    main()
