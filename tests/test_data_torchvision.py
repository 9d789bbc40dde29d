"""MNIST, Fashion-MNIST and CIFAR-10 from tiny files written here in torchvision's on-disk layout."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ganmodels.data import DataConfig, DataError, load_dataset, read_source

MNIST_CLASSES = ["0 - zero", "1 - one", "2 - two", "3 - three", "4 - four",
                 "5 - five", "6 - six", "7 - seven", "8 - eight", "9 - nine"]  # fmt: skip
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]  # fmt: skip
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format (LeCun): magic = 0x00 0x00 <type 0x08 = ubyte> <ndim>, big-endian int32 dims, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_mnist(root: Path, folder: str, n_train: int = 12, n_test: int = 6, seed: int = 0):
    rng = np.random.default_rng(seed)
    parts = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        write_idx(root / folder / "raw" / f"{prefix}-images-idx3-ubyte", images)
        write_idx(root / folder / "raw" / f"{prefix}-labels-idx1-ubyte", labels)
        parts[prefix] = (images, labels)
    return parts


def write_cifar(root: Path, per_batch: int = 2, n_test: int = 3, seed: int = 0):
    """Pickled dicts as in the official archive: ``data`` uint8 (n, 3072) rows of R, G, B planes."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    images = {"train": [], "test": []}
    labels = {"train": [], "test": []}
    names = [(f"data_batch_{i}", "train", per_batch) for i in range(1, 6)] + [("test_batch", "test", n_test)]
    for name, part, n in names:
        hwc = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        ys = rng.integers(0, 10, n).tolist()
        rows = np.stack([np.concatenate([im[..., 0].ravel(), im[..., 1].ravel(), im[..., 2].ravel()]) for im in hwc])
        with open(folder / name, "wb") as f:
            pickle.dump({"batch_label": name, "labels": ys, "data": rows, "filenames": [f"{i}.png" for i in range(n)]}, f, protocol=2)
        images[part].append(hwc)
        labels[part].extend(ys)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"num_cases_per_batch": per_batch, "label_names": CIFAR_CLASSES, "num_vis": 3072}, f, protocol=2)
    return {p: (np.concatenate(images[p]), np.array(labels[p])) for p in images}


def scaled(images_nhwc: np.ndarray) -> torch.Tensor:
    """Reference scaling [0, 255] -> [-1, 1], channels first."""
    x = images_nhwc.astype(np.float64) / 127.5 - 1.0
    return torch.from_numpy((x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)).astype(np.float32))


@pytest.mark.parametrize(
    "name, folder, classes", [("mnist", "MNIST", MNIST_CLASSES), ("fashion-mnist", "FashionMNIST", FASHION_CLASSES)]
)
def test_mnist_like_from_torchvision_layout(tmp_path, name, folder, classes):
    parts = write_mnist(tmp_path, folder)
    src = read_source(DataConfig(name=name, root=str(tmp_path)))
    assert len(src) == 18 and src.value_range == (0.0, 255.0) and src.class_names == classes
    assert src.ids[0] == f"{name}[train:0]" and src.ids[12] == f"{name}[test:0]"
    assert src.split == ["train"] * 12 + ["test"] * 6
    np.testing.assert_array_equal(src.samples[3], parts["train"][0][3])
    assert src.samples[3].dtype == np.uint8 and src.samples[3].shape == (28, 28)

    d = load_dataset(DataConfig(name=name, root=str(tmp_path), resolution=28))  # official split, not re-split
    torch.testing.assert_close(d.x_train, scaled(parts["train"][0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(d.x_test, scaled(parts["t10k"][0]), rtol=0, atol=1e-6)
    assert d.y_train.tolist() == parts["train"][1].tolist() and d.y_test.tolist() == parts["t10k"][1].tolist()
    assert load_dataset(DataConfig(name=name, root=str(tmp_path))).x_train.shape == (12, 1, 32, 32)


def test_max_samples_keeps_both_official_splits(tmp_path):
    write_mnist(tmp_path, "MNIST", n_train=60, n_test=10)
    src = read_source(DataConfig(name="mnist", root=str(tmp_path), max_samples=14))
    assert len(src) == 14 and src.split.count("test") == 2  # in proportion: 14 * 10 / 70
    tiny = read_source(DataConfig(name="mnist", root=str(tmp_path), max_samples=4))
    assert tiny.split.count("test") == 1  # 4 * 10 / 70 rounds to 0, but a split may not vanish
    assert src.ids == read_source(DataConfig(name="mnist", root=str(tmp_path), max_samples=14)).ids


def test_cifar10_from_torchvision_layout(tmp_path):
    parts = write_cifar(tmp_path)
    src = read_source(DataConfig(name="cifar10", root=str(tmp_path)))
    assert len(src) == 13 and src.class_names == CIFAR_CLASSES and src.ids[10] == "cifar10[test:0]"
    np.testing.assert_array_equal(src.samples[4], parts["train"][0][4])  # HWC uint8, like torchvision's .data
    d = load_dataset(DataConfig(name="cifar10", root=str(tmp_path)))
    assert d.x_train.shape == (10, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    torch.testing.assert_close(d.x_train, scaled(parts["train"][0]), rtol=0, atol=1e-6)
    torch.testing.assert_close(d.x_test, scaled(parts["test"][0]), rtol=0, atol=1e-6)
    assert d.y_train.tolist() == parts["train"][1].tolist() and d.y_test.tolist() == parts["test"][1].tolist()
    assert load_dataset(DataConfig(name="cifar10", root=str(tmp_path), channels=1)).x_train.shape == (10, 1, 32, 32)


def test_cifar10_refuses_pickles_that_run_code(tmp_path):
    write_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "cifar-10-batches-py" / "data_batch_3", "wb") as f:
        pickle.dump({"data": Evil(), "labels": []}, f)
    with pytest.raises(DataError, match="data_batch_3"):
        read_source(DataConfig(name="cifar10", root=str(tmp_path)))


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist", "cifar10"])
def test_missing_files_name_root_and_download(tmp_path, name):
    with pytest.raises(DataError) as err:
        read_source(DataConfig(name=name, root=str(tmp_path)))
    msg = str(err.value)
    assert str(tmp_path) in msg and "download=True" in msg and "data.download=true" in msg
    assert not any(tmp_path.iterdir())  # nothing was fetched or created


def test_gzipped_mnist_files_get_a_hint(tmp_path):
    write_mnist(tmp_path, "MNIST")
    for path in (tmp_path / "MNIST" / "raw").iterdir():
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes()))
        path.unlink()
    with pytest.raises(DataError, match="gunzip"):
        read_source(DataConfig(name="mnist", root=str(tmp_path)))


def test_default_root_is_data_raw_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"data/raw/mnist"):
        read_source(DataConfig(name="mnist"))
