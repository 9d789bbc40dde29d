"""Streaming feature statistics: mean, covariance and an optional capped reservoir of raw rows.

Mean and covariance use Chan, Golub & LeVeque's pairwise update ("Updating formulae and a pairwise
algorithm for computing sample variances", 1979): each batch contributes its own mean and centred
scatter matrix, merged in float64. Unlike accumulating Σx and Σxxᵀ this does not cancel
catastrophically when the mean is large relative to the spread, and memory is O(D²) whatever the
number of samples.

KID and precision/recall/density/coverage need raw feature rows, not moments. ``FeatureStats`` can
keep a uniform random subset of them (reservoir sampling, Vitter 1985 "Algorithm R") capped at
``reservoir_size`` rows, so one pass over a large set yields both the Fréchet statistics and a
bounded sample for the k-NN / kernel metrics. The reservoir is stored in float32 (features come
from float32 networks, and it halves memory: 10k × 2048 rows take 80 MB). With ``reservoir_size=0``
(the default) nothing but the moments is kept.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from ganmodels.io import atomic_write
from ganmodels.metrics.frechet import frechet_distance

__all__ = ["FeatureStats", "as_numpy_features"]


def as_numpy_features(feats: torch.Tensor | np.ndarray) -> np.ndarray:
    """(N, D) torch or numpy -> numpy (float dtype kept where it is a float)."""
    if isinstance(feats, torch.Tensor):
        feats = feats.detach().cpu().numpy()
    feats = np.asarray(feats)
    if feats.ndim != 2:
        raise ValueError(f"features must be 2-D (N, D), got shape {feats.shape}")
    return feats


class FeatureStats:
    """Running mean/covariance of (N, D) feature batches; ``cov`` matches ``np.cov(rowvar=False)``."""

    def __init__(self, dim: int | None = None, *, reservoir_size: int = 0, seed: int = 0):
        self.dim = dim
        self.reservoir_size = int(reservoir_size)
        self.seed = int(seed)
        self.n = 0
        self._mean: np.ndarray | None = None  # (D,) float64
        self._m2: np.ndarray | None = None  # (D, D) float64, Σ (x - mean)(x - mean)ᵀ
        self._reservoir: np.ndarray | None = None  # (min(n, cap), D) float32

    # -- accumulation -------------------------------------------------------------------------
    def update(self, feats: torch.Tensor | np.ndarray) -> "FeatureStats":
        x = as_numpy_features(feats)
        if self.dim is None:
            self.dim = x.shape[1]
        if x.shape[1] != self.dim:
            raise ValueError(f"feature dimension changed: expected D={self.dim}, got batch of shape {x.shape}")
        if x.shape[0] == 0:
            return self
        if not np.isfinite(x).all():
            raise ValueError("features contain NaN or inf")
        self._update_reservoir(x)
        self._merge_moments(x.astype(np.float64, copy=False))
        return self

    def _merge_moments(self, x: np.ndarray) -> None:
        nb = x.shape[0]
        mb = x.mean(axis=0)
        xc = x - mb
        m2b = xc.T @ xc  # (D, D)
        if self.n == 0:
            self.n, self._mean, self._m2 = nb, mb, m2b
            return
        n = self.n + nb
        delta = mb - self._mean
        self._mean = self._mean + delta * (nb / n)
        self._m2 = self._m2 + m2b + np.outer(delta, delta) * (self.n * nb / n)
        self.n = n

    def _update_reservoir(self, x: np.ndarray) -> None:
        cap = self.reservoir_size
        if cap <= 0:
            return
        x = x.astype(np.float32, copy=False)
        if self._reservoir is None:
            self._reservoir = np.empty((0, x.shape[1]), np.float32)
        fill = max(0, min(cap - self._reservoir.shape[0], x.shape[0]))
        if fill:
            self._reservoir = np.concatenate([self._reservoir, x[:fill]])
        # Algorithm R: row number t (0-based, global) replaces slot j ~ U{0..t} when j < cap.
        t = self.n + np.arange(fill, x.shape[0])
        # Draws depend only on (seed, rows seen so far): a saved and reloaded accumulator
        # continues exactly as an uninterrupted one would.
        rng = np.random.default_rng([self.seed, self.n])
        slots = rng.integers(0, t + 1) if t.size else t
        for row, slot in zip(np.nonzero(slots < cap)[0], slots[slots < cap]):
            self._reservoir[slot] = x[fill + row]  # sequential: a later row wins a shared slot

    # -- results --------------------------------------------------------------------------------
    @property
    def mean(self) -> np.ndarray:
        self._require(1)
        return self._mean.copy()

    @property
    def cov(self) -> np.ndarray:
        """Unbiased (divide by n - 1) covariance, (D, D) float64."""
        self._require(2)
        return self._m2 / (self.n - 1)

    @property
    def reservoir(self) -> np.ndarray:
        """The kept raw rows, (min(n, reservoir_size), D) float32; empty when reservoir_size == 0."""
        if self._reservoir is None:
            return np.empty((0, self.dim or 0), np.float32)
        return self._reservoir.copy()

    def frechet_distance(self, other: "FeatureStats") -> float:
        return frechet_distance(self.mean, self.cov, other.mean, other.cov)

    def _require(self, n: int) -> None:
        if self.n < n:
            raise ValueError(f"FeatureStats holds {self.n} samples; at least {n} needed")

    # -- persistence ----------------------------------------------------------------------------
    def save(self, path: str | os.PathLike) -> None:
        """Write a .npz atomically (temp file in the same directory + fsync + os.replace)."""
        self._require(1)
        arrays = {
            "n": np.int64(self.n),
            "dim": np.int64(self.dim),
            "mean": self._mean,
            "m2": self._m2,
            "reservoir_size": np.int64(self.reservoir_size),
            "seed": np.int64(self.seed),
            "reservoir": self.reservoir,
        }
        with atomic_write(path) as f:
            np.savez(f, **arrays)  # a file object: numpy does not append ".npz"

    @classmethod
    def load(cls, path: str | os.PathLike) -> "FeatureStats":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature statistics not found: {path}")
        with np.load(path, allow_pickle=False) as z:
            stats = cls(int(z["dim"]), reservoir_size=int(z["reservoir_size"]), seed=int(z["seed"]))
            stats.n = int(z["n"])
            stats._mean = z["mean"].astype(np.float64)
            stats._m2 = z["m2"].astype(np.float64)
            stats._reservoir = z["reservoir"].astype(np.float32) if stats.reservoir_size > 0 else None
        return stats

    def __repr__(self) -> str:
        return f"FeatureStats(n={self.n}, dim={self.dim}, reservoir={0 if self._reservoir is None else len(self._reservoir)})"
