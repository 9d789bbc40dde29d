"""``digits``: scikit-learn's bundled 8x8 handwritten digits (UCI optdigits test set).

1,797 images with values 0..16 and 10 classes, shipped inside scikit-learn: no download, so it is
the default for tests and quick runs.
"""

from __future__ import annotations

import numpy as np

from ganmodels.data.base import DataConfig, SourceData
from ganmodels.data.kinds import DataKind
from ganmodels.data.registry import register_dataset
from ganmodels.data.splits import STREAM_DOMAINS, cap_indices, seeded_rng, stratified_pick


@register_dataset("digits", kind=DataKind.LABELLED_IMAGES,
                  description="scikit-learn's bundled 8x8 digits, 1,797 images, 10 classes")
def read_digits(cfg: DataConfig) -> SourceData:
    return read_digit_source(cfg, "digits")


@register_dataset("digits-sr", kind=DataKind.PAIRED_IMAGES, labelled=True,
                  description="super-resolution of the digits, 4x4 -> 8x8 (the 8x8 images are the real resolution)")
def read_digits_sr(cfg: DataConfig) -> SourceData:
    return read_digit_source(cfg, "digits-sr", derive=("sr", 2))


@register_dataset("digits-bold", kind=DataKind.UNPAIRED_IMAGES, labelled=True, truth=True,
                  description="two unpaired domains: digits, and other digits with strokes thickened by a 3x3 "
                              "dilation at the prepared size (the truth of every translation is known)")
def read_digits_bold(cfg: DataConfig) -> SourceData:
    source = read_digit_source(cfg, "digits-bold", derive=("dilate", 3))
    # Half of each class is domain A and the other half domain B (a seeded, stratified pick), so the
    # domains share no digit and training never sees an image in both styles.
    in_a = np.zeros(len(source), dtype=bool)
    in_a[stratified_pick(source.labels, len(source), len(source) // 2, seeded_rng(cfg.split_seed, STREAM_DOMAINS))] = True
    source.domain = ["A" if a else "B" for a in in_a]
    source.ids = [f"{i}:{d}" for i, d in zip(source.ids, source.domain)]
    return source


def read_digit_source(cfg: DataConfig, name: str, derive: tuple[str, int] | None = None) -> SourceData:
    from sklearn.datasets import load_digits  # heavy import, only when used

    bunch = load_digits()
    images = bunch.images  # (1797, 8, 8) float64, values 0..16
    labels = bunch.target.astype(np.int64)
    keep = cap_indices(labels, None, len(labels), cfg.max_samples, cfg.split_seed)
    return SourceData(
        name=name,
        kind="image",
        samples=[images[i] for i in keep],
        labels=labels[keep],
        ids=[f"{name}[all:{i}]" for i in keep],
        value_range=(0.0, 16.0),  # 4x4 blocks of 32x32 bitmaps: counts of set pixels
        class_names=[str(c) for c in range(10)],
        origin="sklearn.datasets.load_digits",
        derive=derive,
    )
