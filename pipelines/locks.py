"""Inter-process locks around the MLflow store: two ``ganpipe run`` in one project must not race.

Two things go wrong without them (both seen with two runs started at once in a fresh project):

* MLflow creates a SQLite store's schema with alembic on first use; two processes doing it at once
  collide ("Online migration expected to match one row ... 0 found") and one run dies.
* Promotion reads the champion, compares and moves the alias; two runs interleaving those steps can
  both see "no champion" and both claim it, or the worse one can overwrite the better one.

``store_lock`` is an exclusive ``fcntl.flock`` on a file beside the SQLite database (for a remote
server, in the project directory: that serialises the runs of this machine, not of others). The
kernel drops a flock when its holder dies, so a killed run never leaves the store locked.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipelines.errors import TrackingUnavailable

LOCK_NAME = ".ganpipe-store.lock"


def lock_path(tracking_uri: str, project_dir: str | os.PathLike) -> Path:
    """``<db>.lock`` for ``sqlite:///<db>``; ``<project>/.ganpipe-store.lock`` for any other store."""
    if tracking_uri.startswith("sqlite:///"):
        db = Path(tracking_uri[len("sqlite:///"):])
        return db.with_name(db.name + ".lock")
    return Path(project_dir) / LOCK_NAME


@contextmanager
def store_lock(tracking_uri: str, project_dir: str | os.PathLike, timeout: float = 900.0,
               poll: float = 0.05) -> Iterator[Path]:
    """Hold the store's exclusive lock for the block; ``TrackingUnavailable`` after ``timeout`` seconds.

    The timeout is generous: the other holder only initialises the store or promotes a version
    (seconds); waiting longer means it hangs, which deserves a clear error rather than a silent wait.
    """
    path = lock_path(tracking_uri, project_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TrackingUnavailable(
                        f"the MLflow store lock {path} was held by another process for over {timeout:g} s; "
                        "check for a hung ganpipe run (a dead one releases it)") from None
                time.sleep(poll)
        try:
            yield path
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
