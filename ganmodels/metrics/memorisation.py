"""Memorisation metrics: is a generator replaying its training data?

Both work on feature arrays (N, D) (the evaluation's feature space: here the domain classifier's
embedding), so they are plain numpy functions, testable without a model. Distances are Euclidean.

* Authenticity (Alaa et al. 2022, "How Faithful is your Synthetic Data? Sample-level Metrics for
  Evaluating and Auditing Generative Models", ICML): for a generated sample g let x* be its
  nearest training sample; g is *authentic* when d(g, x*) > d(x*, NN(x*)), the distance from x* to
  its own nearest *other* training sample, i.e. g lies further from x* than x*'s training
  neighbourhood does. Authenticity is the share of authentic generated samples (higher is better).
  A verbatim copy has d(g, x*) = 0 and is never authentic, so a generator that returns training
  samples scores 0. A fresh draw from the data distribution is inauthentic exactly when it and x*
  are mutual nearest neighbours, so for locally uniform data authenticity tends to 1 - V_d / V_∪,
  V_∪ the volume of two unit balls whose centres are 1 apart: 1/3 in one dimension, 0.38 in two,
  towards 0.5 in many (Pickard 1982, "Isolated nearest neighbors", J. Appl. Prob.); where the data
  are sparse at the nearest-neighbour scale it is higher (about 0.7 for 16-d Gaussians with 1,000
  training rows, 0.5-0.6 for the digits' held-out images in the domain features).
* The data-copying test C_T (Meehan, Chaudhuri & Dasgupta 2020, "A Non-Parametric Test to Detect
  Data-Copying in Generative Models", AISTATS): partition the space into cells by k-means on
  the training features; in each cell compare the distances to the nearest training sample of the
  generated samples with those of held-out (test) samples by the Mann-Whitney U statistic as a
  Z-score; C_T is the average of the per-cell Z weighted by each cell's share of test samples.
  Z < 0 means generated samples sit closer to the training data than unseen real data does:
  strongly negative C_T is data-copying, about 0 is what an independent sample of the data
  distribution gives, positive is underfitting (which the quality metrics judge).

Choices for C_T, following the authors' reference implementation
(github.com/casey-meehan/data-copying, ``data_copying_tests.py``) unless said otherwise:
* distances are to the nearest training sample *in the same cell*, as their ``Zu_cells`` does;
* small cells: only cells holding more than ``min_generated`` = 20 generated samples count: their
  Π_τ = {π : Q_m(π) > τ} (strict, as in their ``C_T``) with τ = 20/m, the value layer6ai's
  dgm-eval (Stein et al. 2023) passes to their code; the normal approximation of U is poor for
  tiny samples, and a cell the generator hardly visits says little about copying;
* a cell with no test sample has weight P_n(π) = 0 and no defined Z: it is skipped (their code
  refuses such a partition instead);
* Z uses the tie-corrected variance of U and no continuity correction (their code: untied
  variance, mean shifted by 0.5). Exact copies make ties (distance 0), and the tie-corrected
  variance is the exact variance of U under H0 given those ties (the standard correction, e.g.
  Lehmann, "Nonparametrics", 1975, ch. 1); ``scipy.stats.mannwhitneyu(method="asymptotic",
  use_continuity=False)`` uses the same, and the tests compare with it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ganmodels.metrics.prdc import DEFAULT_CHUNK, _sq_dist_chunks
from ganmodels.metrics.stats import as_numpy_features

__all__ = ["DataCopyingTest", "authenticity", "data_copying_test", "mann_whitney_z", "nearest_neighbours"]


def _prep(x) -> np.ndarray:
    return as_numpy_features(x).astype(np.float64, copy=False)


def nearest_neighbours(queries, reference, *, exclude_self: bool = False,
                       chunk_size: int = DEFAULT_CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(distance (N,), index (N,)) of each query row's nearest ``reference`` row.

    exclude_self: ``queries`` is ``reference`` and row i may not be its own neighbour (an exact
    duplicate elsewhere in the set still counts, at distance 0). The neighbour is found on the
    squared-distance expansion in row chunks (O(chunk_size · M) memory); its distance is then
    recomputed as ``||q - r||`` directly, so an exact copy is at distance 0.0, not at rounding noise.
    """
    q, r = _prep(queries), _prep(reference)
    if q.shape[1] != r.shape[1]:
        raise ValueError(f"feature dimensions differ: {q.shape} vs {r.shape}")
    if exclude_self and q.shape[0] != r.shape[0]:
        raise ValueError("exclude_self needs queries and reference to be the same rows")
    if r.shape[0] < (2 if exclude_self else 1):
        raise ValueError(f"need at least {2 if exclude_self else 1} reference rows, got {r.shape[0]}")
    index = np.empty(q.shape[0], dtype=np.int64)
    for rows, d2 in _sq_dist_chunks(q, r, chunk_size):
        if exclude_self:
            local = np.arange(rows.stop - rows.start)
            d2[local, rows.start + local] = np.inf
        index[rows] = d2.argmin(axis=1)
    return np.linalg.norm(q - r[index], axis=1), index


def authenticity(train, generated, *, chunk_size: int = DEFAULT_CHUNK) -> float:
    """Share of ``generated`` (M, D) rows that are authentic w.r.t. ``train`` (N, D) (Alaa et al. 2022).

    Row g is authentic when d(g, x*) > d(x*, NN_train(x*)), x* its nearest training row (strict:
    a copy of a training row that has an exact duplicate in the training set is not authentic).
    """
    train, generated = _prep(train), _prep(generated)
    radius, _ = nearest_neighbours(train, train, exclude_self=True, chunk_size=chunk_size)  # (N,)
    dist, nearest = nearest_neighbours(generated, train, chunk_size=chunk_size)  # (M,), (M,)
    return float(np.mean(dist > radius[nearest]))


def _midranks(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1-based ranks with tied values given the mean of their ranks, and the tie-group sizes."""
    order = np.argsort(values, kind="stable")
    _, first, counts = np.unique(values[order], return_index=True, return_counts=True)
    ranks = np.empty(len(values))
    ranks[order] = np.repeat(first + (counts + 1) / 2.0, counts)  # group at sorted positions first..first+t-1
    return ranks, counts


def mann_whitney_z(x, y) -> tuple[float, float]:
    """(U, Z) of the Mann-Whitney test of samples ``x`` (n1,) against ``y`` (n2,).

    U = Σ_ij 1[x_i > y_j] + ½·1[x_i = y_j] (scipy's statistic for ``x``), from the pooled midranks:
    U = R_x - n1(n1 + 1)/2. Z = (U - n1·n2/2) / σ with the tie-corrected
    σ² = n1·n2/12 · ((N + 1) - Σ(t³ - t) / (N(N - 1))), N = n1 + n2, t the tie-group sizes; no
    continuity correction. Z < 0: ``x`` tends to be smaller than ``y``. All values tied: Z = 0.
    """
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError(f"both samples need values, got sizes {n1} and {n2}")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("Mann-Whitney U needs finite values")
    n = n1 + n2
    ranks, ties = _midranks(np.concatenate([x, y]))
    u = float(ranks[:n1].sum() - n1 * (n1 + 1) / 2.0)
    tie_term = float(np.sum(ties.astype(np.float64) ** 3 - ties)) / (n * (n - 1)) if n > 1 else 0.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    z = (u - n1 * n2 / 2.0) / np.sqrt(var) if var > 0 else 0.0
    return u, float(z)


@dataclass(frozen=True)
class DataCopyingTest:
    """The C_T test's result. c_t: the statistic (NaN when no cell qualifies). Per cell (k,):
    z (NaN where not computed), test_share P_n(π), n_generated, used (in Π_τ and holding test
    samples)."""

    c_t: float
    z: np.ndarray
    test_share: np.ndarray
    n_generated: np.ndarray
    used: np.ndarray


def data_copying_test(train, test, generated, *, n_cells: int = 10, min_generated: int = 20,
                      seed: int = 0, chunk_size: int = DEFAULT_CHUNK) -> DataCopyingTest:
    """C_T (Meehan et al. 2020) of ``generated`` (M, D) with training set ``train`` (N, D) and
    held-out ``test`` (L, D) from the data distribution.

    The cells are k-means (scikit-learn, ``n_init=10``, ``random_state=seed``) of the training
    rows into ``n_cells``; every row goes to its nearest centre. See the module docstring for the
    small-cell rule (``min_generated``) and the Z-score.
    """
    from sklearn.cluster import KMeans  # heavy import, only when used

    train, test, generated = _prep(train), _prep(test), _prep(generated)
    if not train.shape[1] == test.shape[1] == generated.shape[1]:
        raise ValueError(f"feature dimensions differ: train {train.shape}, test {test.shape}, "
                         f"generated {generated.shape}")
    if not 1 <= n_cells <= train.shape[0]:
        raise ValueError(f"n_cells must be in [1, {train.shape[0]}] (the training rows), got {n_cells}")
    if len(test) == 0 or len(generated) == 0:
        raise ValueError("the data-copying test needs test and generated samples")
    kmeans = KMeans(n_clusters=n_cells, n_init=10, random_state=seed).fit(train)
    cells = {"train": kmeans.labels_, "test": kmeans.predict(test), "gen": kmeans.predict(generated)}
    test_share = np.bincount(cells["test"], minlength=n_cells) / len(test)  # P_n(π)
    n_generated = np.bincount(cells["gen"], minlength=n_cells)
    z = np.full(n_cells, np.nan)
    for k in range(n_cells):
        train_k, test_k, gen_k = (train[cells["train"] == k], test[cells["test"] == k],
                                  generated[cells["gen"] == k])
        if n_generated[k] <= min_generated or len(test_k) == 0 or len(train_k) == 0:
            continue
        gen_dist, _ = nearest_neighbours(gen_k, train_k, chunk_size=chunk_size)
        test_dist, _ = nearest_neighbours(test_k, train_k, chunk_size=chunk_size)
        # U counts (generated, test) pairs where the generated sample is the further one from T.
        _, z[k] = mann_whitney_z(gen_dist, test_dist)
    used = ~np.isnan(z)
    weights = test_share[used]
    c_t = float(weights @ z[used] / weights.sum()) if used.any() else float("nan")
    return DataCopyingTest(c_t, z, test_share, n_generated, used)
