"""The hand-written resize and the seeded splits, against independent references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from ganmodels.data import DataError
from ganmodels.data.imaging import center_crop_square, luma, prepare_images, resize_axis
from ganmodels.data.splits import allocate, cap_indices, train_test_split


def resize2d(x: np.ndarray, size: int) -> np.ndarray:
    return resize_axis(resize_axis(x, size, axis=-2), size, axis=-1)


@pytest.mark.parametrize("src, dst", [(8, 32), (28, 32), (32, 32), (33, 32), (64, 32), (100, 7), (5, 64), (300, 16)])
def test_resize_matches_torch_interpolate(src, dst):
    x = np.random.default_rng(src * 1000 + dst).random((2, 3, src, src))
    ref = F.interpolate(torch.from_numpy(x), size=(dst, dst), mode="bilinear", antialias=dst < src, align_corners=False)
    np.testing.assert_allclose(resize2d(x, dst), ref.numpy(), rtol=0, atol=1e-12)


@pytest.mark.parametrize("src, dst", [(8, 32), (64, 32), (100, 7)])
def test_resize_matches_pil_bilinear(src, dst):
    x = np.random.default_rng(src + dst).random((src, src)).astype(np.float32)
    ref = np.asarray(Image.fromarray(x, mode="F").resize((dst, dst), Image.BILINEAR))
    np.testing.assert_allclose(resize2d(x.astype(np.float64), dst), ref, rtol=0, atol=1e-6)


def test_resize_preserves_constants_and_is_exactly_repeatable():
    x = np.full((1, 1, 37, 37), 0.25)
    np.testing.assert_allclose(resize2d(x, 16), 0.25, rtol=0, atol=1e-15)  # weights sum to 1
    y = np.random.default_rng(0).random((3, 1, 45, 45))
    assert resize2d(y, 32).tobytes() == resize2d(y.copy(), 32).tobytes()


def test_center_crop_and_luma():
    x = np.arange(2 * 3 * 4 * 6, dtype=np.float64).reshape(2, 3, 4, 6)
    np.testing.assert_array_equal(center_crop_square(x), x[..., :, 1:5])
    rgb = np.random.default_rng(1).integers(0, 256, (1, 3, 5, 5)).astype(np.float64)
    pil = np.asarray(Image.fromarray(rgb[0].transpose(1, 2, 0).astype(np.uint8), "RGB").convert("L"), np.float64)
    assert np.abs(luma(rgb)[0, 0] - pil).max() <= 0.5 + 1e-9  # PIL rounds to integers


def test_prepare_images_refuses_out_of_range_values():
    good = np.zeros((4, 4), np.uint8)
    with pytest.raises(DataError, match="bad-one"):
        prepare_images([good, np.full((4, 4), 20.0)], ["ok", "bad-one"], (0.0, 16.0), 4, 1)


def test_allocate_is_exact_and_proportional():
    assert allocate(3, np.array([10, 10, 10])).tolist() == [1, 1, 1]
    assert allocate(2, np.array([1, 5, 4])).tolist() == [0, 1, 1]
    q = allocate(359, np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]))
    assert q.sum() == 359 and np.all(np.abs(q - 359 * np.array([178, 182, 177, 183, 181, 182, 181, 179, 174, 180]) / 1797) < 1)


def test_split_partitions_and_depends_only_on_seed():
    labels = np.repeat(np.arange(3), [10, 20, 30])
    train, test = train_test_split(labels, 60, 0.25, seed=7)
    assert len(test) == 15 and np.array_equal(np.sort(np.concatenate([train, test])), np.arange(60))
    assert np.bincount(labels[test]).tolist() == [3, 5, 7]  # quotas 2.5, 5, 7.5: the tie goes to the lower class
    np.random.seed(0)
    again = train_test_split(labels, 60, 0.25, seed=7)
    assert np.array_equal(again[1], test)
    assert not np.array_equal(train_test_split(labels, 60, 0.25, seed=8)[1], test)


def test_cap_unlabelled_and_no_cap():
    assert np.array_equal(cap_indices(None, None, 10, None, 0), np.arange(10))
    picked = cap_indices(None, None, 100, 10, 0)
    assert len(picked) == 10 and len(set(picked.tolist())) == 10 and np.all(np.diff(picked) > 0)
