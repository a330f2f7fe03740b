"""What a killed inference-log writer leaves behind, and how the next writer to start cleans it up.

Every writer (one per serving worker process) holds an exclusive ``flock`` on
``<log_dir>/.writer-<writer id>.lock`` while it runs (``churnops.serving.log_writers``). The kernel
drops the lock when the process dies, even under ``kill -9``, so a lock file that can be locked
belongs to a dead writer.

A dead writer can leave, in its day partitions, dot-named files that readers skip:

- ``.<name>.tmp``: a buffered-mode file it was writing when it died (an IPC file cut short, or
  complete but not yet renamed);
- ``.<name>.open``: the durable mode's journal (``churnops.serving.log_journal``), holding
  every group it committed since its last publication (up to the record it was killed in).

When a writer starts (:func:`recover_unfinished_files`), each such file of a dead writer is
published as ``<name>`` with every whole record it holds (written and fsynced, then the dot
file is removed); a file holding none is removed. Where both exist, the journal is what counts
(a ``.tmp`` beside it is its publication cut short). Where ``<name>`` already exists, the dot
file is a leftover of a rotation that had finished, or a rewrite by ``--forget-customer`` /
retention (``churnops.monitoring.retention``): it is removed only while no such maintenance run
holds the log's maintenance lock, and left for the next start otherwise. Dot files with no lock
file at all (a writer from before these locks, a crashed backfill) are treated the same way
once they are an hour old. Files of live writers are never touched. Only the partitions of the
days since the oldest dead writer started (and at least today's and yesterday's) are looked at:
the start-up stays quick however large the log is.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path

import pyarrow as pa

from churnops.core.locking import try_lock
from churnops.serving.log_format import OPEN_SUFFIX, TEMP_SUFFIX, partition_folders
from churnops.serving.log_journal import publish_unfinished
from churnops.serving.log_writers import (
    MAINTENANCE_LOCK_NAME,
    UNFINISHED,
    WRITER_LOCK_PREFIX,
    WRITER_LOCK_SUFFIX,
)

logger = logging.getLogger(__name__)

# A dot file without a lock file is only taken for abandoned once it is this old.
STALE_SECONDS = 3600.0


@dataclass
class RecoverySummary:
    dead_writers: int = 0
    files_published: int = 0
    rows_recovered: int = 0
    files_removed: int = 0  # torn with nothing whole in them, or duplicates of a finished file
    files_left: list[str] = field(default_factory=list)  # live writers', or held for maintenance

    def describe(self) -> str:
        return (f"{self.dead_writers} stopped writer(s): {self.rows_recovered} records recovered into "
                f"{self.files_published} file(s), {self.files_removed} unfinished file(s) removed")


def recover_unfinished_files(directory: Path, own_writer_id: str, now: float | None = None) -> RecoverySummary:
    """Publish or remove the unfinished files of dead writers (module docstring)."""
    now = time.time() if now is None else now
    summary = RecoverySummary()
    alive: set[str] = {own_writer_id}
    dead: dict[str, tuple[int, Path]] = {}
    for path in directory.glob(f"{WRITER_LOCK_PREFIX}*{WRITER_LOCK_SUFFIX}"):
        writer = path.name[len(WRITER_LOCK_PREFIX):-len(WRITER_LOCK_SUFFIX)]
        if writer in alive:
            continue
        descriptor = try_lock(path)
        if descriptor is None:
            alive.add(writer)
        else:
            dead[writer] = (descriptor, path)
    summary.dead_writers = len(dead)
    maintenance = _MaintenanceLock(directory / MAINTENANCE_LOCK_NAME)
    left_by: set[str] = set()
    try:
        since = _first_day([path for _descriptor, path in dead.values()], now)
        for folder in (folder for day, folder in partition_folders(directory) if day >= since):
            left_by |= _recover_folder(folder, alive, set(dead), maintenance, now, summary)
    finally:
        maintenance.release()
        for writer, (descriptor, path) in dead.items():
            if writer not in left_by:  # else kept, so the next start knows whose files those are
                path.unlink(missing_ok=True)
            os.close(descriptor)
    if summary.files_published or summary.files_removed:
        logger.warning("inference log: %s", summary.describe())
    return summary


class _MaintenanceLock:
    """The log's maintenance lock, taken (without waiting) the first time a decision needs it
    and then held to the end of the recovery, so no maintenance run starts a rewrite meanwhile.
    Not needed, it is never created: a log without leftovers gets no lock file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor: int | None = None
        self._tried = False

    def free(self) -> bool:
        if not self._tried:
            self._tried = True
            self._descriptor = try_lock(self.path, create=True)
        return self._descriptor is not None

    def release(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def _first_day(lock_files: list[Path], now: float) -> date:
    """The oldest day a dead writer can have written to (its lock file was made when it
    started), and at least yesterday (a writer may have started just before midnight)."""
    started = []
    for path in lock_files:
        with contextlib.suppress(FileNotFoundError):
            started.append(path.stat().st_mtime)
    return datetime.fromtimestamp(min([now - 86_400, *started]), tz=UTC).date()


def _recover_folder(folder: Path, alive: set[str], dead: set[str], maintenance: _MaintenanceLock, now: float,
                    summary: RecoverySummary) -> set[str]:
    """Recover one partition; returns the dead writers whose files had to be left."""
    unfinished: dict[str, dict[str, Path]] = {}
    owners: dict[str, str] = {}
    for entry in folder.iterdir():
        match = UNFINISHED.match(entry.name)
        if match:
            unfinished.setdefault(match["final"], {})[match["kind"]] = entry
            owners[match["final"]] = match["writer"]
    left_by: set[str] = set()
    for final_name, kinds in sorted(unfinished.items()):
        writer = owners[final_name]
        if writer in alive or (writer not in dead and not _all_stale(kinds.values(), now)):
            summary.files_left += [path.name for path in kinds.values()]
            continue
        final = folder / final_name
        if final.exists():
            if not maintenance.free():  # perhaps a rewrite in progress: not ours to judge now
                summary.files_left += [path.name for path in kinds.values()]
                left_by.add(writer)
                continue
            for path in kinds.values():
                path.unlink(missing_ok=True)
                summary.files_removed += 1
            continue
        # The open stream holds every committed group; a .tmp beside it is a publication cut short.
        source = kinds.get(OPEN_SUFFIX) or kinds[TEMP_SUFFIX]
        try:
            rows = publish_unfinished(source, final)
        except (OSError, pa.ArrowException) as error:
            logger.error("inference log: could not recover %s: %s", source, error)
            summary.files_left.append(source.name)
            left_by.add(writer)
            continue
        summary.files_published += int(rows > 0)
        summary.files_removed += int(rows == 0)
        summary.rows_recovered += rows
        for path in kinds.values():
            if path != source:
                path.unlink(missing_ok=True)
                summary.files_removed += 1
    return left_by


def _all_stale(paths: Iterable[Path], now: float) -> bool:
    try:
        return all(now - path.stat().st_mtime >= STALE_SECONDS for path in paths)
    except FileNotFoundError:
        return False
