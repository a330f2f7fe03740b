"""The inference log writer: every prediction, appended as Arrow IPC files partitioned by UTC day.

Layout and columns are fixed in docs/contracts.md:
``<dir>/date=YYYY-MM-DD/<writer>-<seq>.arrow`` with ``request_id``, ``request_row``,
``timestamp``, ``model_name``, ``model_version``, ``customer_key``, ``probability``, ``label`` and
one column per schema feature, in the format of :mod:`churnops.serving.log_format`. A
/predict_batch record without an id of its own is stored as its request's id and its position
(``request_row``): readers put ``<request_id>-<row>`` together, so the serving CPU never builds a
string per row.

Why Arrow IPC (the Feather v2 file format, LZ4-compressed buffers) rather than Parquet: the
writer shares the serving CPU, and Parquet's encoding took 0.25-0.3 µs of it a row against about
0.085 µs for IPC (LZ4 included: it shrinks the files about eightfold for 0.01 µs a row).
``pyarrow``, ``pandas.read_feather``, DuckDB and Polars read them.

The request path copies its rows into preallocated column buffers (a lock, a few memcpys and
list extends) while they are still in the CPU cache; it keeps no per-request objects alive, so
the garbage collector has nothing new to walk. A background thread takes the filled buffers,
hashes customer ids, builds Arrow tables over the buffers without copying and writes files.
Files appear atomically, so readers never see half a file. A failed write keeps its rows and
retries; when too many rows are pending, ``append`` waits for the writer rather than dropping
records. ``close()`` writes everything that is left.

Two modes (``inference_log.mode`` in configs/serving.yaml):

- ``buffered`` (the default): rows are written every ``flush_rows`` rows or ``flush_seconds``
  after the oldest unwritten one, and the answer does not wait. A ``kill -9`` (or a power loss)
  loses the rows not yet written: at most those appended in the last ``flush_seconds`` plus the
  duration of the write in progress (tests/test_inference_log_crash.py measures it).
- ``durable``: an answer is sent only once its rows are on disk. The request path appends as
  above, then awaits :meth:`InferenceLogWriter.committed` with the group number ``append``
  returned, on the event loop, without blocking it. Group commit: the writer thread takes all
  rows appended so far as one group, appends them to its open journal (``.<name>.open``, the
  group's column buffers and hashed customer keys: ``churnops.serving.log_journal``), fsyncs it
  once (and its folder, when the journal is new) and resolves the group's futures with one
  ``call_soon_threadsafe`` per event loop; requests that arrive meanwhile form the next group.
  One journal per writer, not a file per group: every ``flush_rows`` rows or ``flush_seconds``,
  at a day's end and on close, it is published as one LZ4 IPC file (built, written and fsynced
  as in the buffered mode) and removed, so the file count is the buffered mode's and readers
  see records as late as there. If a write fails, the group's requests get an error (503)
  rather than an answer, and the rows are kept and written again.

Every writer holds a lock file while it runs, and at start-up publishes what dead writers left
unfinished (a killed durable writer's open file holds every group it committed), see
``churnops.serving.log_recovery``.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from churnops.data.schema import DatasetSchema
from churnops.serving.contract import FeatureBatch
from churnops.serving.log_format import LOG_FILE_SUFFIX, fsync_directory, partition_name, write_log_file
from churnops.serving.log_journal import Journal, LogLayout, LogRows, build_log_table, publish_unfinished
from churnops.serving.log_recovery import RecoverySummary, recover_unfinished_files
from churnops.serving.log_writers import WriterLock
from churnops.serving.pseudonym import CustomerKeyHasher

logger = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 10**9
KEY_SLICE = 8192
LOG_MODES = ("buffered", "durable")


class InferenceLogUnavailable(RuntimeError):
    """Durable mode: a group's rows could not be written, so its requests must not be answered."""


class _Rows:
    """Appended rows, column by column: each feature's values are contiguous, so the writer
    hands them to Arrow as they are. Grows by doubling when appends outrun the writer."""

    def __init__(self, capacity: int, numeric_columns: int, categorical_columns: int) -> None:
        self.size = 0
        self.group = 0  # durable mode: the commit group these rows form (set when the writer takes them)
        self.numeric = np.empty((numeric_columns, capacity), dtype=np.float64)
        self.codes = np.empty((categorical_columns, capacity), dtype=np.int32)
        self.probability = np.empty(capacity, dtype=np.float64)
        self.label = np.empty(capacity, dtype=np.int64)
        self.timestamp = np.empty(capacity, dtype=np.int64)
        # Row ids without building a string per row: an index into id_values (the row's own id,
        # or its request's id) and the row's position in its request where the id is derived
        # ("<request id>-<position>", put together by readers), -1 where it is its own.
        self.id_index = np.empty(capacity, dtype=np.int32)
        self.position = np.empty(capacity, dtype=np.int32)
        self.id_values: list[str] = []
        self.customer_ids: list[str | None] = []

    def clear(self) -> None:
        self.size = 0
        self.id_values, self.customer_ids = [], []

    @property
    def capacity(self) -> int:
        return len(self.probability)

    def add(self, batch: FeatureBatch, request_ids: list[str] | None, base_id: str | None,
            probabilities: np.ndarray, labels: np.ndarray, timestamp_ns: int) -> None:
        start, stop = self.size, self.size + len(batch)
        if stop > self.capacity:
            self._grow(stop)
        self.numeric[:, start:stop] = batch.numeric.T
        self.codes[:, start:stop] = batch.codes.T
        self.probability[start:stop] = probabilities
        self.label[start:stop] = labels
        self.timestamp[start:stop] = timestamp_ns
        self.customer_ids.extend(batch.customer_ids or [None] * len(batch))
        first = len(self.id_values)
        if request_ids is not None:
            self.id_values.extend(request_ids)
            self.id_index[start:stop] = np.arange(first, first + len(request_ids))
            self.position[start:stop] = -1
        else:
            self.id_values.append(base_id)  # type: ignore[arg-type]
            self.id_index[start:stop] = first
            self.position[start:stop] = np.arange(stop - start)
            if batch.request_ids.count(None) < len(batch):  # some records carry their own id
                for row, own in enumerate(batch.request_ids, start):
                    if own is not None:
                        self.id_index[row], self.position[row] = len(self.id_values), -1
                        self.id_values.append(own)
        self.size = stop

    def _grow(self, rows: int) -> None:
        capacity = max(rows, 2 * self.capacity)
        for name in ("numeric", "codes", "probability", "label", "timestamp", "id_index", "position"):
            old = getattr(self, name)
            new = np.empty((*old.shape[:-1], capacity), dtype=old.dtype)
            new[..., :self.size] = old[..., :self.size]
            setattr(self, name, new)


@dataclass
class WriterStats:
    rows_appended: int = 0
    rows_written: int = 0
    files_written: int = 0
    commits: int = 0  # durable mode: fsynced group commits (each carries one or more groups)
    write_errors: int = 0
    last_error: str | None = None


class InferenceLogWriter:
    def __init__(
        self,
        directory: Path,
        schema: DatasetSchema,
        model_name: str,
        model_version: str,
        salt: bytes | None,
        flush_rows: int = 50_000,
        flush_seconds: float = 2.0,
        max_pending_rows: int = 1_000_000,
        writer_id: str | None = None,
        mode: str = "buffered",
        stats_observer: Callable[[WriterStats, int], None] | None = None,
    ) -> None:
        if mode not in LOG_MODES:
            raise ValueError(f"inference log mode must be one of {', '.join(LOG_MODES)}, not {mode!r}")
        self.durable = mode == "durable"
        self.directory = Path(directory)
        self.schema = schema
        self.model_name = model_name
        self.model_version = model_version
        self.salt = salt
        self.flush_rows = flush_rows
        self.flush_seconds = flush_seconds
        self.max_pending_rows = max_pending_rows
        self.writer_id = writer_id or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.stats = WriterStats()
        # Called by the writer thread after each write attempt (stats, pending rows): Prometheus metrics.
        self._stats_observer = stats_observer
        self._hasher = CustomerKeyHasher(salt) if salt is not None and schema.id_column else None
        self._layout = LogLayout(model_name, model_version, schema.numeric_names,
                                 [(f.name, list(f.categories)) for f in schema.categorical])
        # Buffers start at the flush size (bounded: they grow on demand) and are filled in place.
        self._capacity = min(flush_rows, max_pending_rows, 65_536)
        # A written buffer is reused: its memory is already mapped and warm, fresh pages are not.
        self._spare: _Rows | None = None
        self._current = self._new_rows()
        self._filled: list[_Rows] = []  # waiting for the writer (or for a retry), oldest first
        self._pending_rows = 0
        self._oldest: float | None = None
        self._sequence = 0
        self._closing = False
        self._busy = False
        self._condition = threading.Condition()
        # Durable mode: appends wake the writer at once; groups are numbered from 1.
        self._wake_rows = 1 if self.durable else flush_rows
        self._group = 1  # the group appends join now
        self._committed = 0  # the last group on disk
        self._waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        self._open: Journal | None = None
        self._open_day = -1
        self._publish_now = False
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = WriterLock(self.directory, self.writer_id)
        self.recovery: RecoverySummary = recover_unfinished_files(self.directory, self.writer_id)
        self._thread = threading.Thread(target=self._run_durable if self.durable else self._run,
                                        name=f"inference-log-{self.writer_id}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def _new_rows(self) -> _Rows:
        if self._spare is not None:
            rows, self._spare = self._spare, None
            return rows
        return _Rows(self._capacity, len(self.schema.numeric_names), len(self.schema.categorical_names))

    # -- request path
    def append(self, batch: FeatureBatch, request_ids: list[str] | None, probabilities: np.ndarray,
               labels: np.ndarray, timestamp_ns: int | None = None, base_id: str | None = None) -> int:
        """Record scored rows. Give each row's ``request_ids``, or a ``base_id``: a row's id is
        then its record's own, else ``<base_id>-<row>`` (recorded as ``base_id`` and ``row``).
        Returns the commit group the rows joined: in durable mode, ``await committed(group)``
        before answering."""
        if request_ids is None and base_id is None:
            raise ValueError("append needs request_ids or a base_id")
        rows = len(batch)
        with self._condition:
            if self._closing:
                raise RuntimeError("the inference log is closed")
            while self._pending_rows >= self.max_pending_rows and not self._closing:
                self._condition.notify_all()
                self._condition.wait(0.05)
            self._current.add(batch, request_ids, base_id, probabilities, labels, timestamp_ns or time.time_ns())
            self._pending_rows += rows
            self.stats.rows_appended += rows
            if self._oldest is None:
                self._oldest = time.monotonic()
            if self._current.size >= self._wake_rows:
                self._condition.notify_all()
            return self._group

    async def committed(self, group: int) -> None:
        """Durable mode: return once the rows of ``group`` (from :meth:`append`) are on disk;
        raises :class:`InferenceLogUnavailable` if writing them failed. Waits on the calling
        event loop (the writer thread resolves a future), so other requests go on meanwhile."""
        if self._committed >= group:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._condition:
            if self._committed >= group:
                return
            self._waiters.append((group, loop, future))
        await future

    # -- control
    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every row appended so far is on disk; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._oldest = 0.0 if self._pending_rows else self._oldest  # due now
            self._publish_now = self.durable  # and the open file published
            self._condition.notify_all()
            while self._pending_rows or self._busy or self._publish_now:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._condition.wait(min(remaining, 0.05))
        return True

    def close(self, timeout: float = 60.0) -> None:
        with self._condition:
            if self._closing:
                return
            self._closing = True
            self._condition.notify_all()
        self._thread.join(timeout)
        if self._thread.is_alive() or self._pending_rows or self._open is not None:
            # The lock file stays: the next writer to start recovers what is left.
            logger.error("inference log closed with %d rows unwritten", self._pending_rows)
        else:
            self._lock.release()

    # -- writer thread
    def _due(self) -> bool:
        if not self._pending_rows:
            return False
        if self._closing or self._filled or self._current.size >= self.flush_rows:
            return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self.flush_seconds

    def _seconds_until_due(self) -> float:
        """Wake exactly when the oldest pending row is ``flush_seconds`` old (a row appended to
        an empty buffer is noticed within a quarter of that), so no row waits longer."""
        idle = self.flush_seconds / 4
        if self._oldest is None:
            return idle
        return min(idle, max(0.0, self._oldest + self.flush_seconds - time.monotonic()))

    def _run(self) -> None:
        _name_os_thread("inference-log")
        failures = 0
        while True:
            with self._condition:
                while not self._due():
                    if self._closing and not self._pending_rows:
                        self._condition.notify_all()
                        return
                    self._condition.wait(self._seconds_until_due())
                if self._current.size:
                    self._filled.append(self._current)
                    self._current = self._new_rows()
                rows = self._filled[0]
                self._oldest = None
                self._busy = True
            try:
                self._write(rows)
                failures = 0
                with self._condition:
                    self._filled.pop(0)
                    self._pending_rows -= rows.size
                    rows.clear()
                    self._spare = rows
            except Exception as error:  # disk full, permissions: keep the rows, retry
                failures += 1
                if self._write_failed(error, failures, "write"):
                    return
                time.sleep(_backoff(failures))
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
                self._report_stats()

    # -- writer thread, durable mode
    def _publish_due(self) -> bool:
        opened = self._open
        if opened is None:
            return False
        return (self._closing or self._publish_now or opened.rows >= self.flush_rows
                or time.monotonic() - opened.opened >= self.flush_seconds)

    def _seconds_until_publish(self) -> float | None:
        if self._open is None:
            return None  # an append, flush or close wakes the writer
        return max(0.0, self._open.opened + self.flush_seconds - time.monotonic())

    def _run_durable(self) -> None:
        _name_os_thread("inference-log")
        failures = 0
        while True:
            with self._condition:
                while not self._pending_rows and not self._publish_due():
                    if self._publish_now:  # nothing open: nothing to publish
                        self._publish_now = False
                        self._condition.notify_all()
                    if self._closing:
                        self._condition.notify_all()
                        return
                    self._condition.wait(self._seconds_until_publish())
                if self._current.size:
                    self._current.group, self._group = self._group, self._group + 1
                    self._filled.append(self._current)
                    self._current = self._new_rows()
                groups = list(self._filled)
                self._busy = True
            try:
                if groups:
                    self._commit(groups)
                    failures = 0
                    with self._condition:
                        for rows in groups:
                            self._filled.pop(0)
                            self._pending_rows -= rows.size
                            rows.clear()
                            self._spare = rows
                        self._committed = groups[-1].group
                        ready = self._take_waiters(self._committed)
                    _settle(ready, None)
                if self._publish_due():
                    self._publish()
            except Exception as error:  # disk full, permissions: fail the group's requests, keep its rows
                failures += 1
                gives_up = self._write_failed(error, failures, "commit")
                self._abandon_open_file()
                if groups:
                    with self._condition:
                        failed = self._take_waiters(groups[-1].group)
                    _settle(failed, InferenceLogUnavailable(f"the inference log could not be written: {error}"))
                if gives_up:
                    with self._condition:
                        self._publish_now = False
                        left = self._take_waiters(self._group)
                    _settle(left, InferenceLogUnavailable("the inference log closed before these rows were written"))
                    return
                time.sleep(_backoff(failures))
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
                self._report_stats()

    def _write_failed(self, error: Exception, failures: int, what: str) -> bool:
        """Count and log a failed write (called while handling it); True when the writer gives up:
        at shutdown, after three failures in a row. The caller's ``finally`` wakes the waiters."""
        self.stats.write_errors += 1
        self.stats.last_error = f"{type(error).__name__}: {error}"
        logger.exception("inference log %s failed (attempt %d); rows kept for retry", what, failures)
        if self._closing and failures >= 3:
            logger.error("giving up on %d inference log rows at shutdown", self._pending_rows)
            return True
        return False

    def _report_stats(self) -> None:
        """Hand the stats to the observer, from the writer thread; a failing observer never stops the log."""
        if self._stats_observer is None:
            return
        try:
            self._stats_observer(self.stats, self._pending_rows)
        except Exception:
            logger.exception("the inference log's stats observer failed")

    def _take_waiters(self, group: int) -> list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]]:
        """The waiters of groups up to ``group``, removed from the list (caller holds the lock)."""
        taken = [waiter for waiter in self._waiters if waiter[0] <= group]
        if taken:
            self._waiters = [waiter for waiter in self._waiters if waiter[0] > group]
        return taken

    def _commit(self, groups: list[_Rows]) -> None:
        """Append each group's rows to the open file as a record batch (per UTC day), then one fsync."""
        rows_written = 0
        for rows in groups:
            log_rows = _log_rows(rows)
            keys = self._keys(rows).to_pylist() if self._hasher else None  # pseudonyms only on disk
            days = log_rows.timestamp // NS_PER_DAY
            first, last = int(days.min()), int(days.max())
            for day in range(first, last + 1):
                selected = None if first == last else np.flatnonzero(days == day)
                if selected is None:
                    self._journal_for(day).append(log_rows, keys)
                elif len(selected):
                    self._journal_for(day).append(log_rows.take(selected),
                                                  None if keys is None else [keys[i] for i in selected])
            rows_written += rows.size
        if self._open is not None:  # a day's file published meanwhile was synced as it closed
            self._open.sync()
        self.stats.rows_written += rows_written
        self.stats.commits += 1

    def _journal_for(self, day: int) -> Journal:
        """The open journal of ``day``'s partition; at a new day, the previous one is published first."""
        opened = self._open
        if opened is not None and self._open_day == day:
            return opened
        if opened is not None:
            self._publish()
        date = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")
        folder = self.directory / partition_name(date)
        if not folder.is_dir():
            folder.mkdir(parents=True, exist_ok=True)
            fsync_directory(self.directory)
        self._sequence += 1
        self._open = Journal(folder / f"{self.writer_id}-{self._sequence:06d}{LOG_FILE_SUFFIX}", self._layout)
        self._open_day = day
        return self._open

    def _publish(self) -> None:
        """Close the open file and publish it under its final name (compacted, fsynced)."""
        opened, self._open = self._open, None
        if opened is not None:
            opened.close()
            publish_unfinished(opened.path, opened.final_path)
            self.stats.files_written += 1
        with self._condition:
            self._publish_now = False

    def _abandon_open_file(self) -> None:
        """After a failure: keep what the open file had committed (published now if the disk
        allows, else by the next writer to start) and start a new file for the retry."""
        opened, self._open = self._open, None
        if opened is None:
            return
        opened.abandon()
        try:
            publish_unfinished(opened.path, opened.final_path)
        except Exception:  # the disk is still failing: recovery at the next start publishes it
            logger.exception("could not publish %s after a failed write; left for recovery", opened.path)

    def _write(self, rows: _Rows) -> None:
        table = self._table(rows)
        days = rows.timestamp[:rows.size] // NS_PER_DAY
        first, last = int(days.min()), int(days.max())
        for day in range(first, last + 1):
            part = table if first == last else table.filter(pa.array(days == day))
            if part.num_rows == 0:
                continue
            date = datetime.fromtimestamp(day * 86_400, tz=UTC).strftime("%Y-%m-%d")
            folder = self.directory / partition_name(date)
            folder.mkdir(parents=True, exist_ok=True)
            self._sequence += 1
            write_log_file(part, folder / f"{self.writer_id}-{self._sequence:06d}{LOG_FILE_SUFFIX}")
            self.stats.files_written += 1
        self.stats.rows_written += table.num_rows

    def _table(self, rows: _Rows) -> pa.Table:
        return build_log_table(self._layout, _log_rows(rows), self._keys(rows))

    def _keys(self, rows: _Rows) -> pa.Array:
        n = rows.size
        if not self._hasher:
            return pa.nulls(n, type=pa.string())
        # Slices: each hashing call holds the GIL throughout (about 1 ms per 8k ids), so
        # requests waiting for it are not held up for the whole buffer.
        ids = rows.customer_ids
        return pa.concat_arrays([self._hasher.keys(ids[i:i + KEY_SLICE]) for i in range(0, n, KEY_SLICE)])


def _log_rows(rows: _Rows) -> LogRows:
    n = rows.size
    return LogRows(rows.numeric[:, :n], rows.codes[:, :n], rows.probability[:n], rows.label[:n],
                   rows.timestamp[:n], rows.id_index[:n], rows.position[:n], rows.id_values)


def _backoff(failures: int) -> float:
    """Seconds to wait before retrying after ``failures`` failed writes in a row."""
    return min(0.1 * 2**failures, 5.0)


def _settle(waiters: list[tuple[int, asyncio.AbstractEventLoop, asyncio.Future[None]]],
            error: BaseException | None) -> None:
    """Resolve the waiters' futures on their event loops: one wake-up per loop, not per request."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for _group, loop, future in waiters:
        by_loop.setdefault(loop, []).append(future)
    for loop, futures in by_loop.items():
        try:
            loop.call_soon_threadsafe(_resolve, futures, error)
        except RuntimeError:  # the loop has closed: nobody is waiting any more
            continue


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if future.done():  # cancelled: the client went away
            continue
        if error is None:
            future.set_result(None)
        else:
            future.set_exception(error)


def _name_os_thread(name: str) -> None:
    """Give the calling thread an OS-level name (Linux, at most 15 bytes), so ``top -H``,
    ``ps -L`` and /proc/PID/task/TID/comm show the log writer's CPU apart from the server's."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)  # 15 = PR_SET_NAME
    except (OSError, AttributeError):
        pass
