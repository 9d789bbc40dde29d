"""Precision/recall and density/coverage of generated features against real ones, via k-NN balls.

* Improved precision and recall (Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric
  for Assessing Generative Models", §2): each real sample gets a ball whose radius is the distance
  to its k-th nearest real neighbour (self excluded); precision is the share of generated samples
  inside at least one real ball. Recall swaps the roles (balls around generated samples). k = 3.
* Density and coverage (Naeem et al. 2020, "Reliable Fidelity and Diversity Metrics for
  Generative Models", eqs. 3-4): density = (1 / kM) Σ_j Σ_i 1[Y_j ∈ B(X_i, NND_k(X_i))], i.e. how
  many real balls contain each fake on average, divided by k (≈1 when the sets match, can exceed
  1); coverage = share of real balls that contain at least one fake. k = 5.

"Inside" is ``distance <= radius`` as in Kynkäänniemi et al.'s code. Distances are squared
Euclidean in float64, computed in row chunks so memory is O(chunk_size · N), never N².
Both papers evaluate equal-sized real and fake sets; callers should subsample to equal sizes.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np

from ganmodels.metrics.stats import as_numpy_features

__all__ = ["density_coverage", "knn_radii", "precision_recall"]

DEFAULT_CHUNK = 1024


def _prep(x) -> np.ndarray:
    return as_numpy_features(x).astype(np.float64, copy=False)


def _sq_dist_chunks(x: np.ndarray, y: np.ndarray, chunk_size: int) -> Iterator[tuple[slice, np.ndarray]]:
    """Yield (rows, D²) with D² the (len(rows), len(y)) squared distances of x[rows] to all of y."""
    y_sq = np.einsum("ij,ij->i", y, y)
    for start in range(0, x.shape[0], chunk_size):
        rows = slice(start, min(start + chunk_size, x.shape[0]))
        xc = x[rows]
        d2 = np.einsum("ij,ij->i", xc, xc)[:, None] + y_sq[None, :] - 2.0 * (xc @ y.T)
        yield rows, np.maximum(d2, 0.0)  # rounding can make |x - x|² slightly negative


def knn_radii(x, k: int, *, chunk_size: int = DEFAULT_CHUNK) -> np.ndarray:
    """(N, D) -> (N,) squared distance from each row to its k-th nearest *other* row."""
    x = _prep(x)
    if not 1 <= k < x.shape[0]:
        raise ValueError(f"k must be in [1, N - 1] for N={x.shape[0]} samples, got k={k}")
    radii = np.empty(x.shape[0])
    for rows, d2 in _sq_dist_chunks(x, x, chunk_size):
        # Index 0 of the sorted row is the point itself (distance 0), so the k-th neighbour is at k.
        radii[rows] = np.partition(d2, k, axis=1)[:, k]
    return radii


def _share_inside_any_ball(points: np.ndarray, centres: np.ndarray, radii2: np.ndarray, chunk_size: int) -> float:
    inside = np.zeros(points.shape[0], dtype=bool)
    for rows, d2 in _sq_dist_chunks(points, centres, chunk_size):
        inside[rows] = (d2 <= radii2[None, :]).any(axis=1)
    return float(inside.mean())


def precision_recall(real, fake, k: int = 3, *, chunk_size: int = DEFAULT_CHUNK) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019) of ``fake`` (M, D) w.r.t. ``real`` (N, D)."""
    real, fake = _prep(real), _prep(fake)
    _check_dims(real, fake)
    precision = _share_inside_any_ball(fake, real, knn_radii(real, k, chunk_size=chunk_size), chunk_size)
    recall = _share_inside_any_ball(real, fake, knn_radii(fake, k, chunk_size=chunk_size), chunk_size)
    return precision, recall


def density_coverage(real, fake, k: int = 5, *, chunk_size: int = DEFAULT_CHUNK) -> tuple[float, float]:
    """Density and coverage (Naeem et al. 2020) of ``fake`` (M, D) w.r.t. ``real`` (N, D)."""
    real, fake = _prep(real), _prep(fake)
    _check_dims(real, fake)
    radii2 = knn_radii(real, k, chunk_size=chunk_size)  # (N,)
    balls_per_fake = np.zeros(fake.shape[0])
    for rows, d2 in _sq_dist_chunks(fake, real, chunk_size):
        balls_per_fake[rows] = (d2 <= radii2[None, :]).sum(axis=1)
    density = float(balls_per_fake.sum() / (k * fake.shape[0]))
    covered = np.zeros(real.shape[0], dtype=bool)
    for rows, d2 in _sq_dist_chunks(real, fake, chunk_size):
        covered[rows] = d2.min(axis=1) <= radii2[rows]
    return density, float(covered.mean())


def _check_dims(real: np.ndarray, fake: np.ndarray) -> None:
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature dimensions differ: real {real.shape} vs fake {fake.shape}")
