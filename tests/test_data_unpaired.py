"""Two unpaired domains (DataKind.UNPAIRED_IMAGES): the embedded digits-bold set and its known truth, the
readers of two-domain files, and the validation of each domain."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from ganmodels.data import (DataConfig, DataError, DataKind, dataset_has_truth, dataset_kind, dataset_labelled,
                            prepare, read_source)
from ganmodels.data.config import source_for
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
