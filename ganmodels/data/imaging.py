"""Raw images -> model-ready float32 ``(N, C, R, R)`` in [-1, 1], bit-for-bit reproducibly.

Why not ``torch.nn.functional.interpolate``: its CPU kernels pick SIMD paths by CPU model, and
a matrix product picks BLAS kernels, so the last bit of a result can differ between machines,
which would change ``data_hash`` (the data version) for the same config. Here resizing is a
fixed sequence of element-wise float64 multiply-adds (each correctly rounded under IEEE 754,
hence identical everywhere), rounded once to float32 at the end. The filter is the one of
PIL's ``Image.resize(BILINEAR)`` and of ``interpolate(mode="bilinear", antialias=True)``: a
triangle kernel widened by the scale factor when downscaling (antialiasing), which reduces to
plain bilinear interpolation (``align_corners=False``) when upscaling. tests/test_data_imaging.py
checks it against both.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import torch

from ganmodels.data.base import DataError

# ITU-R BT.601 luma, the weights of PIL's convert("L"), so grey versions of colour images look
# as they would in any image viewer.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)

# Float64 working memory per chunk of same-size images.
CHUNK_BYTES = 64 * 2**20


@lru_cache(maxsize=64)
def resize_weights(in_size: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Taps of a 1-D bilinear/antialias resize: ``out[i] = sum_t w[i, t] * in[idx[i, t]]``.

    Returns ``idx`` int64 ``(out_size, T)`` and ``w`` float64 ``(out_size, T)``; unused taps have
    weight 0 and index 0. PIL's ImagingResample (libImaging/Resample.c, ``precompute_coeffs``).
    """
    scale = in_size / out_size
    support = max(scale, 1.0)  # triangle half-width in input pixels: widened when downscaling
    centers = (np.arange(out_size) + 0.5) * scale
    first = np.maximum(np.floor(centers - support + 0.5), 0).astype(np.int64)
    last = np.minimum(np.floor(centers + support + 0.5), in_size).astype(np.int64)  # exclusive
    taps = int((last - first).max())
    idx = first[:, None] + np.arange(taps)[None, :]  # (out, T)
    valid = idx < last[:, None]
    w = np.where(valid, np.maximum(0.0, 1.0 - np.abs((idx - centers[:, None] + 0.5) / support)), 0.0)
    total = np.zeros(out_size)
    for t in range(taps):  # a fixed summation order, not np.sum's blocked one
        total += w[:, t]
    w = w / total[:, None]
    idx = np.where(valid, idx, 0)
    idx.setflags(write=False)
    w.setflags(write=False)
    return idx, w


def resize_axis(x: np.ndarray, out_size: int, axis: int) -> np.ndarray:
    """Resize float64 ``x`` along ``axis`` to ``out_size`` (see module docstring for why by hand)."""
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    idx, w = resize_weights(in_size, out_size)
    along = [1] * x.ndim
    along[axis] = out_size  # weights broadcast along ``axis``
    shape = list(x.shape)
    shape[axis] = out_size
    out = np.zeros(shape, dtype=np.float64)
    for t in range(idx.shape[1]):
        out += np.take(x, idx[:, t], axis=axis) * w[:, t].reshape(along)
    return out


def center_crop_square(x: np.ndarray) -> np.ndarray:
    """The central ``s x s`` square of ``x`` ``(..., H, W)``, ``s = min(H, W)``: resizing must not
    distort the aspect ratio."""
    h, w = x.shape[-2:]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[..., top : top + s, left : left + s]


def to_channels_first(batch: np.ndarray) -> np.ndarray:
    """``(B, H, W)`` or ``(B, H, W, C)`` -> ``(B, C, H, W)``."""
    return batch[:, None] if batch.ndim == 3 else np.moveaxis(batch, -1, 1)


def drop_alpha(x: np.ndarray) -> np.ndarray:
    """Grey+alpha -> grey, RGBA -> RGB on ``(B, C, H, W)``: alpha is dropped, as PIL's
    convert("RGB") and torchvision's ImageFolder loader do."""
    c = x.shape[1]
    if c in (2, 4):
        return x[:, : c - 1]
    if c not in (1, 3):
        raise DataError(f"images with {c} channels are not supported; use 1 (grey), 2 (grey+alpha), 3 (RGB) or 4 (RGBA)")
    return x


def luma(x: np.ndarray) -> np.ndarray:
    """RGB ``(B, 3, H, W)`` -> grey ``(B, 1, H, W)``."""
    r, g, b = LUMA_WEIGHTS
    return (x[:, 0:1] * r + x[:, 1:2] * g) + x[:, 2:3] * b


def default_channels(samples: Sequence[np.ndarray]) -> int:
    """3 if any sample is colour (3 or 4 channels), else 1."""
    return 3 if any(s.ndim == 3 and s.shape[-1] >= 3 for s in samples) else 1


def check_values(batch: np.ndarray, ids: Sequence[str], value_range: tuple[float, float]) -> None:
    """Refuse non-finite values or values outside the declared range, naming the samples:
    scaling would otherwise silently push them outside [-1, 1]."""
    lo, hi = value_range
    flat = batch.reshape(len(batch), -1)
    with np.errstate(invalid="ignore"):
        bad = ~np.all(np.isfinite(flat) & (flat >= lo) & (flat <= hi), axis=1)
    if bad.any():
        names = [ids[i] for i in np.flatnonzero(bad)[:5]]
        raise DataError(
            f"{int(bad.sum())} sample(s) hold NaN/inf or values outside the declared range {value_range}, "
            f"e.g. {names}; fix the source or its declared range"
        )


def scale_to_unit(batch: np.ndarray, value_range: tuple[float, float]) -> np.ndarray:
    """Map ``value_range`` linearly onto [-1, 1] in float64 (division keeps the end points exact)."""
    lo, hi = float(value_range[0]), float(value_range[1])
    if not hi > lo:
        raise DataError(f"declared value range {value_range} is empty; it must satisfy low < high")
    return (batch.astype(np.float64) - lo) / (hi - lo) * 2.0 - 1.0


def prepare_chunk(
    batch: np.ndarray, ids: Sequence[str], value_range: tuple[float, float], resolution: int, channels: int
) -> np.ndarray:
    """Same-size raw images ``(B, H, W[, C])`` -> float32 ``(B, channels, resolution, resolution)``."""
    check_values(batch, ids, value_range)
    x = drop_alpha(to_channels_first(scale_to_unit(batch, value_range)))  # (B, C, H, W)
    if channels == 1 and x.shape[1] == 3:
        x = luma(x)  # before resizing: a third of the work
    x = center_crop_square(x)
    x = resize_axis(resize_axis(x, resolution, axis=2), resolution, axis=3)
    if channels == 3 and x.shape[1] == 1:
        x = np.repeat(x, 3, axis=1)
    return np.clip(x, -1.0, 1.0).astype(np.float32)


def prepare_images(
    samples: Sequence[np.ndarray],
    ids: Sequence[str],
    value_range: tuple[float, float],
    resolution: int,
    channels: int,
) -> torch.Tensor:
    """Raw images of any sizes -> float32 ``(N, channels, resolution, resolution)`` in [-1, 1].

    Images of the same shape and dtype are processed together, in chunks of bounded memory.
    """
    out = torch.empty((len(samples), channels, resolution, resolution), dtype=torch.float32)
    groups: dict[tuple, list[int]] = {}
    for i, s in enumerate(samples):
        if s.ndim not in (2, 3):
            raise DataError(f"sample {ids[i]} has shape {s.shape}; images must be (H, W) or (H, W, C)")
        groups.setdefault((s.shape, s.dtype.str), []).append(i)
    for (shape, _), members in groups.items():
        per_chunk = max(1, CHUNK_BYTES // (8 * int(np.prod(shape))))
        for start in range(0, len(members), per_chunk):
            rows = members[start : start + per_chunk]
            batch = np.stack([np.asarray(samples[i]) for i in rows])
            chunk = prepare_chunk(batch, [ids[i] for i in rows], value_range, resolution, channels)
            out[torch.as_tensor(rows)] = torch.from_numpy(chunk)
    return out
