"""Paired data (DataKind.PAIRED_IMAGES): the embedded super-resolution and edges sets, the derived task,
the readers of paired files, and the validation that names every bad pair."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from ganmodels.data import DataConfig, DataError, DataKind, dataset_kind, dataset_labelled, prepare, read_source
from ganmodels.data.sources.glyphs import CHARACTERS, FACES, GLYPH_HEIGHTS, render_glyph


def load(name: str, **fields):
    cfg = DataConfig(name=name, resolution=None, **fields)
    return read_source(cfg), prepare(read_source(cfg), cfg)


@pytest.mark.parametrize("name, target, source_side", [("digits-sr", 8, 4), ("glyphs-sr", 32, 16)])
def test_super_resolution_inputs_are_the_block_means_of_the_targets(name, target, source_side):
    _, data = load(name)
    assert data.data_kind is DataKind.PAIRED_IMAGES and dataset_kind(DataConfig(name=name)) is DataKind.PAIRED_IMAGES
    assert data.sample_shape == (1, target, target) and data.input_shape == (1, source_side, source_side)
    x = data.x_train.numpy()
    block_means = x.reshape(len(x), 1, source_side, 2, source_side, 2).mean(axis=(3, 5))  # independent of torch
    np.testing.assert_allclose(data.a_train.numpy(), block_means, atol=1e-6)
    assert dataset_labelled(DataConfig(name=name)) and data.num_classes in (10, 36)


def test_glyph_edges_are_the_morphological_gradient_of_the_glyphs():
    _, data = load("glyphs-edges")
    x = (data.x_test[:50, 0].numpy().astype(np.float64) + 1) / 2  # [0, 1]
    gradient = np.stack([ndimage.grey_dilation(im, size=(3, 3), mode="nearest") -
                         ndimage.grey_erosion(im, size=(3, 3), mode="nearest") for im in x])
    np.testing.assert_allclose((data.a_test[:50, 0].numpy() + 1) / 2, gradient, atol=1e-6)


def test_the_derived_task_turns_any_image_set_into_the_same_pairs():
    _, embedded = load("digits-sr")
    cfg = DataConfig(name="digits", resolution=None, task="sr", scale=2)
    assert dataset_kind(cfg) is DataKind.PAIRED_IMAGES and dataset_labelled(cfg)
    derived = prepare(read_source(cfg), cfg)
    assert torch.equal(derived.x_train, embedded.x_train) and torch.equal(derived.a_train, embedded.a_train)
    scaled = prepare(read_source(DataConfig(name="digits", resolution=16, task="sr", scale=4)),
                     DataConfig(name="digits", resolution=16, task="sr", scale=4))
    assert scaled.input_shape == (1, 4, 4) and scaled.sample_shape == (1, 16, 16)
    with pytest.raises(DataError, match="not divisible"):
        prepare(read_source(DataConfig(name="digits")), DataConfig(name="digits", resolution=16, task="sr", scale=3))
    with pytest.raises(DataError, match="paired already"):
        prepare(read_source(DataConfig(name="digits-sr")), DataConfig(name="digits-sr", resolution=None, task="sr"))
    with pytest.raises(DataError, match="single-domain"):
        dataset_kind(DataConfig(name="ring8", task="sr"))


def test_glyphs_are_rendered_deterministically_and_fit_the_canvas():
    source, data = load("glyphs")
    assert len(source) == len(FACES) * len(CHARACTERS) * len(GLYPH_HEIGHTS) == 2268
    assert source.class_names == list(CHARACTERS) and data.num_classes == 36
    assert data.data_hash == load("glyphs")[1].data_hash
    again = render_glyph("DejaVuSerif", "Q", 24)
    assert np.array_equal(again, render_glyph("DejaVuSerif", "Q", 24)) and again.dtype == np.uint8
    for image in source.samples[::97]:
        rows, cols = np.flatnonzero(image.any(1)), np.flatnonzero(image.any(0))
        assert image.max() == 255 and rows[0] >= 1 and cols[0] >= 1 and rows[-1] <= 30 and cols[-1] <= 30


def write_pairs(root, n=120, skip=(), wrong_scale=(), corrupt=()):
    (root / "A").mkdir(parents=True)
    (root / "B").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        b = (rng.random((16, 16)) * 255).astype(np.uint8)
        Image.fromarray(b).save(root / "B" / f"{i:03d}.png")
        if i in skip:
            continue
        a = b.reshape(8, 2, 8, 2).mean(axis=(1, 3)).astype(np.uint8) if i not in wrong_scale else b[:5, :5]
        Image.fromarray(np.ascontiguousarray(a)).save(root / "A" / f"{i:03d}.png")
    for name in corrupt:
        (root / "A" / name).write_bytes(b"not an image")
    return root


def test_a_paired_folder_reads_as_pairs_with_their_scale(tmp_path):
    root = write_pairs(tmp_path / "pairs")
    cfg = DataConfig(name="paired-folder", root=str(root), resolution=None)
    assert dataset_kind(cfg) is DataKind.PAIRED_IMAGES and not dataset_labelled(cfg)
    data = prepare(read_source(cfg), cfg)
    assert data.sample_shape == (1, 16, 16) and data.input_shape == (1, 8, 8)
    assert len(data.x_train) + len(data.x_test) == 120


def test_bad_pairs_are_recorded_not_raised_and_prepare_refuses_them(tmp_path):
    root = write_pairs(tmp_path / "pairs", skip=(5,), wrong_scale=(7,), corrupt=("200.png",))
    source = read_source(DataConfig(name="paired-folder", root=str(root)))
    problems = {i: p for i, p in zip(source.ids, source.problems) if p}
    assert set(problems) == {"005.png", "200.png"}
    assert "no partner A/005.png" in problems["005.png"]
    assert "unreadable" in problems["200.png"] and "no partner B/200.png" in problems["200.png"]
    with pytest.raises(DataError, match="2 unusable sample"):
        prepare(source, DataConfig(name="paired-folder", root=str(root), resolution=None))


def test_aligned_images_split_into_left_input_and_right_target(tmp_path):
    root = tmp_path / "aligned"
    root.mkdir()
    rng = np.random.default_rng(1)
    for i in range(4):
        Image.fromarray((rng.random((8, 16)) * 255).astype(np.uint8)).save(root / f"{i}.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "square.png")
    source = read_source(DataConfig(name="aligned", root=str(root)))
    first = np.asarray(Image.open(root / "0.png"))
    assert np.array_equal(source.inputs[0], first[:, :8]) and np.array_equal(source.samples[0], first[:, 8:])
    assert "2H wide" in dict(zip(source.ids, source.problems))["square.png"]


def test_npz_pairs_with_labels(tmp_path):
    rng = np.random.default_rng(2)
    b = (rng.random((30, 8, 8)) * 255).astype(np.uint8)
    np.savez(tmp_path / "p.npz", a=b[:, ::2, ::2], b=b, labels=np.arange(30) % 3)
    cfg = DataConfig(name="npz-pairs", root=str(tmp_path / "p.npz"), resolution=None)
    assert dataset_labelled(cfg)
    data = prepare(read_source(cfg), cfg)
    assert data.input_shape == (1, 4, 4) and data.num_classes == 3
    np.savez(tmp_path / "bad.npz", a=b[:10], b=b)
    with pytest.raises(DataError, match="10 inputs but 30 targets"):
        read_source(DataConfig(name="npz-pairs", root=str(tmp_path / "bad.npz")))


def test_validation_names_every_bad_pair(tmp_path):
    from pipelines.validation import validate

    root = write_pairs(tmp_path / "pairs", skip=(5,), wrong_scale=(7,), corrupt=("200.png",))
    report = validate(read_source(DataConfig(name="paired-folder", root=str(root))), tmp_path / "report")
    assert not report.success
    failed = {f["check"]: f["example_ids"] for f in report.failures}
    assert failed == {"pair_complete": ["005.png", "200.png"], "pair_scale_height": ["007.png"],
                      "pair_scale_width": ["007.png"]}
    good = validate(read_source(DataConfig(name="paired-folder", root=str(write_pairs(tmp_path / "good")))),
                    tmp_path / "good-report")
    assert good.success
