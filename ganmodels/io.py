"""Atomic file writes: a crash at any point leaves either the old file or the new one, never a torn file.

Every writer in ganmodels and pipelines (checkpoints, prepared data, feature statistics, JSON, CSV,
PNG) goes through ``atomic_path`` or ``atomic_write``: write a temp file in the target's directory
(same filesystem, so the rename is atomic), then ``os.replace`` it over the target.

A write the storage refuses (disk or quota full, read-only file system, no permission) raises
``StorageError`` naming the target, so callers can tell "the disk is full" from a bug; the previous
file at the target is left as it was.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import torch

# errno values that mean "the storage refuses this write", as opposed to a missing input file.
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG})


class StorageError(OSError):
    """A write the storage refused (ENOSPC, EDQUOT, EROFS, EACCES, EPERM, EFBIG), naming the target file."""

    def __init__(self, path: str | os.PathLike, cause: OSError):
        super().__init__(cause.errno, cause.strerror or str(cause), str(path))
        self.path = Path(path)

    def __str__(self) -> str:
        hint = {errno.ENOSPC: "free disk space", errno.EDQUOT: "free space within the quota",
                errno.EFBIG: "free space or lower the file size limit"}.get(
            self.errno, "make the directory writable or choose another location")
        return f"cannot write {self.path}: {self.strerror} ({errno.errorcode.get(self.errno, self.errno)}); {hint}"


def is_storage_error(error: BaseException) -> bool:
    return isinstance(error, StorageError) or (isinstance(error, OSError) and error.errno in STORAGE_ERRNOS)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """A temp path beside ``path`` for writers that want a file name; renamed over ``path`` on success.

    On an exception (or KeyboardInterrupt) the temp file is removed and ``path`` is untouched; a
    refused write (see ``STORAGE_ERRNOS``) becomes a ``StorageError`` naming ``path``.
    ``suffix`` matters for writers that pick the format from the extension.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as e:
        raise (StorageError(path, e) if is_storage_error(e) and not isinstance(e, StorageError) else e) from e
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        if is_storage_error(e) and not isinstance(e, StorageError):
            raise StorageError(path, e) from e
        raise
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def writable_dir(path: str | os.PathLike) -> Path:
    """Create ``path`` if needed and prove it takes a file (a probe written and removed); a refusal
    raises ``StorageError`` now, before any work whose result could not be saved.

    ``os.access`` is not enough: it says yes to root on a read-only bind mount or a full disk.
    """
    path = Path(path)
    probe = path / ".ganpipe-write-probe"
    try:
        path.mkdir(parents=True, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"ok")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        if is_storage_error(e):
            raise StorageError(probe, e) from e
        raise
    finally:
        try:
            probe.unlink()
        except OSError:
            pass
    return path


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
