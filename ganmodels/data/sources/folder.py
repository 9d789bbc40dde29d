"""``folder``: a directory of image files of any sizes and modes, read with PIL.

Labels follow torchvision's ImageFolder convention: when no image lies directly in the root,
each image's first-level sub-folder is its class (sorted names -> 0, 1, ...), wherever it sits
beneath it. A single sub-folder (``celeba/img_align_celeba/``) is a container, not a class, so
the set is then unlabeled, as it is when some images lie directly in the root.

Samples are kept at their native size and bit depth. Only modes whose pixel values are not
intensities are decoded: palette (P, PA) to RGB(A), bilevel (1) to L, and CMYK/YCbCr/LAB/HSV to
RGB. EXIF orientation is applied and only the first frame of animated files is read. 8-bit
images declare the range (0, 255), 16-bit ones (I;16*, and I as PIL opens some 16-bit PNGs)
(0, 65535). A folder mixing the two is read with each image scaled by its own range onto float32
[0, 1] (declared range (0, 1)), so a 16-bit image is neither refused nor read as too bright;
floating-point images are refused.

Hostile files fail with a ``DataError`` naming the file, never a crash or an exhausted memory:
files are identified by their content, not their extension (a JPEG named ``.png`` is read as the
JPEG it is; a text file named ``.png`` is "cannot read image file"); zero-byte and truncated files
are unreadable; an image declaring more than ``MAX_IMAGE_PIXELS`` pixels (PIL's decompression-bomb
limit, ~89 megapixels) is refused from its header, before any pixel is decoded; a symbolic link
whose target is missing or loops is named. Files without an image extension are ignored, as
torchvision's ImageFolder does; symbolic links to directories are not followed (a loop cannot
trap the reader). A class sub-folder without images is an error (ImageFolder's rule too): it
would otherwise silently drop a class or turn a labelled set into an unlabelled one.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ganmodels.data.base import DataConfig, DataError, SourceData
from ganmodels.data.kinds import DataKind, kind_of
from ganmodels.data.registry import register_dataset
from ganmodels.data.splits import cap_indices

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".pgm", ".png", ".ppm", ".tif", ".tiff", ".webp")

# Modes decoded on reading (see module docstring); the rest are kept as they are.
_DECODE = {"1": "L", "PA": "RGBA", "CMYK": "RGB", "YCbCr": "RGB", "LAB": "RGB", "HSV": "RGB", "La": "LA", "RGBa": "RGBA", "RGBX": "RGB"}
_EIGHT_BIT = {"L", "LA", "RGB", "RGBA"}
_SIXTEEN_BIT = {"I;16", "I;16L", "I;16B", "I;16N", "I"}


# PIL's own decompression-bomb threshold (it only warns between 1x and 2x of it, and decodes).
MAX_IMAGE_PIXELS = 89_478_485


def find_images(root: Path) -> list[Path]:
    """Image files under ``root`` in a fixed order (sorted relative paths), hidden entries skipped.

    A symbolic link with an image extension whose target is missing or loops raises ``DataError``.
    """
    found = []
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):
            continue
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            continue
        if path.is_symlink() and not path.exists():  # exists() is False for a missing target and for a loop
            raise DataError(f"image file {path} is a broken symbolic link (its target is missing or the links loop); "
                            "remove it or point it at an image")
        if path.is_file():
            found.append(rel)
    return sorted(found, key=lambda p: p.as_posix())


def empty_class_folders(root: Path, relpaths: list[Path]) -> list[str]:
    """First-level sub-folders without images, when the images are labelled by sub-folder."""
    used = {p.parts[0] for p in relpaths if len(p.parts) >= 2}
    if not used or any(len(p.parts) < 2 for p in relpaths):
        return []
    return sorted(d.name for d in root.iterdir()
                  if d.is_dir() and not d.is_symlink() and not d.name.startswith(".") and d.name not in used)


def class_labels(relpaths: list[Path]) -> tuple[np.ndarray | None, list[str] | None]:
    """ImageFolder labels from the first-level sub-folders, or (None, None) when unlabeled."""
    if any(len(p.parts) < 2 for p in relpaths):
        return None, None
    class_names = sorted({p.parts[0] for p in relpaths})
    if len(class_names) < 2:
        return None, None
    index = {c: i for i, c in enumerate(class_names)}
    return np.array([index[p.parts[0]] for p in relpaths], dtype=np.int64), class_names


def read_image(path: Path) -> tuple[np.ndarray, int]:
    """Pixel array ``(H, W)`` or ``(H, W, C)`` in its native dtype, and its bit depth (8 or 16)."""
    from PIL import Image, ImageOps

    try:
        with warnings.catch_warnings():  # PIL's bomb warning: the check below refuses such files itself
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(path)  # reads the header only
        with img:
            if img.width * img.height > MAX_IMAGE_PIXELS:
                raise DataError(f"image file {path} declares {img.width}x{img.height} pixels, over the "
                                f"{MAX_IMAGE_PIXELS:,}-pixel limit (a decompression bomb, or an image far too "
                                "large to train on); remove it or downscale it")
            img.seek(0)
            img = ImageOps.exif_transpose(img)  # also loads the pixels, so decoding errors surface here
            if img.mode == "P":
                img = img.convert("RGBA" if "transparency" in img.info else "RGB")
            elif img.mode in _DECODE:
                img = img.convert(_DECODE[img.mode])
            mode = img.mode
            pixels = np.asarray(img)
    except DataError:
        raise
    except Exception as e:  # PIL raises many types for corrupt files (OSError, SyntaxError, ValueError...)
        if type(e).__name__ == "DecompressionBombError":  # over 2x PIL's limit, refused by PIL itself
            raise DataError(f"image file {path} is a decompression bomb: {e}; remove it or downscale it") from e
        raise DataError(f"cannot read image file {path}: {type(e).__name__}: {e}") from e
    if mode in _EIGHT_BIT:
        return pixels, 8
    if mode in _SIXTEEN_BIT:
        if mode == "I" and pixels.size and (pixels.min() < 0 or pixels.max() > 65535):
            raise DataError(f"image file {path} is 32-bit integer with values outside 0..65535; convert it to 8 or 16 bit")
        return pixels, 16
    raise DataError(f"image file {path} has PIL mode {mode!r}, which is not supported; save it as 8- or 16-bit L/RGB(A)")


def common_range(samples: list[np.ndarray | None], depths: list[int | None]
                 ) -> tuple[list[np.ndarray | None], tuple[float, float]]:
    """The samples and the one value range that describes them all (``None`` entries pass through).

    One bit depth: the samples unchanged, (0, 255) or (0, 65535). Mixed 8- and 16-bit: each image
    divided by its own full scale into float32 [0, 1], range (0, 1): a 16-bit image is not 256 times
    brighter than an 8-bit one of the same picture.
    """
    present = {d for d in depths if d is not None}
    if len(present) <= 1:
        return samples, (0.0, 65535.0) if present == {16} else (0.0, 255.0)
    return [None if s is None else (s.astype(np.float32) / (255.0 if d == 8 else 65535.0))
            for s, d in zip(samples, depths)], (0.0, 1.0)


def folder_kind(cfg: DataConfig) -> DataKind:
    """Labelled images when the folder has class sub-folders (file names only, nothing decoded)."""
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise DataError(f"folder data set: data.root {root} is not a directory")
    relpaths = find_images(root)
    if not relpaths:  # said here, before the kind (unlabelled) leads to a misleading model or metric refusal
        raise DataError(
            f"folder data set: no image files found under {root}; accepted extensions: {', '.join(IMAGE_EXTENSIONS)}")
    labels, _ = class_labels(relpaths)
    return kind_of("image", labelled=labels is not None)


@register_dataset("folder", kind=folder_kind,
                  description="a directory of images (sub-folders as classes), read with PIL")
def read_folder(cfg: DataConfig) -> SourceData:
    root = Path(cfg.root or "")
    if not root.is_dir():
        raise DataError(f"folder data set: data.root {root} is not a directory")
    relpaths = find_images(root)
    if not relpaths:
        raise DataError(
            f"folder data set: no image files found under {root}; accepted extensions: {', '.join(IMAGE_EXTENSIONS)}"
        )
    labels, class_names = class_labels(relpaths)
    empty = empty_class_folders(root, relpaths)
    if empty:
        raise DataError(f"folder {root}: class sub-folder(s) {empty} hold no image files; add images or remove them "
                        f"(accepted extensions: {', '.join(IMAGE_EXTENSIONS)})")
    # Cap before decoding: a quick run on a large folder should not read every file.
    keep = cap_indices(labels, None, len(relpaths), cfg.max_samples, cfg.split_seed)
    relpaths = [relpaths[i] for i in keep]
    labels = None if labels is None else labels[keep]

    samples, depths = [], []
    for rel in relpaths:
        pixels, depth = read_image(root / rel)
        samples.append(pixels)
        depths.append(depth)
    samples, value_range = common_range(samples, depths)
    return SourceData(
        name="folder",
        kind="image",
        samples=samples,
        labels=labels,
        ids=[p.as_posix() for p in relpaths],
        value_range=value_range,
        class_names=class_names,
        origin=str(root),
    )
