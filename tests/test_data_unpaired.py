"""Two unpaired domains (DataKind.UNPAIRED_IMAGES): the embedded digits-bold and glyphs-fonts sets and their
known truths, the readers of two-domain files, and the validation of each domain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from ganmodels.data import (DataConfig, DataError, DataKind, dataset_has_truth, dataset_kind, dataset_labelled,
                            prepare, read_source)
from ganmodels.data.config import source_for
from ganmodels.data.imaging import prepare_images
from ganmodels.data.prepare import split_indices
from ganmodels.data.sources.glyphs import CHARACTERS, FONT_HEIGHTS, FONT_PAIRS, render_glyph
from ganmodels.metrics.image_quality import psnr


@pytest.fixture(scope="module")
def bold():
    cfg = DataConfig(name="digits-bold", resolution=16)
    return read_source(cfg), prepare(read_source(cfg), cfg)


def dilate(images: torch.Tensor) -> np.ndarray:
    """3x3 grey-level dilation with scipy (max filter; 'nearest' edges add no new values), independent of torch."""
    return np.stack([ndimage.grey_dilation(im, size=(3, 3), mode="nearest") for im in images[:, 0].numpy()])[:, None]


def test_digits_bold_has_two_disjoint_domains_and_their_truth(bold):
    source, data = bold
    cfg = DataConfig(name="digits-bold")
    assert dataset_kind(cfg) is DataKind.UNPAIRED_IMAGES and dataset_labelled(cfg) and dataset_has_truth(cfg)
    assert data.data_kind is DataKind.UNPAIRED_IMAGES and data.sample_shape == (1, 16, 16)
    assert source.domain.count("A") == len(source) // 2  # half of the digits, no digit in both
    assert len(data.x_train) + len(data.x_test) + len(data.b_train) + len(data.b_test) == 1797
    for k in range(10):  # each class split evenly between the domains (stratified)
        assert abs(int((data.y_train == k).sum() + (data.y_test == k).sum())
                   - int((data.yb_train == k).sum() + (data.yb_test == k).sum())) <= 1
    np.testing.assert_allclose(data.truth_a2b_test.numpy(), dilate(data.x_test), atol=1e-6)
    np.testing.assert_allclose(data.b_test.numpy(), dilate(data.truth_b2a_test), atol=1e-6)


def test_doing_nothing_scores_what_the_issue_calibrated(bold):
    _, data = bold
    assert psnr(data.x_test, data.truth_a2b_test).mean().item() == pytest.approx(12.9, abs=0.1)


@pytest.fixture(scope="module")
def fonts():
    cfg = DataConfig(name="glyphs-fonts", resolution=16)
    return read_source(cfg), prepare(read_source(cfg), cfg)


def parse(sample_id: str) -> tuple[str, str, int]:
    """``glyphs-fonts[DejaVuSans-Bold:K:20]`` -> (face, character, height)."""
    face, char, height = sample_id[len("glyphs-fonts["):-1].split(":")
    return face, char, int(height)


SANS = {a: b for a, b in FONT_PAIRS}  # a sans face -> its serif counterpart
SERIF = {b: a for a, b in FONT_PAIRS}


def test_glyphs_fonts_are_sans_and_serif_glyphs_that_share_no_glyph(fonts):
    source, data = fonts
    cfg = DataConfig(name="glyphs-fonts")
    assert dataset_kind(cfg) is DataKind.UNPAIRED_IMAGES and dataset_labelled(cfg) and dataset_has_truth(cfg)
    assert data.sample_shape == (1, 16, 16) and data.class_names == list(CHARACTERS)
    # Every (face pair, character, height) once, less the 13 repeats of wide glyphs clamped to the canvas.
    assert len(source) == len(FONT_PAIRS) * len(CHARACTERS) * len(FONT_HEIGHTS) - 13 == 707
    keys = {"A": set(), "B": set()}
    for sample_id, domain, label, image in zip(source.ids, source.domain, source.labels, source.samples):
        face, char, height = parse(sample_id)
        assert face in (SANS if domain == "A" else SERIF)  # A: DejaVu Sans faces; B: DejaVu Serif faces
        assert CHARACTERS[label] == char
        keys[domain].add((SANS.get(face, face), char, height))  # the glyph, named by its serif face
    assert (len(keys["A"]), len(keys["B"])) == (353, 354) and not keys["A"] & keys["B"]  # no glyph in both styles
    for pair in FONT_PAIRS:  # each face pair and character split evenly between the domains
        for char in CHARACTERS:
            in_a, in_b = (sum((pair[1], char, h) in keys[d] for h in FONT_HEIGHTS) for d in "AB")
            assert abs(in_a - in_b) <= 1
    # Nor the same drawing twice: no sample's truth (its other-family drawing) is a sample of the other domain.
    for d, family in (("A", SANS), ("B", SERIF)):
        own = [s.tobytes() for s, dd in zip(source.samples, source.domain) if dd == d]
        truths = [c.tobytes() for c, dd in zip(source.counterparts, source.domain) if dd != d]
        assert len(set(own + truths)) == len(own) + len(truths)
    for i in range(0, len(source), 37):  # the pixels are the renderer's own drawing of the named glyph
        assert np.array_equal(source.samples[i], render_glyph(*parse(source.ids[i])))
    again = DataConfig(name="glyphs-fonts", resolution=16)
    assert prepare(read_source(again), again).data_hash == data.data_hash  # deterministic


def test_glyphs_fonts_truth_is_the_other_family_drawing_the_held_out_glyph(fonts):
    source, data = fonts
    _, test = split_indices(source, DataConfig(name="glyphs-fonts", resolution=16))
    domain = np.asarray(source.domain)
    for d, truth, other in (("A", data.truth_a2b_test, SANS), ("B", data.truth_b2a_test, SERIF)):
        drawn = []
        for i in test[domain[test] == d]:
            face, char, height = parse(source.ids[i])
            drawn.append(render_glyph(other[face], char, height))  # same glyph, the other family's face
        expected = prepare_images(drawn, [str(i) for i in range(len(drawn))], (0.0, 255.0), 16, 1)
        assert torch.equal(truth, expected)
    # Doing nothing is far from the truth (the styles differ), but not hopeless (same glyph, size, place).
    assert 17.0 < psnr(data.x_test, data.truth_a2b_test).mean().item() < 21.0


def test_glyphs_fonts_pass_validation(fonts, tmp_path):
    from pipelines.config import ValidationConfig
    from pipelines.validation import validate

    report = validate(fonts[0], tmp_path, ValidationConfig())
    assert report.success, report.format()


@pytest.fixture(scope="module")
def fonts_style(fonts):
    from ganmodels.metrics import train_style_classifier

    # params.yaml's datasets.glyphs-fonts.eval.classifier_epochs and eval.seed.
    return train_style_classifier(fonts[1], epochs=64, seed=1234)


class Lookup(torch.nn.Module):
    """A 'generator' with a known answer: each image found in ``inputs`` becomes its row of ``outputs``;
    any other image passes through unchanged (identity when ``inputs`` is empty)."""

    def __init__(self, inputs: torch.Tensor, outputs: torch.Tensor):
        super().__init__()
        self.inputs, self.outputs, self.anchor = inputs, outputs, torch.nn.Parameter(torch.zeros(()))

    def forward(self, x):
        if len(self.inputs) == 0:
            return x + 0 * self.anchor
        same = (x.flatten(1)[:, None] == self.inputs.flatten(1)[None]).all(-1)  # (B, N)
        found = same.any(1)
        picked = self.outputs[same.float().argmax(1)]
        return torch.where(found[:, None, None, None], picked, x) + 0 * self.anchor


def test_glyphs_fonts_style_transfer_is_zero_for_doing_nothing_and_one_for_the_truth(fonts, fonts_style):
    import ganmodels
    from ganmodels.metrics import evaluate_model
    from ganmodels.metrics.image_quality import PSNR_CAP
    from tests.model_configs import SMALL

    _, data = fonts
    model = ganmodels.build("cyclegan", SMALL["cyclegan"])
    none = torch.zeros(0, 1, 16, 16)
    model.G_AB, model.G_BA = Lookup(none, none), Lookup(none, none)
    nothing = evaluate_model(model, data, style_classifier=fonts_style)
    # Both directions return real images of their own domain: the classifier finds them there, bar its errors.
    assert nothing["style_transfer_a2b"] <= 0.15 and nothing["style_transfer_b2a"] <= 0.15
    assert nothing["style_classifier_accuracy"] == fonts_style[1] >= 0.9
    model.G_AB = Lookup(torch.cat([data.x_test, data.truth_b2a_test]), torch.cat([data.truth_a2b_test, data.b_test]))
    model.G_BA = Lookup(torch.cat([data.b_test, data.truth_a2b_test]), torch.cat([data.truth_b2a_test, data.x_test]))
    oracle = evaluate_model(model, data, style_classifier=fonts_style)
    assert oracle["psnr_a2b"] == oracle["psnr_b2a"] == PSNR_CAP and oracle["cycle_l1_a"] == 0.0
    # The truths are real glyphs of the target family that no classifier saw: it puts them there.
    assert oracle["style_transfer_a2b"] >= 0.85 and oracle["style_transfer_b2a"] >= 0.85


def write_domain(folder, n, value=None, seed=0):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        pixels = np.full((16, 16), value, np.uint8) if value is not None else (rng.random((16, 16)) * 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:03d}.png")


def test_junyanz_layout_with_and_without_test_folders(tmp_path):
    for d in ("A", "B"):
        write_domain(tmp_path / "full" / f"train{d}", 30, seed=1)
        write_domain(tmp_path / "full" / f"test{d}", 10, seed=2)
        write_domain(tmp_path / "train-only" / f"train{d}", 30, seed=3)
    assert source_for(str(tmp_path / "full")) == {"name": "unpaired-folder", "root": str(tmp_path / "full")}
    full = prepare(*(lambda c: (read_source(c), c))(DataConfig(name="unpaired-folder", root=str(tmp_path / "full"),
                                                               resolution=16)))
    assert (len(full.x_train), len(full.x_test), len(full.b_train), len(full.b_test)) == (30, 10, 30, 10)
    cfg = DataConfig(name="unpaired-folder", root=str(tmp_path / "train-only"), resolution=16)
    own = prepare(read_source(cfg), cfg)  # no official split: a seeded one per domain
    assert len(own.x_test) == len(own.b_test) == 6 and own.truth_a2b_test is None


def test_two_domains_from_a_folder_and_an_array(tmp_path):
    write_domain(tmp_path / "a", 20)
    np.save(tmp_path / "b.npy", (np.random.default_rng(0).random((24, 16, 16)) * 255).astype(np.uint8))
    cfg = DataConfig(name="two-domains", root=str(tmp_path / "a"), root_b=str(tmp_path / "b.npy"), resolution=16)
    data = prepare(read_source(cfg), cfg)
    assert len(data.x_train) + len(data.x_test) == 20 and len(data.b_train) + len(data.b_test) == 24
    with pytest.raises(DataError, match="data.root_b"):
        read_source(DataConfig(name="two-domains", root=str(tmp_path / "a")))


def test_a_degenerate_domain_fails_validation(tmp_path):
    from pipelines.config import ValidationConfig
    from pipelines.validation import validate

    write_domain(tmp_path / "u" / "trainA", 80)
    write_domain(tmp_path / "u" / "trainB", 80, value=7)  # one blank image, repeated
    report = validate(read_source(DataConfig(name="unpaired-folder", root=str(tmp_path / "u"))), tmp_path / "r",
                      ValidationConfig(min_samples=10))
    failed = {f["check"]: f["example_ids"] for f in report.failures if f["table"] == "domains"}
    assert failed == {"domain_not_degenerate": ["domain B"], "domain_not_blank": ["domain B"]}
    small = validate(read_source(DataConfig(name="unpaired-folder", root=str(tmp_path / "u"))), tmp_path / "r2",
                     ValidationConfig(min_samples=10, min_domain_samples=100))
    assert "domain_size" in {f["check"] for f in small.failures}
