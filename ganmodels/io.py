"""Atomic file writes: a crash at any point leaves either the old file or the new one, never a torn file.

Every writer in ganmodels and pipelines (checkpoints, prepared data, feature statistics, JSON, CSV,
PNG) goes through ``atomic_path`` or ``atomic_write``: write a temp file in the target's directory
(same filesystem, so the rename is atomic), then ``os.replace`` it over the target.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import torch


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp path beside ``path`` for writers that want a file name; renamed over ``path`` on success.

    On an exception (or KeyboardInterrupt) the temp file is removed and ``path`` is untouched.
    ``suffix`` matters for writers that pick the format from the extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", **open_kwargs) -> Iterator[IO]:
    """``open(path, mode)`` that only replaces ``path`` once the block finished and the data is on disk."""
    with atomic_path(path) as tmp, open(tmp, mode, **open_kwargs) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())


def atomic_torch_save(obj: object, path: str | os.PathLike) -> None:
    """``torch.save`` through ``atomic_write``."""
    with atomic_write(path) as f:
        torch.save(obj, f)
