"""Data-validation tests: per-sample statistics against a brute-force reference, and the GX suites
against clean sklearn digits and injected faults, each of which must fail exactly the right check
and name the offending sample ids."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ganmodels.data.base import SourceData
from pipelines.validation import profiling
from pipelines.validation import (
    DataValidationError,
    ValidationConfig,
    sample_statistics,
    validate,
    validate_or_raise,
)


@pytest.fixture(scope="module")
def digits_raw():
    from sklearn.datasets import load_digits

    d = load_digits()
    return d.images, d.target.astype(np.int64)  # (1797, 8, 8) float64 in 0..16, (1797,)


def make_digits(digits_raw, images=None, labels=None) -> SourceData:
    base_images, base_labels = digits_raw
    images = [im.copy() for im in base_images] if images is None else images
    labels = base_labels.copy() if labels is None else labels
    return SourceData(
        name="digits",
        kind="image",
        samples=images,
        labels=labels,
        ids=[f"digits[train:{i}]" for i in range(len(images))],
        value_range=(0.0, 16.0),
        class_names=[str(k) for k in range(10)],
        origin="sklearn.datasets.load_digits",
    )


def make_points(n: int = 2000, seed: int = 0) -> SourceData:
    rng = np.random.default_rng(seed)
    modes = rng.integers(0, 8, n)
    angles = modes * (2 * np.pi / 8)
    points = np.stack([np.cos(angles), np.sin(angles)], 1) + 0.02 * rng.standard_normal((n, 2))  # (N, 2)
    return SourceData("ring8", "points", points, modes.astype(np.int64), [f"ring8[{i}]" for i in range(n)],
                      (-1.5, 1.5), [f"mode{k}" for k in range(8)], "synthetic")


def failed_checks(report) -> set[str]:
    return {f["check"] for f in report.failures}


def failure(report, check: str) -> dict:
    return next(f for f in report.failures if f["check"] == check)


# --------------------------------------------------------------------------------------------
# sample_statistics
# --------------------------------------------------------------------------------------------


def reference_row(sample: np.ndarray) -> dict:
    """Brute force, one sample at a time, from the definitions in sample_statistics' docstring."""
    values = sample.astype(np.float64).ravel()
    finite = values[np.isfinite(values)]
    return {
        "height": sample.shape[0],
        "width": sample.shape[1],
        "channels": sample.shape[2] if sample.ndim == 3 else 1,
        "dtype": str(sample.dtype),
        "min": finite.min(),
        "max": finite.max(),
        "mean": finite.mean(),
        "std": np.sqrt(((finite - finite.mean()) ** 2).mean()),
        "nan_count": int(np.isnan(values).sum()),
        "inf_count": int(np.isinf(values).sum()),
        "hash": hashlib.sha1(repr(sample.shape).encode() + sample.tobytes()).hexdigest(),
    }


def test_image_statistics_match_brute_force(monkeypatch):
    monkeypatch.setattr(profiling, "_CHUNK_ELEMENTS", 150)  # force several chunks per shape group
    rng = np.random.default_rng(1)
    samples = [rng.integers(0, 255, (8, 8), dtype=np.uint8) for _ in range(5)]
    samples += [rng.random((10, 12, 3)).astype(np.float32) for _ in range(4)]
    samples += [rng.normal(size=(8, 8)) for _ in range(3)]
    samples[2][1, 1] = 7  # keep a value we can spot
    samples[6][0, 0, 0] = np.nan
    samples[7][1, 2, 1] = np.inf
    samples[10][3, 3] = -np.inf
    samples.append(samples[0].copy())  # byte-identical repeat of sample 0
    samples.append(samples[9].copy())  # repeat of a (10, 12, 3) float32 image
    labels = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 1, 0, 5], dtype=np.int64)
    source = SourceData("mixed", "image", samples, labels, [f"f{i}.png" for i in range(len(samples))],
                        (0, 255), [str(k) for k in range(10)])

    stats = sample_statistics(source)

    assert list(stats["id"]) == source.ids
    for i, sample in enumerate(samples):
        row = stats.iloc[i]
        for key, expected in reference_row(sample).items():
            if isinstance(expected, float):
                assert row[key] == pytest.approx(expected, rel=1e-6), (i, key)
            else:
                assert row[key] == expected, (i, key)
    assert list(stats["duplicate"]) == [False] * 12 + [True, True]
    assert list(stats["label_valid"]) == [True] * 10 + [False] + [True] * 3  # 10 is not one of 10 classes


def test_unlabelled_statistics_have_null_labels(digits_raw):
    source = make_digits(digits_raw)
    source.labels = None
    stats = sample_statistics(source)
    assert stats["label"].isna().all() and stats["label_valid"].isna().all()


def test_point_statistics():
    source = make_points(10)
    source.samples[3, 1] = np.inf
    source.samples[4, 0] = np.nan
    stats = sample_statistics(source)
    assert list(stats.columns) == ["id", "x", "y", "finite", "label", "label_valid"]
    np.testing.assert_array_equal(stats[["x", "y"]].to_numpy(), source.samples)
    assert list(stats["finite"]) == [i not in (3, 4) for i in range(10)]


def test_digits_statistics_are_vectorised_and_match_brute_force(digits_raw, monkeypatch):
    """All 1797 digits against the brute-force reference, with the value statistics computed in one
    (N, P) block per group of equal shapes instead of sample by sample: what keeps validating a
    60k-image set to seconds, asserted without timing it (tests never assert timings)."""
    blocks = []
    block_statistics = profiling._block_statistics

    def spy(block):
        blocks.append(block.shape)
        return block_statistics(block)

    monkeypatch.setattr(profiling, "_block_statistics", spy)
    source = make_digits(digits_raw)
    stats = sample_statistics(source)
    assert blocks == [(1797, 64)]  # one shape group, well under _CHUNK_ELEMENTS: a single block
    assert list(stats["id"]) == source.ids and not stats["duplicate"].any()
    expected = pd.DataFrame([reference_row(sample) for sample in source.samples])
    for key in ("min", "max", "mean", "std"):
        np.testing.assert_allclose(stats[key].to_numpy(float), expected[key].to_numpy(float), rtol=1e-9, err_msg=key)
    for key in ("height", "width", "channels", "dtype", "nan_count", "inf_count", "hash"):
        assert list(stats[key]) == list(expected[key]), key


def test_config_from_dict_rejects_unknown_and_bad_values():
    assert ValidationConfig.from_dict({"min_samples": 5}).min_samples == 5
    with pytest.raises(ValueError, match="min_smaples"):
        ValidationConfig.from_dict({"min_smaples": 5})
    with pytest.raises(ValueError, match="max_blank_share"):
        ValidationConfig(max_blank_share=1.5)


# --------------------------------------------------------------------------------------------
# validate: clean data
# --------------------------------------------------------------------------------------------


def test_clean_digits_pass_and_write_artifacts_only_in_out_dir(digits_raw, tmp_path, monkeypatch):
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    out = tmp_path / "validation"

    report = validate(make_digits(digits_raw), out)

    assert report.success, report.format()
    assert report.n_samples == 1797 and report.failures == []
    assert list(cwd.iterdir()) == []  # no gx/ folder or anything else in the cwd
    docs = Path(report.docs_path)
    assert docs.name == "index.html" and docs.is_file() and out in docs.parents
    assert "<html" in docs.read_text()[:2000].lower()
    assert len(pd.read_csv(report.stats_path)) == 1797
    summary = json.loads(Path(report.summary_path).read_text())
    assert summary["success"] is True and summary["n_samples"] == 1797
    assert "passed" in report.format()
    assert validate_or_raise(make_digits(digits_raw), out).success


def test_clean_points_pass(tmp_path):
    report = validate(make_points(), tmp_path)
    assert report.success, report.format()


# --------------------------------------------------------------------------------------------
# validate: injected faults, each failing exactly the right check with the right ids
# --------------------------------------------------------------------------------------------


def test_nan_image_fails_no_nan(digits_raw, tmp_path):
    source = make_digits(digits_raw)
    source.samples[42][3, 4] = np.nan
    report = validate(source, tmp_path)
    assert failed_checks(report) == {"no_nan"}
    assert failure(report, "no_nan")["example_ids"] == ["digits[train:42]"]
    text = report.format()
    assert "expect_column_values_to_be_between" in text and "digits[train:42]" in text


def test_values_out_of_declared_range_fail(digits_raw, tmp_path):
    source = make_digits(digits_raw)
    source.samples[7] = source.samples[7] * 2.0  # max 32 > 16
    source.samples[9][0, 0] = -1.0
    report = validate(source, tmp_path)
    assert failed_checks(report) == {"value_range_high", "value_range_low"}
    assert failure(report, "value_range_high")["example_ids"] == ["digits[train:7]"]
    assert failure(report, "value_range_low")["example_ids"] == ["digits[train:9]"]


def test_invalid_label_fails_label_valid(digits_raw, tmp_path):
    source = make_digits(digits_raw)
    source.labels[100] = 12  # 10 classes
    report = validate(source, tmp_path)
    assert failed_checks(report) == {"label_valid"}
    assert failure(report, "label_valid")["example_ids"] == ["digits[train:100]"]


def test_many_duplicates_fail(digits_raw, tmp_path):
    source = make_digits(digits_raw)
    copies = list(range(500, 560))  # 60 repeats of sample 0: 3.3% > 1% tolerated
    for i in copies:
        source.samples[i] = source.samples[0].copy()
    report = validate(source, tmp_path)
    assert failed_checks(report) == {"not_duplicate"}
    f = failure(report, "not_duplicate")
    assert f["unexpected_count"] == len(copies)
    assert f["example_ids"] == [f"digits[train:{i}]" for i in copies[:5]]  # the repeats, not the original


def test_missing_class_fails_presence(digits_raw, tmp_path):
    images, labels = digits_raw
    keep = labels != 3
    source = make_digits(digits_raw, images=[im.copy() for im in images[keep]], labels=labels[keep].copy())
    report = validate(source, tmp_path)
    assert failed_checks(report) == {"class_present"}
    assert failure(report, "class_present")["example_ids"] == ["class 3 (3)"]


def test_extreme_imbalance_fails_balance(digits_raw, tmp_path):
    images, labels = digits_raw
    keep = (labels != 3) | (np.cumsum(labels == 3) <= 5)  # only 5 threes against ~180 of the others
    source = make_digits(digits_raw, images=[im.copy() for im in images[keep]], labels=labels[keep].copy())
    report = validate(source, tmp_path)
    assert failed_checks(report) == {"class_balance"}
    assert failure(report, "class_balance")["example_ids"] == ["class 3 (3)"]
    assert "class_balance" in report.format()


def test_blank_images_beyond_tolerated_share_fail(digits_raw, tmp_path):
    few = make_digits(digits_raw)
    few.samples[10] = np.full((8, 8), 3.0)  # one blank in 1797 is within the tolerated 1%
    assert validate(few, tmp_path / "few").success

    source = make_digits(digits_raw)
    blanks = list(range(200, 260))  # 3.3% blank; distinct constants so they are not duplicates too
    for k, i in enumerate(blanks):
        source.samples[i] = np.full((8, 8), 16.0 * k / len(blanks))
    report = validate(source, tmp_path / "many")
    assert failed_checks(report) == {"not_blank"}
    assert failure(report, "not_blank")["example_ids"] == [f"digits[train:{i}]" for i in blanks[:5]]


def test_five_channel_image_fails_channels(digits_raw, tmp_path):
    source = make_digits(digits_raw)
    source.samples[5] = np.stack([source.samples[5]] * 5, axis=-1)  # (8, 8, 5): no image mode has five
    report = validate(source, tmp_path)
    assert failed_checks(report) == {"channels"}
    assert failure(report, "channels")["example_ids"] == ["digits[train:5]"]
    assert "validation.allowed_channels" in report.format()  # the policy's setting is named


def test_grey_alpha_and_rgba_images_pass_channels(digits_raw, tmp_path):
    """Alpha is dropped when preparing (ganmodels.data.imaging.drop_alpha), so 2 and 4 channels train."""
    source = make_digits(digits_raw)
    source.samples[5] = np.stack([source.samples[5], np.full_like(source.samples[5], 16)], axis=-1)  # (8, 8, 2)
    source.samples[6] = np.stack([source.samples[6]] * 3 + [np.full_like(source.samples[6], 16)], axis=-1)
    assert "channels" not in failed_checks(validate(source, tmp_path))


def test_points_with_inf_fail_finite(tmp_path):
    source = make_points()
    source.samples[17, 1] = np.inf
    report = validate(source, tmp_path)
    assert failed_checks(report) == {"finite", "y_bound"}  # inf is both non-finite and out of bounds
    assert failure(report, "finite")["example_ids"] == ["ring8[17]"]


def test_validate_or_raise_names_expectation_ids_and_docs(digits_raw, tmp_path):
    source = make_digits(digits_raw)
    source.samples[3][0, 0] = np.inf
    with pytest.raises(DataValidationError) as caught:
        validate_or_raise(source, tmp_path)
    message = str(caught.value)
    report = caught.value.report
    assert not report.success and failed_checks(report) == {"no_inf"}
    assert "expect_column_values_to_be_between" in message and "no_inf" in message
    assert "digits[train:3]" in message
    assert report.docs_path in message and Path(report.docs_path).is_file()


def test_constant_float_image_has_exactly_zero_std():
    # np.full((8, 8), 0.8).std() is ~1e-16, not 0: blank detection must not depend on rounding.
    source = SourceData("c", "image", [np.full((8, 8), 0.8), np.full((4, 4, 3), 0.1, np.float32)], None,
                        ["a", "b"], (0, 1))
    assert list(sample_statistics(source)["std"]) == [0.0, 0.0]
