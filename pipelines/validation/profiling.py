"""Per-sample profiling of raw ``SourceData`` with numpy alone: the tables the GX suites judge.

``sample_statistics`` turns the source into a plain per-sample table (shape, dtype, value
statistics, NaN/inf counts, label validity, content hash); ``class_counts`` into a per-class
count table. Fast and testable without Great Expectations.
"""

from __future__ import annotations

import hashlib
import warnings

import numpy as np
import pandas as pd

from ganmodels.data.base import DataError, SourceData

# Elements per chunk when stacking equally shaped images into float64: 2**24 * 8 bytes = 128 MiB,
# so CIFAR-size sets (50k x 3072) never materialise as one 1.2 GB array.
_CHUNK_ELEMENTS = 1 << 24


def sample_statistics(source: SourceData) -> pd.DataFrame:
    """One row per sample; columns depend on ``source.kind``.

    images: id, ndim, height, width, channels, dtype, min, max, mean, std, nan_count, inf_count,
      label (nullable Int64), label_valid (nullable boolean, NA when unlabelled), hash, duplicate.
      min/max/mean/std are taken over the finite values only, so a NaN or inf shows up in its own
      count column and not again as an out-of-range value; std is the population std (ddof=0),
      exactly 0 for constant images (min == max).
      hash is sha1 over the shape and the raw bytes; duplicate is True for every repeat of a hash
      seen earlier in the source (the first copy is not a duplicate).
    points: id, x, y, finite, label, label_valid.
    """
    n = len(source.ids)
    if source.kind == "image":
        table = _image_statistics(source.samples, source.ids)
    elif source.kind == "points":
        table = _point_statistics(source.samples, source.ids)
    else:
        raise DataError(f"{source.name}: unknown data kind {source.kind!r}; expected 'image' or 'points'")
    label, valid = _label_columns(source, n)
    table["label"] = label
    table["label_valid"] = valid
    if source.kind == "image":  # keep hash/duplicate last, as documented
        table = table[[c for c in table.columns if c not in ("hash", "duplicate")] + ["hash", "duplicate"]]
    return table


def _image_statistics(samples: list[np.ndarray] | np.ndarray, ids: list[str]) -> pd.DataFrame:
    n = len(ids)
    if len(samples) != n:
        raise DataError(f"{len(samples)} image samples but {n} ids; a reader must give one id per sample")
    arrays = [np.asarray(s) for s in samples]
    dtype_names = {dt: str(dt) for dt in {a.dtype for a in arrays}}  # str(dtype) is slow; 60k calls add up
    bad = [name for dt, name in dtype_names.items() if dt.kind not in "biuf"]
    if bad:
        first = next(ids[i] for i, a in enumerate(arrays) if a.dtype.kind not in "biuf")
        raise DataError(f"image dtype(s) {bad} are not numeric, e.g. {first}")
    shapes = [a.shape for a in arrays]
    ndim = np.array([len(s) for s in shapes], dtype=np.int64)
    height = np.array([s[0] if len(s) >= 1 else 1 for s in shapes], dtype=np.int64)
    width = np.array([s[1] if len(s) >= 2 else 1 for s in shapes], dtype=np.int64)
    channels = np.array([s[2] if len(s) == 3 else (1 if len(s) == 2 else -1) for s in shapes], dtype=np.int64)
    values = _value_statistics(arrays, shapes)
    hashes = [_content_hash(a) for a in arrays]
    table = pd.DataFrame(
        {
            "id": pd.array(list(ids), dtype=object),
            "ndim": ndim,
            "height": height,
            "width": width,
            "channels": channels,
            "dtype": [dtype_names[a.dtype] for a in arrays],
            **values,
            "hash": hashes,
        }
    )
    table["duplicate"] = table["hash"].duplicated(keep="first")
    return table


def _content_hash(array: np.ndarray) -> str:
    h = hashlib.sha1(repr(array.shape).encode())
    h.update(np.ascontiguousarray(array).reshape(-1).view(np.uint8))  # raw bytes, no copy
    return h.hexdigest()


def _value_statistics(arrays: list[np.ndarray], shapes: list[tuple]) -> dict[str, np.ndarray]:
    """min/max/mean/std over finite values and NaN/inf counts, vectorised per group of equal shapes."""
    n = len(arrays)
    out = {k: np.full(n, np.nan) for k in ("min", "max", "mean", "std")}
    out["nan_count"] = np.zeros(n, dtype=np.int64)
    out["inf_count"] = np.zeros(n, dtype=np.int64)
    groups: dict[tuple, list[int]] = {}
    for i, shape in enumerate(shapes):
        groups.setdefault(shape, []).append(i)
    for shape, members in groups.items():
        size = int(np.prod(shape, dtype=np.int64))
        if size == 0:
            continue  # empty image: stats stay NaN, and its height/width fail the size check
        rows = max(1, _CHUNK_ELEMENTS // size)
        for start in range(0, len(members), rows):
            idx = np.asarray(members[start : start + rows])
            block = np.stack([arrays[i].reshape(-1) for i in idx]).astype(np.float64, copy=False)  # (B, P)
            for key, value in _block_statistics(block).items():
                out[key][idx] = value
    return out


def _block_statistics(block: np.ndarray) -> dict[str, np.ndarray]:
    finite = np.isfinite(block)  # (B, P)
    if finite.all():  # the common case: plain reductions, no masking
        lo, hi = block.min(1), block.max(1)
        return {
            "min": lo,
            "max": hi,
            "mean": block.mean(1),
            "std": _exact_zero_if_constant(block.std(1), lo, hi),
            "nan_count": np.zeros(len(block), dtype=np.int64),
            "inf_count": np.zeros(len(block), dtype=np.int64),
        }
    masked = np.where(finite, block, np.nan)
    with warnings.catch_warnings():  # all-NaN rows give NaN statistics, which is what we want
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(masked, 1), np.nanmax(masked, 1)
        return {
            "min": lo,
            "max": hi,
            "mean": np.nanmean(masked, 1),
            "std": _exact_zero_if_constant(np.nanstd(masked, 1), lo, hi),
            "nan_count": np.isnan(block).sum(1),
            "inf_count": np.isinf(block).sum(1),
        }


def _exact_zero_if_constant(std: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Constant float images can get std ~1e-16 from rounding in the mean (np.full(.., 0.8).std()
    is not 0); min == max is the exact test for blank, so use it."""
    return np.where(lo == hi, 0.0, std)


def _point_statistics(samples: list[np.ndarray] | np.ndarray, ids: list[str]) -> pd.DataFrame:
    points = np.asarray(samples)
    if points.ndim != 2 or points.shape[1] != 2 or points.dtype.kind not in "biuf":
        raise DataError(f"points must be a numeric (N, 2) array, got {points.dtype} {points.shape}")
    if len(points) != len(ids):
        raise DataError(f"{len(points)} points but {len(ids)} ids; a reader must give one id per sample")
    points = points.astype(np.float64, copy=False)
    return pd.DataFrame(
        {
            "id": pd.array(list(ids), dtype=object),
            "x": points[:, 0],
            "y": points[:, 1],
            "finite": np.isfinite(points).all(1),
        }
    )


def _label_columns(source: SourceData, n: int) -> tuple[pd.arrays.IntegerArray, pd.arrays.BooleanArray]:
    """Nullable label and label_valid columns; valid means an integer in [0, number of classes)."""
    if source.labels is None:
        return pd.array([pd.NA] * n, dtype="Int64"), pd.array([pd.NA] * n, dtype="boolean")
    labels = np.asarray(source.labels)
    if labels.shape != (n,):
        raise DataError(f"{source.name}: labels have shape {labels.shape}, expected ({n},) like the ids")
    if labels.dtype.kind in "biu":
        integral = np.ones(n, dtype=bool)
        as_int = labels.astype(np.int64)
    elif labels.dtype.kind == "f":
        integral = np.isfinite(labels) & (labels == np.round(labels))
        as_int = np.where(integral, labels, 0).astype(np.int64)
    else:
        raise DataError(f"{source.name}: labels must be integers, got dtype {labels.dtype}")
    num_classes = _num_classes(source, as_int[integral])
    valid = integral & (as_int >= 0) & (as_int < num_classes)
    label = pd.arrays.IntegerArray(np.where(integral, as_int, 0), mask=~integral)
    return label, pd.arrays.BooleanArray(valid, mask=np.zeros(n, dtype=bool))


def _num_classes(source: SourceData, labels: np.ndarray) -> int:
    """len(class_names) when given; otherwise inferred as max label + 1 (only negatives are invalid)."""
    if source.class_names:
        return len(source.class_names)
    return int(labels.max()) + 1 if len(labels) else 0


def class_counts(source: SourceData, stats: pd.DataFrame) -> pd.DataFrame:
    """Per-class table over the valid labels: id, class_index, class_name, count, share_of_largest.

    Every class in [0, num_classes) gets a row, so a missing class shows up with count 0.
    share_of_largest is NaN for absent classes: their absence is reported by the presence check,
    and GX treats NaN as missing, so it is not reported a second time by the balance check.
    """
    valid = stats["label"][stats["label_valid"].fillna(False).astype(bool)].to_numpy(dtype=np.int64)
    num_classes = _num_classes(source, valid)
    counts = np.bincount(valid, minlength=num_classes)
    names = list(source.class_names) if source.class_names else [str(k) for k in range(num_classes)]
    largest = counts.max() if len(counts) else 0
    share = np.where(counts > 0, counts / max(largest, 1), np.nan)
    return pd.DataFrame(
        {
            "id": pd.array([f"class {k} ({names[k]})" for k in range(num_classes)], dtype=object),
            "class_index": np.arange(num_classes, dtype=np.int64),
            "class_name": names,
            "count": counts.astype(np.int64),
            "share_of_largest": share,
        }
    )


def readable_targets(source: SourceData) -> SourceData:
    """The source restricted to samples whose target was read (paired sources may have holes)."""
    if not source.problems or all(s is not None for s in source.samples):
        return source
    keep = [i for i, s in enumerate(source.samples) if s is not None]
    return SourceData(source.name, source.kind, [source.samples[i] for i in keep],
                      None if source.labels is None else np.asarray(source.labels)[keep],
                      [source.ids[i] for i in keep], source.value_range, source.class_names, source.origin)


def pair_statistics(source: SourceData) -> pd.DataFrame:
    """One row per pair of a paired source read from files: what went wrong reading it, the sizes of
    input A and target B, their scale (B size / A size, per axis; NaN when a side is missing), A's
    NaN/inf counts and finite value range. The target side is profiled by ``sample_statistics``."""
    rows = []
    for i, (a, b) in enumerate(zip(source.inputs, source.samples)):
        row = {"id": source.ids[i], "problem": (source.problems or [""] * len(source.ids))[i]}
        a_shape = np.asarray(a).shape if a is not None else None
        b_shape = np.asarray(b).shape if b is not None else None
        row.update(a_height=a_shape[0] if a_shape else np.nan, a_width=a_shape[1] if a_shape else np.nan,
                   b_height=b_shape[0] if b_shape else np.nan, b_width=b_shape[1] if b_shape else np.nan)
        row["a_channels"] = (a_shape[2] if len(a_shape) == 3 else 1) if a_shape else np.nan
        row["b_channels"] = (b_shape[2] if len(b_shape) == 3 else 1) if b_shape else np.nan
        both = a_shape is not None and b_shape is not None
        row["scale_h"] = b_shape[0] / a_shape[0] if both else np.nan
        row["scale_w"] = b_shape[1] / a_shape[1] if both else np.nan
        values = np.asarray(a, dtype=np.float64) if a is not None else np.zeros(0)
        finite = values[np.isfinite(values)]
        row.update(a_nan_count=int(np.isnan(values).sum()), a_inf_count=int(np.isinf(values).sum()),
                   a_min=float(finite.min()) if finite.size else np.nan,
                   a_max=float(finite.max()) if finite.size else np.nan)
        rows.append(row)
    table = pd.DataFrame(rows)
    table["id"] = pd.array(table["id"].tolist(), dtype=object)
    return table


def domain_counts(source: SourceData, stats: pd.DataFrame) -> pd.DataFrame:
    """Per-domain table of a two-domain source: id, count, distinct_share (byte-distinct images / count)
    and informative_share (images that are not constant / count)."""
    domain = np.asarray(source.domain)
    rows = []
    for d in ("A", "B"):
        member = stats[domain == d]
        n = len(member)
        rows.append({"id": f"domain {d}", "count": n,
                     "distinct_share": member["hash"].nunique() / n if n else 0.0,
                     "informative_share": float((member["std"] > 0).mean()) if n else 0.0})
    table = pd.DataFrame(rows)
    table["id"] = pd.array(table["id"].tolist(), dtype=object)
    return table
