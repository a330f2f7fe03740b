"""Who writes the inference log now: the lock file each running writer holds, and whether an
unfinished (dot-named) file belongs to one of them. Standard library only (plus the
project's file locks), so readers such as retention (in the monitoring image) can ask without
the journal format.

Every writer (one per serving worker process) holds an exclusive ``flock`` on
``<log_dir>/.writer-<writer id>.lock`` while it runs; the kernel drops it when the process dies,
even under ``kill -9``, so a lock file that can be locked belongs to a dead writer.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
from pathlib import Path

from churnops.core.locking import try_lock

WRITER_LOCK_PREFIX = ".writer-"
WRITER_LOCK_SUFFIX = ".lock"
# The lock --forget-customer and retention hold on the log folder (churnops.monitoring.retention).
MAINTENANCE_LOCK_NAME = ".maintenance.lock"
# .<writer>-<seq>.arrow.open or .tmp: the greedy writer part keeps ids with dashes whole.
UNFINISHED = re.compile(r"^\.(?P<final>(?P<writer>.+)-\d+\.arrow)(?P<kind>\.open|\.tmp)$")


class WriterLock:
    """The lock that tells other writers this one is alive; held until :meth:`release`."""

    def __init__(self, directory: Path, writer_id: str) -> None:
        self.path = writer_lock_path(directory, writer_id)
        self._descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._descriptor, fcntl.LOCK_EX)

    def release(self) -> None:
        """Remove the lock file, then drop the lock (a writer reading it meanwhile sees no one)."""
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        os.close(self._descriptor)


def live_writer_file(path: Path) -> bool:
    """Whether ``path`` is an unfinished file (journal or temporary) of a writer that is running
    now: its records reach a finished file within ``flush_seconds``, so it is no leftover."""
    match = UNFINISHED.match(path.name)
    if match is None:
        return False
    lock = writer_lock_path(path.parent.parent, match["writer"])
    if not lock.exists():
        return False
    descriptor = try_lock(lock)
    if descriptor is None:
        return True
    os.close(descriptor)
    return False


def writer_lock_path(directory: Path, writer_id: str) -> Path:
    return directory / f"{WRITER_LOCK_PREFIX}{writer_id}{WRITER_LOCK_SUFFIX}"
