"""MNIST, Fashion-MNIST and CIFAR-10 from tiny files written here: torchvision's on-disk layout, and the
IDX files as they are shipped (gzipped or not, in one flat folder)."""

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


def move_idx_files(raw: Path, dest: Path, *, gzipped: bool, kaggle: bool = False) -> None:
    """The four IDX files of ``raw`` moved to ``dest`` as users have them: gzipped or not, and with
    Kaggle's spelling (``train-images.idx3-ubyte``) when ``kaggle``."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in sorted(raw.iterdir()):
        name = path.name.replace("-idx", ".idx") if kaggle else path.name
        data = path.read_bytes()
        if gzipped:
            (dest / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (dest / name).write_bytes(data)
        path.unlink()


@pytest.mark.parametrize("layout", ["torchvision", "flat", "raw"])
@pytest.mark.parametrize("gzipped", [False, True], ids=["plain", "gz"])
def test_mnist_like_idx_files_gzipped_or_not_flat_or_nested(tmp_path, layout, gzipped):
    # Debian's dataset-fashion-mnist installs the four .gz files in one flat folder; torchvision unpacks
    # them into <root>/FashionMNIST/raw/. Every combination reads the same samples and labels.
    parts = write_mnist(tmp_path / "staging", "FashionMNIST", n_train=14, n_test=7, seed=3)
    root = tmp_path / "root"
    dest = {"torchvision": root / "FashionMNIST" / "raw", "flat": root, "raw": root / "raw"}[layout]
    move_idx_files(tmp_path / "staging" / "FashionMNIST" / "raw", dest, gzipped=gzipped)
    src = read_source(DataConfig(name="fashion-mnist", root=str(root)))
    assert len(src) == 21 and src.class_names == FASHION_CLASSES and src.origin == str(dest)
    assert src.split == ["train"] * 14 + ["test"] * 7
    np.testing.assert_array_equal(np.stack(src.samples[:14]), parts["train"][0])
    np.testing.assert_array_equal(np.stack(src.samples[14:]), parts["t10k"][0])
    assert src.labels.tolist() == parts["train"][1].tolist() + parts["t10k"][1].tolist()
    d = load_dataset(DataConfig(name="fashion-mnist", root=str(root), resolution=28))
    torch.testing.assert_close(d.x_test, scaled(parts["t10k"][0]), rtol=0, atol=1e-6)


def test_kaggle_file_names_are_read_and_plain_files_win_over_gz(tmp_path):
    parts = write_mnist(tmp_path / "staging", "MNIST", seed=1)
    move_idx_files(tmp_path / "staging" / "MNIST" / "raw", tmp_path / "kaggle", gzipped=False, kaggle=True)
    src = read_source(DataConfig(name="mnist", root=str(tmp_path / "kaggle")))
    np.testing.assert_array_equal(np.stack(src.samples[:12]), parts["train"][0])

    # torchvision leaves the .gz beside the files it unpacked: the unpacked ones are read
    other = write_mnist(tmp_path / "both", "MNIST", seed=2)
    raw = tmp_path / "both" / "MNIST" / "raw"
    for path in list(raw.iterdir()):
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(b"not what is read"))
    src = read_source(DataConfig(name="mnist", root=str(tmp_path / "both")))
    np.testing.assert_array_equal(np.stack(src.samples[:12]), other["train"][0])


def test_an_incomplete_folder_is_not_mixed_with_another(tmp_path):
    # Three files flat and all four in torchvision's layout: the complete folder is read, never a mix.
    parts = write_mnist(tmp_path, "MNIST", seed=4)
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 28, 28), np.uint8))
    src = read_source(DataConfig(name="mnist", root=str(tmp_path)))
    np.testing.assert_array_equal(np.stack(src.samples[:12]), parts["train"][0])


def test_missing_idx_files_name_every_folder_looked_in(tmp_path):
    write_mnist(tmp_path / "staging", "MNIST")
    move_idx_files(tmp_path / "staging" / "MNIST" / "raw", tmp_path / "flat", gzipped=True)
    (tmp_path / "flat" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError) as err:
        read_source(DataConfig(name="mnist", root=str(tmp_path / "flat")))
    msg = str(err.value)
    assert "gzipped or not" in msg and "t10k-labels-idx1-ubyte" in msg
    for folder in (tmp_path / "flat" / "MNIST" / "raw", tmp_path / "flat", tmp_path / "flat" / "raw"):
        assert str(folder) in msg


@pytest.mark.parametrize("damage, named", [
    (lambda raw: raw[:-5], "truncated or corrupt"),  # data cut short
    (lambda raw: b"\x00\x00\x0d\x03" + raw[4:], "not an IDX file of unsigned bytes"),  # float type code
    (lambda raw: raw[:6], "header cut short"),
])
def test_a_damaged_idx_file_is_named(tmp_path, damage, named):
    write_mnist(tmp_path, "MNIST")
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(DataError, match=named) as err:
        read_source(DataConfig(name="mnist", root=str(tmp_path)))
    assert str(path) in str(err.value)


def test_a_truncated_gzip_and_mismatched_counts_are_named(tmp_path):
    write_mnist(tmp_path / "staging", "MNIST")
    move_idx_files(tmp_path / "staging" / "MNIST" / "raw", tmp_path / "gz", gzipped=True)
    path = tmp_path / "gz" / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(DataError, match="cannot read IDX file") as err:
        read_source(DataConfig(name="mnist", root=str(tmp_path / "gz")))
    assert str(path) in str(err.value)

    write_mnist(tmp_path / "counts", "MNIST")
    write_idx(tmp_path / "counts" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(5, np.uint8))
    with pytest.raises(DataError, match="6 images but .* 5 labels"):
        read_source(DataConfig(name="mnist", root=str(tmp_path / "counts")))


def test_default_root_is_data_raw_name(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"data/raw/mnist"):
        read_source(DataConfig(name="mnist"))
