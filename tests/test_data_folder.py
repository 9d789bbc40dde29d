"""Image folders: mixed sizes and modes, class sub-folders, unlabeled sets, bad files, bit depths."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ganmodels.data import DataConfig, DataError, load_dataset, read_source


def noise(rng, shape, dtype=np.uint8, high=256) -> np.ndarray:
    return rng.integers(0, high, shape).astype(dtype)


def save(path: Path, img: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def labelled_folder(tmp_path) -> Path:
    """Two classes, mixed sizes and modes (L, RGB, RGBA, P, LA, 1), one nested file."""
    rng = np.random.default_rng(0)
    save(tmp_path / "cat" / "a_grey.png", Image.fromarray(noise(rng, (20, 30)), "L"))
    save(tmp_path / "cat" / "b_rgb.jpg", Image.fromarray(noise(rng, (40, 40, 3)), "RGB"))
    save(tmp_path / "cat" / "deeper" / "c_rgba.png", Image.fromarray(noise(rng, (16, 24, 4)), "RGBA"))
    save(tmp_path / "dog" / "d_palette.png", Image.fromarray(noise(rng, (50, 10, 3)), "RGB").convert("P"))
    save(tmp_path / "dog" / "e_la.png", Image.fromarray(noise(rng, (12, 12, 2)), "LA"))
    save(tmp_path / "dog" / "f_bilevel.bmp", Image.fromarray(noise(rng, (9, 9), high=2).astype(bool)))
    (tmp_path / "dog" / "notes.txt").write_text("not an image")  # ignored: not an image extension
    save(tmp_path / ".hidden" / "x.png", Image.fromarray(noise(rng, (8, 8)), "L"))  # ignored: hidden
    return tmp_path


def pil_reference(path: Path, resolution: int) -> np.ndarray:
    """Independent pipeline with PIL: RGB, centre square crop, float bilinear resize, -> [-1, 1] (C, R, R)."""
    img = Image.open(path).convert("RGB")
    w, h = img.size
    s = min(w, h)
    left, top = (w - s) // 2, (h - s) // 2
    img = img.crop((left, top, left + s, top + s))
    bands = [np.asarray(b.convert("F").resize((resolution, resolution), Image.BILINEAR)) for b in img.split()]
    return np.stack(bands) / 127.5 - 1.0


def test_labelled_folder_source_is_raw(labelled_folder):
    src = read_source(DataConfig(name="folder", root=str(labelled_folder)))
    assert src.ids == ["cat/a_grey.png", "cat/b_rgb.jpg", "cat/deeper/c_rgba.png",
                       "dog/d_palette.png", "dog/e_la.png", "dog/f_bilevel.bmp"]  # fmt: skip
    assert src.class_names == ["cat", "dog"] and src.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert src.value_range == (0.0, 255.0)
    shapes = [s.shape for s in src.samples]
    assert shapes == [(20, 30), (40, 40, 3), (16, 24, 4), (50, 10, 3), (12, 12, 2), (9, 9)]
    assert all(s.dtype == np.uint8 for s in src.samples)
    np.testing.assert_array_equal(src.samples[0], np.asarray(Image.open(labelled_folder / "cat" / "a_grey.png")))
    assert set(np.unique(src.samples[5])) <= {0, 255}  # bilevel decoded to L


def test_labelled_folder_prepared_against_pil(labelled_folder):
    cfg = DataConfig(name="folder", root=str(labelled_folder), resolution=16, test_fraction=0.34)
    d = load_dataset(cfg)
    assert d.x_train.shape[1:] == (3, 16, 16)  # colour present -> 3 channels by default
    assert len(d.x_train) + len(d.x_test) == 6 and len(d.x_test) == 2
    assert sorted(d.y_test.tolist()) == [0, 1]  # stratified: one test image per class
    assert d.x_train.min() >= -1 and d.x_train.max() <= 1
    # Each prepared image equals PIL's crop + float bilinear resize of its file, whatever the mode
    # (PIL's convert("RGB") also repeats grey, drops alpha and expands palettes).
    prepared = torch.cat([d.x_train, d.x_test]).numpy()
    for rel in read_source(cfg).ids:
        ref = pil_reference(labelled_folder / rel, 16)
        assert sum(np.abs(x - ref).max() < 1e-5 for x in prepared) == 1, rel
    assert load_dataset(DataConfig(name="folder", root=str(labelled_folder), channels=1)).x_train.shape[1] == 1


def test_grey_folder_defaults_to_one_channel_and_unlabeled(tmp_path):
    rng = np.random.default_rng(1)
    for i in range(5):
        save(tmp_path / f"img{i}.png", Image.fromarray(noise(rng, (10 + i, 14)), "L"))
    save(tmp_path / "more" / "img9.png", Image.fromarray(noise(rng, (30, 20)), "L"))  # root + sub-folder: unlabeled
    src = read_source(DataConfig(name="folder", root=str(tmp_path)))
    assert src.labels is None and src.class_names is None and "more/img9.png" in src.ids
    d = load_dataset(DataConfig(name="folder", root=str(tmp_path), resolution=8))
    assert d.x_train.shape[1:] == (1, 8, 8) and d.y_train is None and len(d.x_test) == 1


def test_single_subfolder_is_a_container_not_a_class(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(3):
        save(tmp_path / "img_align" / f"{i}.png", Image.fromarray(noise(rng, (8, 8, 3)), "RGB"))
    assert read_source(DataConfig(name="folder", root=str(tmp_path))).labels is None


def test_sixteen_bit_images(tmp_path):
    rng = np.random.default_rng(3)
    arr = noise(rng, (12, 12), np.uint16, 65536)
    arr[0, 0], arr[0, 1] = 0, 65535
    save(tmp_path / "a.png", Image.fromarray(arr))
    save(tmp_path / "b.tif", Image.fromarray(noise(rng, (12, 12), np.uint16, 65536)))
    src = read_source(DataConfig(name="folder", root=str(tmp_path)))
    assert src.value_range == (0.0, 65535.0)
    np.testing.assert_array_equal(src.samples[0].astype(np.int64), arr)  # native values, no 8-bit squeeze
    d = load_dataset(DataConfig(name="folder", root=str(tmp_path), resolution=12, test_fraction=0.5))
    x = torch.cat([d.x_train, d.x_test])
    assert x.min() == -1.0 and x.max() == 1.0


def test_mixed_bit_depths_are_each_scaled_by_their_own_range(tmp_path):
    rng = np.random.default_rng(4)
    eight = noise(rng, (8, 8))
    sixteen = noise(rng, (8, 8), np.uint16, 65536)
    save(tmp_path / "a.png", Image.fromarray(eight, "L"))
    save(tmp_path / "b.png", Image.fromarray(sixteen))
    src = read_source(DataConfig(name="folder", root=str(tmp_path)))
    assert src.value_range == (0.0, 1.0)
    np.testing.assert_allclose(src.samples[0], eight / 255.0, rtol=1e-6)
    np.testing.assert_allclose(src.samples[1], sixteen / 65535.0, rtol=1e-6)
    # Same picture at both depths: the same prepared image (a 16-bit copy is not read 256x brighter).
    save(tmp_path / "c.png", Image.fromarray(eight.astype(np.uint16) * 257))  # 255 * 257 = 65535
    a, c = read_source(DataConfig(name="folder", root=str(tmp_path))).samples[0::2]
    np.testing.assert_allclose(a, c, atol=1e-6)
    d = load_dataset(DataConfig(name="folder", root=str(tmp_path), resolution=8, test_fraction=0.5))
    x = torch.cat([d.x_train, d.x_test])
    assert x.shape == (3, 1, 8, 8) and x.min() >= -1.0 and x.max() <= 1.0


def test_unreadable_file_is_named(tmp_path):
    rng = np.random.default_rng(5)
    save(tmp_path / "good.png", Image.fromarray(noise(rng, (8, 8)), "L"))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    with pytest.raises(DataError, match="broken.png"):
        read_source(DataConfig(name="folder", root=str(tmp_path)))


def test_empty_folder_names_folder_and_extensions(tmp_path):
    (tmp_path / "readme.txt").write_text("no images here")
    with pytest.raises(DataError) as err:
        read_source(DataConfig(name="folder", root=str(tmp_path)))
    assert str(tmp_path) in str(err.value) and ".png" in str(err.value) and ".jpg" in str(err.value)


def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="not a directory"):
        read_source(DataConfig(name="folder", root=str(tmp_path / "nope")))


def test_max_samples_caps_before_decoding(tmp_path):
    rng = np.random.default_rng(6)
    for c in ("a", "b"):
        for i in range(10):
            save(tmp_path / c / f"{i}.png", Image.fromarray(noise(rng, (8, 8)), "L"))
    cfg = DataConfig(name="folder", root=str(tmp_path), max_samples=6)
    src = read_source(cfg)
    assert len(src) == 6 and np.bincount(src.labels).tolist() == [3, 3]  # stratified cap
    for path in tmp_path.rglob("*.png"):  # files not picked are never decoded
        if path.relative_to(tmp_path).as_posix() not in src.ids:
            path.write_bytes(b"corrupt")
    assert read_source(cfg).ids == src.ids


def png_declaring(path: Path, width: int, height: int) -> Path:
    """A tiny PNG whose header declares ``width x height`` pixels (valid CRC): a decompression bomb."""
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("L", (8, 8)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    struct.pack_into(">II", data, 16, width, height)
    struct.pack_into(">I", data, 29, zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("side, named", [(10_000, "over the 89,478,485-pixel limit"),  # PIL would only warn
                                         (100_000, "decompression bomb")])  # PIL refuses, we name it
def test_decompression_bombs_are_refused_from_the_header(tmp_path, side, named):
    rng = np.random.default_rng(6)
    save(tmp_path / "good.png", Image.fromarray(noise(rng, (8, 8)), "L"))
    png_declaring(tmp_path / "bomb.png", side, side)
    with pytest.raises(DataError, match=named) as err:
        read_source(DataConfig(name="folder", root=str(tmp_path)))
    assert "bomb.png" in str(err.value)


@pytest.mark.parametrize("make", ["dangling", "loop"])
def test_broken_symlinks_are_named(tmp_path, make):
    rng = np.random.default_rng(7)
    save(tmp_path / "good.png", Image.fromarray(noise(rng, (8, 8)), "L"))
    if make == "dangling":
        (tmp_path / "link.png").symlink_to(tmp_path / "missing.png")
    else:
        (tmp_path / "link.png").symlink_to(tmp_path / "other.png")
        (tmp_path / "other.png").symlink_to(tmp_path / "link.png")
    with pytest.raises(DataError, match="broken symbolic link"):
        read_source(DataConfig(name="folder", root=str(tmp_path)))


def test_directory_symlink_loops_are_not_followed(tmp_path):
    rng = np.random.default_rng(8)
    save(tmp_path / "a" / "x.png", Image.fromarray(noise(rng, (8, 8)), "L"))
    (tmp_path / "a" / "loop").symlink_to(tmp_path)
    assert read_source(DataConfig(name="folder", root=str(tmp_path))).ids == ["a/x.png"]


def test_empty_class_folder_is_named(tmp_path):
    rng = np.random.default_rng(9)
    for cls in ("cat", "dog"):
        save(tmp_path / cls / "x.png", Image.fromarray(noise(rng, (8, 8)), "L"))
    (tmp_path / "bird").mkdir()
    with pytest.raises(DataError, match=r"\['bird'\] hold no image files"):
        read_source(DataConfig(name="folder", root=str(tmp_path)))


def test_a_jpeg_named_png_is_read_by_its_content(tmp_path):
    rng = np.random.default_rng(10)
    rgb = noise(rng, (8, 8, 3))
    Image.fromarray(rgb).save(tmp_path / "photo.png", format="JPEG", quality=100)
    src = read_source(DataConfig(name="folder", root=str(tmp_path)))
    reference = np.asarray(Image.open(tmp_path / "photo.png"))
    assert Image.open(tmp_path / "photo.png").format == "JPEG"
    np.testing.assert_array_equal(src.samples[0], reference)


def test_cmyk_is_decoded_to_rgb(tmp_path):
    rng = np.random.default_rng(11)
    Image.fromarray(noise(rng, (8, 8, 3))).convert("CMYK").save(tmp_path / "print.tif")
    src = read_source(DataConfig(name="folder", root=str(tmp_path)))
    assert src.samples[0].shape == (8, 8, 3) and src.value_range == (0.0, 255.0)
    np.testing.assert_array_equal(src.samples[0], np.asarray(Image.open(tmp_path / "print.tif").convert("RGB")))
