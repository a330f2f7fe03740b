"""The inference log writer: every prediction, appended as Parquet partitioned by UTC day.

Layout and columns are fixed in docs/contracts.md:
``<dir>/date=YYYY-MM-DD/<writer>-<seq>.parquet`` with ``request_id``, ``timestamp``,
``model_name``, ``model_version``, ``customer_key``, ``probability``, ``label`` and one column
per schema feature.

The request path only appends references to arrays it already has (a lock and a list append);
a background thread hashes customer ids, builds Arrow tables and writes files. Files appear
atomically (written under a dot-name, then renamed), so readers never see half a file. A
failed write keeps its rows and retries; when too many rows are pending, ``append`` waits for
the writer rather than dropping records. ``close()`` writes everything that is left.
"""

from __future__ import annotations

import atexit
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from churnops.dataset_schema import DatasetSchema
from churnops.serving.contract import FeatureBatch
from churnops.serving.pseudonym import CustomerKeyHasher

logger = logging.getLogger(__name__)

NS_PER_DAY = 86_400 * 10**9


@dataclass(frozen=True)
class _Chunk:
    batch: FeatureBatch
    # Either the rows' ids, or a base id: row i is then its record's own id, else "<base>-<i>".
    request_ids: list[str] | None
    base_id: str | None
    probabilities: np.ndarray
    labels: np.ndarray
    timestamp_ns: int

    def __len__(self) -> int:
        return len(self.probabilities)

    def ids(self, suffixes: pa.Array) -> pa.Array:
        if self.request_ids is not None:
            return pa.array(self.request_ids, type=pa.string())
        derived = pc.binary_join_element_wise(self.base_id, suffixes.slice(0, len(self)), "")
        if any(rid is not None for rid in self.batch.request_ids):
            own = pa.array(self.batch.request_ids, type=pa.string())
            derived = pc.if_else(pc.is_valid(own), own, derived)
        return derived


@dataclass
class WriterStats:
    rows_appended: int = 0
    rows_written: int = 0
    files_written: int = 0
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
    ) -> None:
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
        self._hasher = CustomerKeyHasher(salt) if salt is not None else None
        self._dictionaries = [pa.array(f.categories, type=pa.string()) for f in schema.categorical]
        # Dictionary-encode only low-cardinality columns; ids and keys are unique per row.
        self._dictionary_columns = ["model_name", "model_version", *schema.categorical_names]
        self._row_suffixes: pa.Array | None = None
        # Statistics let readers skip files by time or version; on unique ids they only cost.
        self._statistics_columns = ["timestamp", "model_version", "probability", "label"]
        self._pending: list[_Chunk] = []
        self._pending_rows = 0
        self._oldest: float | None = None
        self._sequence = 0
        self._closing = False
        self._busy = False
        self._condition = threading.Condition()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name=f"inference-log-{self.writer_id}", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    # -- request path
    def append(self, batch: FeatureBatch, request_ids: list[str] | None, probabilities: np.ndarray,
               labels: np.ndarray, timestamp_ns: int | None = None, base_id: str | None = None) -> None:
        """Queue scored rows. Give each row's ``request_ids``, or a ``base_id`` from which the
        writer derives them (a record's own id, else ``<base_id>-<row>``), off the request path."""
        if request_ids is None and base_id is None:
            raise ValueError("append needs request_ids or a base_id")
        chunk = _Chunk(batch, request_ids, base_id, probabilities, labels, timestamp_ns or time.time_ns())
        with self._condition:
            if self._closing:
                raise RuntimeError("the inference log is closed")
            while self._pending_rows >= self.max_pending_rows and not self._closing:
                self._condition.notify_all()
                self._condition.wait(0.05)
            self._pending.append(chunk)
            self._pending_rows += len(chunk)
            self.stats.rows_appended += len(chunk)
            if self._oldest is None:
                self._oldest = time.monotonic()
            if self._pending_rows >= self.flush_rows:
                self._condition.notify_all()

    # -- control
    def flush(self, timeout: float = 30.0) -> bool:
        """Block until every row appended so far is on disk; False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._oldest = 0.0 if self._pending else self._oldest  # due now
            self._condition.notify_all()
            while self._pending or self._busy:
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
        if self._thread.is_alive() or self._pending_rows:
            logger.error("inference log closed with %d rows unwritten", self._pending_rows)

    # -- writer thread
    def _due(self) -> bool:
        if not self._pending:
            return False
        if self._closing or self._pending_rows >= self.flush_rows:
            return True
        return self._oldest is not None and time.monotonic() - self._oldest >= self.flush_seconds

    def _run(self) -> None:
        failures = 0
        while True:
            with self._condition:
                while not self._due():
                    if self._closing and not self._pending:
                        self._condition.notify_all()
                        return
                    self._condition.wait(self.flush_seconds / 4)
                chunks, self._pending = self._pending, []
                self._pending_rows = 0
                self._oldest = None
                self._busy = True
            try:
                self._write(chunks)
                failures = 0
            except Exception as error:  # disk full, permissions: keep the rows, retry
                failures += 1
                self.stats.write_errors += 1
                self.stats.last_error = f"{type(error).__name__}: {error}"
                logger.exception("inference log write failed (attempt %d); rows kept for retry", failures)
                with self._condition:
                    self._pending[:0] = chunks
                    self._pending_rows += sum(len(c) for c in chunks)
                    self._oldest = self._oldest or time.monotonic()
                if self._closing and failures >= 3:
                    logger.error("giving up on %d inference log rows at shutdown", self._pending_rows)
                    with self._condition:
                        self._busy = False
                        self._condition.notify_all()
                    return
                time.sleep(min(0.1 * 2**failures, 5.0))
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()

    def _write(self, chunks: list[_Chunk]) -> None:
        table = self._table(chunks)
        # One timestamp per chunk: the UTC days come from the chunks, rows are split only at midnight.
        chunk_days = {c.timestamp_ns // NS_PER_DAY for c in chunks}
        days = None if len(chunk_days) == 1 else np.concatenate(
            [np.full(len(c), c.timestamp_ns // NS_PER_DAY, dtype=np.int64) for c in chunks])
        for day in sorted(chunk_days):
            part = table if days is None else table.filter(pa.array(days == day))
            date = datetime.fromtimestamp(int(day) * 86_400, tz=UTC).strftime("%Y-%m-%d")
            folder = self.directory / f"date={date}"
            folder.mkdir(parents=True, exist_ok=True)
            self._sequence += 1
            name = f"{self.writer_id}-{self._sequence:06d}.parquet"
            temporary = folder / f".{name}.tmp"
            pq.write_table(part, temporary, compression="snappy", use_dictionary=self._dictionary_columns,
                           write_statistics=self._statistics_columns, store_schema=False)
            os.replace(temporary, folder / name)
            self.stats.files_written += 1
        self.stats.rows_written += table.num_rows

    def _table(self, chunks: list[_Chunk]) -> pa.Table:
        rows = sum(len(c) for c in chunks)
        timestamps = np.concatenate([np.full(len(c), c.timestamp_ns, dtype=np.int64) for c in chunks])
        if self.schema.id_column and self._hasher is not None:
            keys = self._hasher.many(c.batch.customer_ids or [None] * len(c) for c in chunks)
        else:
            keys = [None] * rows
        columns: dict[str, pa.Array] = {
            "request_id": self._request_ids(chunks),
            "timestamp": pa.array(timestamps, type=pa.timestamp("ns", tz="UTC")),
            "model_name": pa.array([self.model_name] * rows, type=pa.string()),
            "model_version": pa.array([self.model_version] * rows, type=pa.string()),
            "customer_key": pa.array(keys, type=pa.string()),
            "probability": pa.array(np.concatenate([c.probabilities for c in chunks]).astype(np.float64)),
            "label": pa.array(np.concatenate([c.labels for c in chunks]).astype(np.int64)),
        }
        numeric = np.concatenate([c.batch.numeric for c in chunks])
        for i, name in enumerate(self.schema.numeric_names):
            column = numeric[:, i]
            columns[name] = pa.array(column, mask=np.isnan(column), type=pa.float64())
        codes = np.concatenate([c.batch.codes for c in chunks])
        for j, name in enumerate(self.schema.categorical_names):
            # Dictionary arrays go into Parquet's dictionary pages as they are; without the Arrow
            # schema in the file (store_schema=False) readers get plain strings back.
            indices = pa.array(codes[:, j], mask=codes[:, j] < 0, type=pa.int32())
            columns[name] = pa.DictionaryArray.from_arrays(indices, self._dictionaries[j])
        return pa.table(columns)

    def _request_ids(self, chunks: list[_Chunk]) -> pa.Array:
        """Row ids in order: explicit ones gathered into as few arrays as possible (single
        predictions arrive as thousands of one-row chunks), derived ones computed by Arrow."""
        suffixes = self._suffixes(max(len(c) for c in chunks))
        parts: list[pa.Array] = []
        explicit: list[str] = []
        for chunk in chunks:
            if chunk.request_ids is not None:
                explicit.extend(chunk.request_ids)
                continue
            if explicit:
                parts.append(pa.array(explicit, type=pa.string()))
                explicit = []
            parts.append(chunk.ids(suffixes))
        if explicit:
            parts.append(pa.array(explicit, type=pa.string()))
        return pa.concat_arrays(parts) if len(parts) > 1 else parts[0]

    def _suffixes(self, rows: int) -> pa.Array:
        """"-0", "-1", ... for deriving row ids, built once and grown on demand."""
        if self._row_suffixes is None or len(self._row_suffixes) < rows:
            size = max(rows, 2 * len(self._row_suffixes or []), 1024)
            self._row_suffixes = pa.array([f"-{i}" for i in range(size)], type=pa.string())
        return self._row_suffixes
