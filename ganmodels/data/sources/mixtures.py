"""``ring8`` and ``grid25``: the 2D Gaussian mixtures of the mode-collapse literature.

ring8: 8 modes at angles 2*pi*k/8 (k = 0..7) on the unit circle, std 0.01. Note that
``linspace(0, 2*pi, 8)`` would be wrong: it includes both 0 and 2*pi, the same mode, and so
yields 7 distinct modes at uneven spacing.
grid25: 25 modes on {-4, -2, 0, 2, 4}^2, std 0.05.
(Srivastava et al. 2017, VEEGAN, Sec. 5.1; Lin et al. 2018, PacGAN, Sec. 5.)

Each point picks a mode uniformly at random; its label is the mode index. Points are NOT
rescaled to [-1, 1]: mode-coverage metrics ("high-quality" = within 3 std of a mode) need the
true coordinates and std. The training set holds ``num_points`` points and the test set a
quarter as many, each from its own seeded stream (``split_seed``), so that the test points do
not depend on the training draws.
"""

from __future__ import annotations

import numpy as np

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind
from ganmodels.data.registry import register_dataset
from ganmodels.data.splits import STREAM_MIXTURE_TEST, STREAM_MIXTURE_TRAIN, seeded_rng

GRID_COORDS = (-4.0, -2.0, 0.0, 2.0, 4.0)


def ring8_means() -> np.ndarray:
    angles = 2.0 * np.pi * np.arange(8) / 8  # endpoint excluded: 8 distinct modes
    return np.stack([np.cos(angles), np.sin(angles)], axis=1)


def grid25_means() -> np.ndarray:
    xs, ys = np.meshgrid(GRID_COORDS, GRID_COORDS, indexing="ij")  # mode k = (x_{k // 5}, y_{k % 5})
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


MIXTURES = {
    "ring8": (ring8_means, 0.01),
    "grid25": (grid25_means, 0.05),
}


def mixture_spec(name: str) -> tuple[np.ndarray, float]:
    """Means ``(K, 2)`` float64 and the per-coordinate std of a registered 2D mixture."""
    if name not in MIXTURES:
        raise DataError(f"{name!r} is not a 2D Gaussian mixture; known mixtures: {', '.join(MIXTURES)}")
    make_means, std = MIXTURES[name]
    return make_means(), std


def mode_names(name: str, means: np.ndarray) -> list[str]:
    if name == "ring8":
        return [f"angle{45 * k:03d}" for k in range(len(means))]
    return [f"({x:g},{y:g})" for x, y in means]


def sample_mixture(means: np.ndarray, std: float, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """``n`` points ``(n, 2)`` float64 and their mode indices, modes picked uniformly."""
    # floor(u * K) from uniform doubles, not rng.integers: see splits.py on stream stability
    modes = np.minimum((rng.random(n) * len(means)).astype(np.int64), len(means) - 1)
    noise = rng.standard_normal((n, 2))
    return means[modes] + std * noise, modes


def read_mixture(cfg: DataConfig) -> SourceData:
    means, std = mixture_spec(cfg.name)
    n_train = min(cfg.num_points, cfg.max_samples) if cfg.max_samples else cfg.num_points
    n_test = max(1, n_train // 4)
    x_train, y_train = sample_mixture(means, std, n_train, seeded_rng(cfg.split_seed, STREAM_MIXTURE_TRAIN))
    x_test, y_test = sample_mixture(means, std, n_test, seeded_rng(cfg.split_seed, STREAM_MIXTURE_TEST))
    return SourceData(
        name=cfg.name,
        kind="points",
        samples=np.concatenate([x_train, x_test]),
        labels=np.concatenate([y_train, y_test]),
        ids=[f"{cfg.name}[train:{i}]" for i in range(n_train)] + [f"{cfg.name}[test:{i}]" for i in range(n_test)],
        value_range=(float(means.min() - 10 * std), float(means.max() + 10 * std)),  # 10 std: never hit
        class_names=mode_names(cfg.name, means),
        origin=f"synthetic mixture {cfg.name}, std {std}, seed {cfg.split_seed}",
        split=["train"] * n_train + ["test"] * n_test,
    )


@register_dataset("ring8", kind=DataKind.POINTS,
                  description="8 Gaussians on the unit circle, std 0.01 (2D points)")
def read_ring8(cfg: DataConfig) -> SourceData:
    return read_mixture(cfg)


@register_dataset("grid25", kind=DataKind.POINTS,
                  description="25 Gaussians on {-4,-2,0,2,4}^2, std 0.05 (2D points)")
def read_grid25(cfg: DataConfig) -> SourceData:
    return read_mixture(cfg)
