"""ring8 and grid25 against their closed forms (VEEGAN / PacGAN 2D benchmarks)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from ganmodels.data import DataConfig, DataError, load_dataset, mixture_spec, read_source

H = math.sqrt(0.5)
# Written out by hand: the 8 points of the unit circle at 45-degree steps, starting at angle 0.
RING8_CLOSED_FORM = np.array([(1, 0), (H, H), (0, 1), (-H, H), (-1, 0), (-H, -H), (0, -1), (H, -H)])


def test_ring8_spec_has_eight_distinct_modes_at_the_right_angles():
    means, std = mixture_spec("ring8")
    assert std == 0.01 and means.shape == (8, 2)
    np.testing.assert_allclose(means, RING8_CLOSED_FORM, atol=1e-12)
    assert len(np.unique(np.round(means, 6), axis=0)) == 8  # linspace(0, 2pi, 8) would give 7
    gaps = np.linalg.norm(means - np.roll(means, 1, axis=0), axis=1)
    np.testing.assert_allclose(gaps, 2 * math.sin(math.pi / 8), atol=1e-12)  # evenly spaced chord length


def test_grid25_spec_is_the_5x5_grid():
    means, std = mixture_spec("grid25")
    assert std == 0.05 and means.shape == (25, 2)
    expected = {(x, y) for x, y in itertools.product((-4, -2, 0, 2, 4), repeat=2)}
    assert {(float(x), float(y)) for x, y in means} == expected and len(np.unique(means, axis=0)) == 25


def test_unknown_mixture():
    with pytest.raises(DataError, match="ring8"):
        mixture_spec("ring7")


@pytest.mark.parametrize("name, k", [("ring8", 8), ("grid25", 25)])
def test_samples_sit_at_their_labelled_modes(name, k):
    means, std = mixture_spec(name)
    d = load_dataset(DataConfig(name=name, num_points=4000))
    assert d.kind == "points" and d.x_train.shape == (4000, 2) and d.x_test.shape == (1000, 2)
    assert d.x_train.dtype == torch.float32 and d.num_classes == k
    for x, y in [(d.x_train, d.y_train), (d.x_test, d.y_test)]:
        x, y = x.double().numpy(), y.numpy()
        dist = np.linalg.norm(x[:, None, :] - means[None], axis=2)  # (N, K)
        assert np.array_equal(dist.argmin(axis=1), y)  # nearest mode is the label
        offset = np.abs(x - means[y]) / std  # per-coordinate z-scores
        assert (offset < 4).all(axis=1).mean() > 0.99 and offset.max() < 6
        assert np.bincount(y, minlength=k).min() > 0  # every mode is populated
        # not rescaled to [-1, 1]: the true coordinates reach the outer modes
        assert np.abs(x).max() > 0.9 * np.abs(means).max()


def test_mixture_is_deterministic_and_seeded():
    a = load_dataset(DataConfig(name="grid25", num_points=500))
    b = load_dataset(DataConfig(name="grid25", num_points=500))
    c = load_dataset(DataConfig(name="grid25", num_points=500, split_seed=1))
    assert a.data_hash == b.data_hash != c.data_hash


def test_mixture_ids_and_split():
    src = read_source(DataConfig(name="ring8", num_points=40))
    assert src.ids[0] == "ring8[train:0]" and src.ids[40] == "ring8[test:0]" and len(src) == 50
    assert src.split.count("test") == 10
    lo, hi = src.value_range
    assert lo <= src.samples.min() and src.samples.max() <= hi
