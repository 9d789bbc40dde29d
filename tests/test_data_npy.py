"""npy arrays: every accepted layout, declared ranges, sibling labels, refusals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ganmodels.data import DataConfig, DataError, load_dataset, prepare, read_source


def write(tmp_path: Path, array: np.ndarray, labels: np.ndarray | None = None, stem: str = "set") -> str:
    path = tmp_path / f"{stem}.npy"
    np.save(path, array)
    if labels is not None:
        np.save(tmp_path / f"{stem}.labels.npy", labels)
    return str(path)


def cfg(path: str, **kw) -> DataConfig:
    return DataConfig(name="npy", root=path, **kw)


def test_nhw_uint8(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, (10, 8, 8), dtype=np.uint8)
    src = read_source(cfg(write(tmp_path, arr)))
    assert src.kind == "image" and src.value_range == (0.0, 255.0) and src.labels is None
    assert src.ids[3] == "set.npy[all:3]" and src.samples[3].dtype == np.uint8
    np.testing.assert_array_equal(np.stack(src.samples), arr)
    d = load_dataset(cfg(write(tmp_path, arr), resolution=8))
    ref = torch.from_numpy((arr.astype(np.float64) / 127.5 - 1.0).astype(np.float32))[:, None]
    x = torch.cat([d.x_train, d.x_test])
    assert all(any(torch.allclose(xi, ri, atol=1e-6) for ri in ref) for xi in x)
    assert len(d.x_test) == 2


def test_nchw_float_in_unit_range(tmp_path):
    arr = np.random.default_rng(1).random((6, 3, 10, 10)).astype(np.float32)
    src = read_source(cfg(write(tmp_path, arr)))
    assert src.value_range == (0.0, 1.0) and src.samples[0].shape == (10, 10, 3)  # (H, W, C) in SourceData
    np.testing.assert_array_equal(src.samples[2], arr[2].transpose(1, 2, 0))
    d = load_dataset(cfg(write(tmp_path, arr), resolution=10, test_fraction=0.5))
    assert d.x_train.shape == (3, 3, 10, 10)
    x = torch.cat([d.x_train, d.x_test])
    ref = torch.from_numpy(arr * 2.0 - 1.0)
    assert all(any(torch.allclose(xi, ri, atol=1e-6) for ri in ref) for xi in x)


def test_nhwc_with_string_labels(tmp_path):
    arr = np.random.default_rng(2).integers(0, 256, (8, 6, 6, 3), dtype=np.uint8)
    labels = np.array(["zebra", "ant"] * 4)
    src = read_source(cfg(write(tmp_path, arr, labels)))
    assert src.class_names == ["ant", "zebra"] and src.labels.tolist() == [1, 0] * 4
    d = load_dataset(cfg(write(tmp_path, arr, labels), resolution=4, test_fraction=0.25))
    assert d.x_train.shape == (6, 3, 4, 4) and sorted(d.y_test.tolist()) == [0, 1]


def test_float_range_declaration(tmp_path):
    rng = np.random.default_rng(3)
    signed = rng.uniform(-1, 1, (4, 5, 5))
    assert read_source(cfg(write(tmp_path, signed, stem="a"))).value_range == (-1.0, 1.0)
    as_float_bytes = rng.integers(0, 256, (4, 5, 5)).astype(np.float64)
    as_float_bytes[0, 0, 0] = 255.0
    assert read_source(cfg(write(tmp_path, as_float_bytes, stem="b"))).value_range == (0.0, 255.0)
    wide = rng.uniform(-3, 700, (4, 5, 5))
    assert read_source(cfg(write(tmp_path, wide, stem="c"))).value_range == (wide.min(), wide.max())


def test_points(tmp_path):
    pts = np.random.default_rng(4).normal(5.0, 3.0, (40, 2))
    src = read_source(cfg(write(tmp_path, pts)))
    assert src.kind == "points" and src.value_range == (pts.min(), pts.max())
    d = load_dataset(cfg(write(tmp_path, pts)))
    assert d.kind == "points" and d.x_train.shape == (32, 2) and d.x_test.shape == (8, 2)
    both = torch.cat([d.x_train, d.x_test])
    assert torch.equal(torch.sort(both[:, 0]).values, torch.sort(torch.from_numpy(pts[:, 0].astype(np.float32))).values)


def test_nan_passes_read_but_not_prepare(tmp_path):
    arr = np.random.default_rng(5).random((5, 4, 4))
    arr[2, 1, 1] = np.nan
    c = cfg(write(tmp_path, arr), resolution=4)
    src = read_source(c)  # the validation stage must see the NaN, so reading does not refuse it
    assert np.isnan(src.samples[2]).any() and src.value_range == (0.0, 1.0)
    with pytest.raises(DataError, match=r"set\.npy\[all:2\]"):
        prepare(src, c)


@pytest.mark.parametrize("shape", [(5,), (5, 3), (5, 2, 4, 4, 1), (5, 2, 8, 8)])
def test_bad_shapes(tmp_path, shape):
    with pytest.raises(DataError, match="accepted"):
        read_source(cfg(write(tmp_path, np.zeros(shape, np.uint8))))


def test_bad_labels_and_missing_file(tmp_path):
    path = write(tmp_path, np.zeros((4, 4, 4), np.uint8), labels=np.zeros(3, np.int64))
    with pytest.raises(DataError, match="labels"):
        read_source(cfg(path))
    with pytest.raises(DataError, match="existing .npy"):
        read_source(cfg(str(tmp_path / "absent.npy")))


def test_pickled_arrays_are_refused(tmp_path):
    path = tmp_path / "obj.npy"
    np.save(path, np.array([{"a": 1}] * 3, dtype=object), allow_pickle=True)
    with pytest.raises(DataError, match="obj.npy"):
        read_source(cfg(str(path)))
