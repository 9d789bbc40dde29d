"""digits end to end: raw source untouched, prepared shapes/ranges/labels, split and hash stability."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from ganmodels.data import DataConfig, PreparedDataset, load_dataset, prepare, read_source


@pytest.fixture(scope="module")
def sk_digits():
    return load_digits()


@pytest.fixture(scope="module")
def digits32() -> PreparedDataset:
    return load_dataset(DataConfig(name="digits"))


def test_source_is_raw(sk_digits):
    src = read_source(DataConfig(name="digits"))
    assert len(src) == 1797 and src.kind == "image"
    assert src.value_range == (0.0, 16.0)
    assert src.class_names == [str(i) for i in range(10)]
    assert src.ids[0] == "digits[all:0]" and len(set(src.ids)) == 1797
    np.testing.assert_array_equal(np.stack(src.samples), sk_digits.images)  # native 8x8 float64, 0..16
    assert src.samples[0].dtype == np.float64
    np.testing.assert_array_equal(src.labels, sk_digits.target)


def test_prepared_shapes_range_and_split_sizes(digits32):
    d = digits32
    assert d.x_train.shape == (1438, 1, 32, 32) and d.x_test.shape == (359, 1, 32, 32)  # round(0.2 * 1797) = 359
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.int64
    assert d.x_train.min() == -1.0 and d.x_train.max() == 1.0  # 0 -> -1, 16 -> +1 survive bilinear upscaling
    assert d.num_classes == 10 and d.class_names == [str(i) for i in range(10)]
    assert d.config["resolution"] == 32


def test_images_keep_their_labels_at_native_resolution(sk_digits):
    # At 8x8 no resampling happens, so every prepared image must equal v / 8 - 1 of a source image
    # with the same label (an independent formula for the [0, 16] -> [-1, 1] scaling).
    d = load_dataset(DataConfig(name="digits", resolution=8))
    lookup: dict[bytes, set[int]] = {}
    for img, y in zip(sk_digits.images, sk_digits.target):
        lookup.setdefault((img / 8.0 - 1.0).astype(np.float32).tobytes(), set()).add(int(y))
    for x, y in [(d.x_train, d.y_train), (d.x_test, d.y_test)]:
        for img, label in zip(x[:, 0].numpy(), y.tolist()):
            assert label in lookup[img.tobytes()]
    # and train + test is a partition of the whole set
    assert len(d.x_train) + len(d.x_test) == 1797


def test_split_is_stratified(digits32):
    counts_all = np.bincount(np.concatenate([digits32.y_train.numpy(), digits32.y_test.numpy()]), minlength=10)
    counts_test = np.bincount(digits32.y_test.numpy(), minlength=10)
    assert np.all(np.abs(counts_test - 0.2 * counts_all) <= 1)  # largest-remainder quotas per class


def test_hash_is_stable_and_tracks_the_config(digits32):
    assert load_dataset(DataConfig(name="digits")).data_hash == digits32.data_hash
    # global RNG state must not leak into the data
    np.random.seed(123)
    torch.manual_seed(123)
    assert load_dataset(DataConfig(name="digits")).data_hash == digits32.data_hash
    others = {
        load_dataset(DataConfig(name="digits", resolution=16)).data_hash,
        load_dataset(DataConfig(name="digits", split_seed=1)).data_hash,
        load_dataset(DataConfig(name="digits", test_fraction=0.3)).data_hash,
    }
    assert digits32.data_hash not in others and len(others) == 3


def test_channels_3_repeats_grey(digits32):
    d3 = load_dataset(DataConfig(name="digits", channels=3))
    assert d3.x_train.shape == (1438, 3, 32, 32)
    for c in range(3):
        assert torch.equal(d3.x_train[:, c], digits32.x_train[:, 0])


def test_max_samples_caps_deterministically_and_stratified():
    cfg = DataConfig(name="digits", max_samples=200)
    a, b = load_dataset(cfg), load_dataset(cfg)
    assert len(a.x_train) + len(a.x_test) == 200
    assert a.data_hash == b.data_hash
    counts = np.bincount(np.concatenate([a.y_train.numpy(), a.y_test.numpy()]), minlength=10)
    full = np.bincount(load_digits().target, minlength=10)
    assert np.all(np.abs(counts - full * 200 / 1797) <= 1)


def test_prepare_is_separable_from_read(tmp_path, digits32):
    cfg = DataConfig(name="digits")
    d = prepare(read_source(cfg), cfg)
    path = tmp_path / "digits.pt"
    assert d.save(path) == digits32.data_hash
    assert PreparedDataset.load(path).data_hash == digits32.data_hash
