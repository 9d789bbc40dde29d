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

Unpaired set (``DataKind.UNPAIRED_IMAGES``), style transfer between two font families:
* ``glyphs-fonts``: domain A = DejaVu Sans, domain B = DejaVu Serif, each in its four faces (regular,
  bold, oblique/italic, bold oblique/bold italic, paired in ``FONT_PAIRS``), all 36 characters, glyph
  heights 16-24 px in steps of 2 (``FONT_HEIGHTS``). Every (face pair, character, height) is drawn in
  one family only: a seeded pick stratified by face pair and character puts half of them in A and
  half in B, so the domains share no glyph and training never sees a pair. The other family's
  drawing of each sample (same character, height, weight and slant) is its known counterpart, never
  a sample of the set: the truth of the held-out translations (``SourceData.counterparts``). Wide
  glyphs clamped to the same drawing at several heights are kept once (``_distinct_drawings``):
  707 glyphs, 353 in A and 354 in B.
  Why this pair and these sizes: serif vs sans is the style difference font-transfer work starts
  from, and the two DejaVu families share metrics, weights and slants, so the counterpart is well
  defined. At the default ``data.resolution: 16`` a full ``ganpipe run`` takes about 3-4 minutes on
  one CPU thread (1,500 steps; 24 px would take 2.25x as long per step, too close to the 10-minute
  budget of a run), the character classifier still reads 100% of the held-out glyphs, so no
  confusable characters (0/O, 1/I) had to be dropped, and the style classifier tells the real
  families apart on 0.94 of them: serifs are one or two pixels at this size, and O, 0, Z or I barely
  differ between the families. Five heights rather than three give 353/354 glyphs per domain instead
  of ~215.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind
from ganmodels.data.registry import register_dataset
from ganmodels.data.splits import STREAM_DOMAINS, cap_indices, seeded_rng, stratified_pick

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


def render_glyphs(faces: tuple[str, ...] = FACES,
                  heights: tuple[int, ...] = GLYPH_HEIGHTS) -> tuple[list[np.ndarray], np.ndarray, list[str]]:
    """(images uint8 (32, 32), labels int64 (N,), ids) for every face x character x height."""
    images, labels, ids = [], [], []
    for face in faces:
        for label, char in enumerate(CHARACTERS):
            for height in heights:
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


# glyphs-fonts: (domain A face, its domain B counterpart), same weight and slant.
FONT_PAIRS = (("DejaVuSans", "DejaVuSerif"), ("DejaVuSans-Bold", "DejaVuSerif-Bold"),
              ("DejaVuSans-Oblique", "DejaVuSerif-Italic"), ("DejaVuSans-BoldOblique", "DejaVuSerif-BoldItalic"))
FONT_HEIGHTS = (16, 18, 20, 22, 24)


def _distinct_drawings(*families: list[np.ndarray]) -> np.ndarray:
    """Indices of the glyphs whose drawing in every family differs from all the earlier ones.

    Glyphs too wide for the canvas (W, M, bold H) are drawn at the same clamped size at several
    heights (``render_glyph``): the same image twice would let the truth of a held-out glyph be a
    training image of the other domain, so only its first (smallest) height is kept.
    """
    seen: list[set[bytes]] = [set() for _ in families]
    keep = []
    for i in range(len(families[0])):
        drawings = [family[i].tobytes() for family in families]
        if not any(d in s for d, s in zip(drawings, seen)):
            keep.append(i)
        for d, s in zip(drawings, seen):
            s.add(d)
    return np.asarray(keep, dtype=np.int64)


@register_dataset("glyphs-fonts", kind=DataKind.UNPAIRED_IMAGES, labelled=True, truth=True,
                  description="two unpaired domains: glyphs in DejaVu Sans and other glyphs in DejaVu Serif, 36 "
                              "classes (the truth of every translation is known)")
def read_glyphs_fonts(cfg: DataConfig) -> SourceData:
    sans, labels, ids = render_glyphs(tuple(a for a, _ in FONT_PAIRS), FONT_HEIGHTS)
    serif, _, serif_ids = render_glyphs(tuple(b for _, b in FONT_PAIRS), FONT_HEIGHTS)  # row i pairs with row i
    pair = np.repeat(np.arange(len(FONT_PAIRS)), len(CHARACTERS) * len(FONT_HEIGHTS))
    distinct = _distinct_drawings(sans, serif)
    keep = distinct[cap_indices(labels[distinct], None, len(distinct), cfg.max_samples, cfg.split_seed)]
    # Half of each (face pair, character) goes to A, the other half to B (a seeded, stratified pick):
    # each glyph is drawn in one family only, so training never sees it in both styles.
    strata = pair[keep] * len(CHARACTERS) + labels[keep]
    in_a = np.zeros(len(keep), dtype=bool)
    in_a[stratified_pick(strata, len(keep), len(keep) // 2, seeded_rng(cfg.split_seed, STREAM_DOMAINS))] = True
    domain = ["A" if a else "B" for a in in_a]
    pick = lambda i, a: (sans if a else serif)[i]  # noqa: E731
    return SourceData(
        name="glyphs-fonts",
        kind="image",
        samples=[pick(i, a) for i, a in zip(keep, in_a)],
        labels=labels[keep],
        ids=[(ids if a else serif_ids)[i].replace("glyphs[", "glyphs-fonts[") for i, a in zip(keep, in_a)],
        value_range=(0.0, 255.0),
        class_names=list(CHARACTERS),
        origin=f"{font_dir()}: {', '.join(a for a, _ in FONT_PAIRS)} (A) and their DejaVu Serif counterparts (B) "
               f"x {len(CHARACTERS)} characters x heights {FONT_HEIGHTS}",
        domain=domain,
        counterparts=[pick(i, not a) for i, a in zip(keep, in_a)],
    )
