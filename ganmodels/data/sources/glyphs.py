"""``glyphs``: characters rendered from the fonts inside the matplotlib wheel, and the paired sets built on them.

No download: DejaVu (Sans, Sans Mono, Serif: 12 faces), STIX General (4 faces) and Computer Modern
(roman, sans, typewriter, bold, italic) ship as TrueType files in ``matplotlib/mpl-data/fonts/ttf``.
Each of the 36 characters 0-9 and A-Z is drawn in each face at three sizes (glyph heights of about
16, 20 and 24 px), as light ink (255) on a dark background (0) like the digits, centred by its ink
bounding box in a 32x32 canvas, with FreeType's anti-aliasing through Pillow. The drawing is
deterministic, so the data set and its hash are reproducible on one software stack (a different
FreeType may shift edge pixels).

Labels are the characters (36 classes). ``data.fonts`` is not a field: the face of a sample is in
its id (``glyphs[DejaVuSans:A:20]``), and ``glyph_faces()``/``render_glyphs(faces=...)`` let a
benchmark keep faces out of training.

Paired sets (``DataKind.PAIRED_IMAGES``; the samples are the targets, inputs derived from them):
* ``glyphs-sr``: super-resolution 16x16 -> 32x32 (inputs are the 2x2 block means of the targets);
* ``glyphs-edges``: glyph outline (a 3x3 morphological gradient) -> filled glyph, the classic
  pix2pix edges -> object task;
* ``digits-sr`` (in ``digits.py``): 4x4 -> 8x8 digits.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind
from ganmodels.data.registry import register_dataset
from ganmodels.data.splits import cap_indices

CHARACTERS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
GLYPH_HEIGHTS = (16, 20, 24)  # target height of a capital letter's ink, in pixels of the 32x32 canvas
CANVAS = 32
FACES = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
    "cmr10", "cmss10", "cmtt10", "cmb10", "cmti10",
)


def font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def glyph_faces() -> tuple[str, ...]:
    return FACES


@lru_cache(maxsize=None)
def _font(face: str, size: int):
    from PIL import ImageFont

    path = font_dir() / f"{face}.ttf"
    if not path.is_file():
        raise DataError(f"glyphs: font file {path} not found (it ships with matplotlib; reinstall matplotlib)")
    return ImageFont.truetype(str(path), size=size)


@lru_cache(maxsize=None)
def _point_size(face: str, height: int) -> int:
    """The point size at which the face's capital H is ``height`` px tall (faces differ in cap height)."""
    size = height
    for _ in range(8):  # fixed-point iteration on the measured cap height
        left, top, right, bottom = _font(face, size).getbbox("H")
        measured = max(1, bottom - top)
        nxt = max(4, round(size * height / measured))
        if nxt == size:
            break
        size = nxt
    return size


def _draw(face: str, char: str, size: int) -> np.ndarray:
    """The ink of ``char`` at point ``size``, cropped to its bounding box (uint8)."""
    from PIL import Image, ImageDraw

    big = Image.new("L", (3 * CANVAS, 3 * CANVAS), 0)
    ImageDraw.Draw(big).text((CANVAS, CANVAS), char, fill=255, font=_font(face, size))
    ink = np.asarray(big)
    rows, cols = np.flatnonzero(ink.any(axis=1)), np.flatnonzero(ink.any(axis=0))
    if len(rows) == 0:
        raise DataError(f"glyphs: {face} draws nothing for {char!r}")
    return ink[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1]


def render_glyph(face: str, char: str, height: int) -> np.ndarray:
    """uint8 (32, 32): ``char`` in ``face``, ink 255 on 0, centred by its ink bounding box.

    A glyph too wide for the canvas at ``height`` (W, M in bold faces) is drawn at the largest point
    size that leaves a one-pixel margin: redrawn by FreeType, never resampled.
    """
    size = _point_size(face, height)
    crop = _draw(face, char, size)
    while max(crop.shape) > CANVAS - 2 and size > 4:
        size -= 1
        crop = _draw(face, char, size)
    h, w = crop.shape
    out = np.zeros((CANVAS, CANVAS), dtype=np.uint8)
    top, left = (CANVAS - h) // 2, (CANVAS - w) // 2
    out[top:top + h, left:left + w] = crop
    return out


def render_glyphs(faces: tuple[str, ...] = FACES) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """(images uint8 (32, 32), labels int64 (N,), ids) for every face x character x height."""
    images, labels, ids = [], [], []
    for face in faces:
        for label, char in enumerate(CHARACTERS):
            for height in GLYPH_HEIGHTS:
                images.append(render_glyph(face, char, height))
                labels.append(label)
                ids.append(f"glyphs[{face}:{char}:{height}]")
    return images, np.asarray(labels, dtype=np.int64), ids


@lru_cache(maxsize=2)
def _all_glyphs() -> tuple[tuple[np.ndarray, ...], np.ndarray, tuple[str, ...]]:
    images, labels, ids = render_glyphs()
    return tuple(images), labels, tuple(ids)


def read_glyph_source(cfg: DataConfig, name: str, derive: tuple[str, int] | None = None) -> SourceData:
    images, labels, ids = _all_glyphs()
    keep = cap_indices(labels, None, len(labels), cfg.max_samples, cfg.split_seed)
    return SourceData(
        name=name,
        kind="image",
        samples=[images[i] for i in keep],
        labels=labels[keep],
        ids=[ids[i].replace("glyphs[", f"{name}[") for i in keep],
        value_range=(0.0, 255.0),
        class_names=list(CHARACTERS),
        origin=f"{len(FACES)} faces from {font_dir()} x {len(CHARACTERS)} characters x heights {GLYPH_HEIGHTS}",
        derive=derive,
    )


@register_dataset("glyphs", kind=DataKind.LABELLED_IMAGES,
                  description="0-9 and A-Z rendered from the fonts in the matplotlib wheel, 32x32, 36 classes")
def read_glyphs(cfg: DataConfig) -> SourceData:
    return read_glyph_source(cfg, "glyphs")


@register_dataset("glyphs-sr", kind=DataKind.PAIRED_IMAGES, labelled=True,
                  description="super-resolution of rendered glyphs, 16x16 -> 32x32 (paired)")
def read_glyphs_sr(cfg: DataConfig) -> SourceData:
    return read_glyph_source(cfg, "glyphs-sr", derive=("sr", 2))


@register_dataset("glyphs-edges", kind=DataKind.PAIRED_IMAGES, labelled=True,
                  description="glyph outline -> filled glyph, 32x32 (paired)")
def read_glyphs_edges(cfg: DataConfig) -> SourceData:
    return read_glyph_source(cfg, "glyphs-edges", derive=("edges", 1))
