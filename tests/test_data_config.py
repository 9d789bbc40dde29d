"""Registry, config validation and CLI-string resolution."""

from __future__ import annotations

import numpy as np
import pytest

from ganmodels.data import (DataConfig, DataError, DataKind, dataset_kind, list_datasets, read_source, register_dataset,
                            resolve_data_config)

BUILTIN = ["aligned", "cifar10", "digits", "digits-bold", "digits-sr", "fashion-mnist", "folder", "glyphs", "glyphs-edges",
           "glyphs-fonts", "glyphs-sr", "grid25", "mnist", "npy", "npz-pairs", "paired-folder", "ring8", "two-domains", "unpaired-folder"]


def test_registry_lists_builtins_and_refuses_duplicates():
    assert list_datasets() == BUILTIN
    with pytest.raises(ValueError, match="already registered"):
        register_dataset("digits", kind=DataKind.LABELLED_IMAGES)(lambda cfg: None)
    with pytest.raises(TypeError, match="kind"):
        register_dataset("new-set", kind="images")(lambda cfg: None)
    assert list_datasets() == BUILTIN


@pytest.mark.parametrize("name, kind", [("digits", DataKind.LABELLED_IMAGES), ("mnist", DataKind.LABELLED_IMAGES),
                                        ("cifar10", DataKind.LABELLED_IMAGES), ("ring8", DataKind.POINTS),
                                        ("grid25", DataKind.POINTS)])
def test_registered_sets_declare_the_kind_their_reader_produces(name, kind):
    assert dataset_kind(DataConfig(name=name)) is kind
    if name in ("digits", "ring8", "grid25"):  # readable offline: the reader agrees with the declaration
        assert read_source(DataConfig(name=name, max_samples=200)).data_kind is kind


def test_folders_and_arrays_declare_their_kind_from_the_path(tmp_path):
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "labelled" / cls).mkdir(parents=True)
        Image.new("L", (8, 8)).save(tmp_path / "labelled" / cls / "x.png")
    (tmp_path / "plain").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "plain" / "x.png")
    np.save(tmp_path / "img.npy", np.zeros((4, 8, 8), np.uint8))
    np.save(tmp_path / "pts.npy", np.zeros((4, 2), np.float32))
    np.save(tmp_path / "lab.npy", np.zeros((4, 8, 8), np.uint8))
    np.save(tmp_path / "lab.labels.npy", np.arange(4))
    expected = {("folder", "labelled"): DataKind.LABELLED_IMAGES, ("folder", "plain"): DataKind.IMAGES,
                ("npy", "img.npy"): DataKind.IMAGES, ("npy", "pts.npy"): DataKind.POINTS,
                ("npy", "lab.npy"): DataKind.LABELLED_IMAGES}
    for (name, root), kind in expected.items():
        cfg = DataConfig(name=name, root=str(tmp_path / root))
        assert dataset_kind(cfg) is kind, root
        assert read_source(cfg).data_kind is kind, root
    with pytest.raises(DataError, match="not a directory"):
        dataset_kind(DataConfig(name="folder", root=str(tmp_path / "missing")))


def test_resolve_registered_name_with_overrides():
    cfg = resolve_data_config("digits", resolution=16, max_samples=100)
    assert cfg == DataConfig(name="digits", resolution=16, max_samples=100)


def test_resolve_directory_and_npy(tmp_path):
    assert resolve_data_config(str(tmp_path)) == DataConfig(name="folder", root=str(tmp_path))
    path = str(tmp_path / "pts.npy")
    assert resolve_data_config(path, num_points=100) == DataConfig(name="npy", root=path, num_points=100)


def test_resolve_rejects_anything_else(tmp_path):
    with pytest.raises(DataError) as err:
        resolve_data_config(str(tmp_path / "no-such-dir"))
    msg = str(err.value)
    assert all(name in msg for name in BUILTIN) and "directory" in msg and ".npy" in msg
    with pytest.raises(DataError, match="resolutoin"):
        resolve_data_config("digits", resolutoin=32)


@pytest.mark.parametrize(
    "field, value",
    [
        ("resolution", 0),
        ("resolution", 4096),
        ("resolution", 32.0),
        ("channels", 2),
        ("channels", True),
        ("test_fraction", 0.0),
        ("test_fraction", 1.0),
        ("max_samples", 1),
        ("num_points", 0),
        ("split_seed", -1),
    ],
)
def test_invalid_fields_are_named(field, value):
    with pytest.raises(DataError, match=f"data.{field}"):
        resolve_data_config("digits", **{field: value})
    with pytest.raises(DataError, match=f"data.{field}"):
        read_source(DataConfig(name="digits", **{field: value}))


def test_unknown_name_and_missing_root():
    with pytest.raises(DataError, match="registered data sets: .*digits"):
        read_source(DataConfig(name="imagenet"))
    with pytest.raises(DataError, match="data.root"):
        read_source(DataConfig(name="folder"))


def test_numpy_integers_are_accepted():
    assert resolve_data_config("digits", resolution=np.int64(16)).resolution == 16
