"""Seeded, stratified subsets: the train/test split and the ``max_samples`` cap.

Determinism across machines and numpy versions: the only random numbers drawn are uniform
doubles from ``Generator(PCG64)`` (``random()``), whose stream is fixed by the bit generator;
orderings come from a stable argsort of them, and class quotas from integer arithmetic.
Higher-level draws (``permutation``, ``choice``, ``integers``) are avoided on purpose: numpy
reserves the right to change their algorithms between versions.
"""

from __future__ import annotations

import numpy as np

from ganmodels.data.base import DataError

# Independent random streams per purpose, so that capping a source does not shift its split.
STREAM_CAP = 0
STREAM_SPLIT = 1
STREAM_MIXTURE_TRAIN = 2
STREAM_MIXTURE_TEST = 3
STREAM_DOMAINS = 4


def seeded_rng(seed: int, stream: int) -> np.random.Generator:
    """A generator for one purpose (``stream``) of one ``seed``; same numbers on every machine."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream])))


def shuffled(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random order of ``range(n)`` (int64), from uniform doubles only (see module docstring)."""
    return np.argsort(rng.random(n), kind="stable")


def allocate(total: int, counts: np.ndarray) -> np.ndarray:
    """Split ``total`` over groups in proportion to ``counts``: largest remainder, ties to the lower index.

    Integer arithmetic only, so the quotas never depend on floating-point rounding.
    """
    counts = np.asarray(counts, dtype=np.int64)
    n = int(counts.sum())
    if not 0 <= total <= n:
        raise ValueError(f"cannot take {total} of {n}")
    scaled = counts * total  # quota_g = counts_g * total / n
    quota = scaled // n
    remainder = scaled - quota * n
    short = total - int(quota.sum())
    order = np.lexsort((np.arange(len(counts)), -remainder))  # largest remainder first
    quota[order[:short]] += 1
    return quota


def stratified_pick(labels: np.ndarray | None, n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``k`` of ``n`` samples, class proportions kept when ``labels`` are given."""
    if labels is None:
        return np.sort(shuffled(n, rng)[:k])
    labels = np.asarray(labels)
    classes, inverse = np.unique(labels, return_inverse=True)
    order = shuffled(n, rng)  # one draw for all classes: the pick depends only on (seed, labels, k)
    quota = allocate(k, np.bincount(inverse, minlength=len(classes)))
    picked = []
    for c in range(len(classes)):
        members = order[inverse[order] == c]  # this class, in the shuffled order
        picked.append(members[: quota[c]])
    return np.sort(np.concatenate(picked)) if picked else np.zeros(0, dtype=np.int64)


def train_test_split(
    labels: np.ndarray | None, n: int, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, test) indices of ``n`` samples; stratified by ``labels`` when given."""
    if n < 2:
        raise DataError(f"need at least 2 samples to split into train and test, got {n}")
    n_test = min(max(round(test_fraction * n), 1), n - 1)
    test = stratified_pick(labels, n, n_test, seeded_rng(seed, STREAM_SPLIT))
    train_mask = np.ones(n, dtype=bool)
    train_mask[test] = False
    return np.flatnonzero(train_mask), test


def cap_indices(labels: np.ndarray | None, split: list[str] | None, n: int, cap: int | None, seed: int) -> np.ndarray:
    """Sorted indices of ``min(cap, n)`` of ``n`` samples: stratified by label, and by official split
    (each split keeps its share, at least one sample) when the source has one."""
    if cap is None or cap >= n:
        return np.arange(n)
    rng = seeded_rng(seed, STREAM_CAP)
    if split is None:
        return stratified_pick(labels, n, cap, rng)
    split = np.asarray(split)
    names = sorted(set(split.tolist()))
    members = [np.flatnonzero(split == s) for s in names]
    sizes = np.array([len(m) for m in members])
    quota = allocate(cap, sizes)
    for empty in np.flatnonzero(quota == 0):  # a split may not vanish: take one from the largest
        quota[np.argmax(quota)] -= 1 if quota.max() > 1 else 0
        quota[empty] = 1
    picked = []
    for idx, q in zip(members, quota):
        sub_labels = None if labels is None else np.asarray(labels)[idx]
        picked.append(idx[stratified_pick(sub_labels, len(idx), int(min(q, len(idx))), rng)])
    return np.sort(np.concatenate(picked))
