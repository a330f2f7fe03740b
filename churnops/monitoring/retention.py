"""Retention and erasure of the inference log and the feedback log (pure: no ZenML here).

Retention (``retention_days``): a day partition of the inference log
(``<log_dir>/date=YYYY-MM-DD/``, docs/contracts.md) is removed as a whole once every moment
of that UTC day is older than the cutoff (now - retention_days), so a record is kept between
``retention_days`` and ``retention_days + 1`` days; feedback records received before the
cutoff are removed from the feedback log.

Erasure (``forget_customers``): every inference-log record whose ``customer_key`` is the
pseudonym of a forgotten customer id, every feedback record with that key or with the request
id of one of those predictions, and every row of a retraining table built from them (or with
the raw id, for rows copied from the training data) is removed. Each affected file is
rewritten in its own format under a dot-name in its folder and renamed over the original, so
a reader sees the old file or the new one, never half of one; files without such records are
not touched.

Both hold the lock of the feedback log (ingestion takes it too) and a lock in the log folder,
so two maintenance runs never write back records the other removed. The service does not take
the lock: it only adds new files (dot-name, then rename) and never rewrites one, so only files
with a final name are examined, and a second look after ``settle()`` catches the files a
running service wrote meanwhile.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, Field

from churnops.core.locking import exclusive_lock
from churnops.monitoring.feedback import feedback_lock_path, read_feedback, write_feedback
from churnops.monitoring.inference_log import LOG_FILE_SUFFIXES, is_finished_log_file, read_log_file
from churnops.monitoring.retraining import PRODUCTION_ID_PREFIX
from churnops.serving.log_format import LOG_FILE_SUFFIX, partition_folders, write_log_file
from churnops.serving.log_writers import live_writer_file

LOG_LOCK_NAME = ".maintenance.lock"
RETRAINING_TABLE = "retraining_data.parquet"
RETRAINING_SCHEMA = "schema.yaml"
# How churnops.monitoring.retraining.production_training_rows names production rows.
CUSTOMER_ROW_PREFIX = f"{PRODUCTION_ID_PREFIX}cust-"

CustomerKeys = Callable[[Sequence[str | None]], list[str | None]]


# --- shared ------------------------------------------------------------------------------

@contextmanager
def maintenance_locks(log_dir: Path, feedback_path: Path) -> Iterator[None]:
    """The feedback log's lock, then the log folder's (always in that order: no deadlock).
    A folder that does not exist holds nothing to protect and gets no lock file."""
    with ExitStack() as stack:
        if feedback_path.parent.is_dir():
            stack.enter_context(exclusive_lock(feedback_lock_path(feedback_path)))
        if log_dir.is_dir():
            stack.enter_context(exclusive_lock(log_dir / LOG_LOCK_NAME))
        yield


def _file_schema(path: Path) -> pa.Schema:
    if path.suffix == LOG_FILE_SUFFIX:
        with pa.OSFile(str(path)) as source:
            return pa.ipc.open_file(source).schema  # the footer only
    return pq.read_schema(path)


def _read_raw(path: Path) -> pa.Table:
    """A log file as stored (``request_row`` kept, dictionaries kept), for rewriting."""
    if path.suffix == LOG_FILE_SUFFIX:
        return feather.read_table(str(path), memory_map=False)
    return pq.read_table(path)


def _write_raw(table: pa.Table, path: Path) -> None:
    """Replace ``path`` atomically, in its own format (the service's writer for Arrow IPC)."""
    if path.suffix == LOG_FILE_SUFFIX:
        write_log_file(table, path)
        return
    temporary = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, temporary)
    os.replace(temporary, path)


def _rows(path: Path) -> int | None:
    try:
        if path.suffix == ".parquet":
            return int(pq.read_metadata(path).num_rows)
        with pa.OSFile(str(path)) as source:
            reader = pa.ipc.open_file(source)
            first = reader.schema.names[:1]
        return feather.read_table(str(path), columns=first, memory_map=False).num_rows
    except (OSError, pa.ArrowException):
        return None


# --- retention ---------------------------------------------------------------------------

class RetentionSummary(BaseModel):
    """What one enforcement of the retention period removed and kept."""

    retention_days: int | None
    enforced_at: datetime
    cutoff: datetime | None = None
    log_dir: str
    feedback_path: str
    partitions_removed: int = 0
    oldest_removed: date | None = None
    newest_removed: date | None = None
    log_files_removed: int = 0
    log_records_removed: int = 0
    log_bytes_removed: int = 0
    partitions_kept: int = 0
    oldest_kept: date | None = None
    feedback_records_removed: int = 0
    feedback_records_kept: int = 0
    problems: list[str] = Field(default_factory=list)

    @property
    def enabled(self) -> bool:
        return self.retention_days is not None

    def describe(self) -> str:
        if not self.enabled:
            return ("Retention: none configured (retention_days: null), the inference and feedback logs are kept "
                    "forever")
        assert self.cutoff is not None
        removed = (f"{self.partitions_removed} day partition(s) of the inference log removed "
                   f"({self.oldest_removed} .. {self.newest_removed}; {self.log_files_removed} files, "
                   f"{self.log_records_removed:,} records)" if self.partitions_removed
                   else "no inference-log partition was old enough to remove")
        text = (f"Retention {self.retention_days} days (cutoff {self.cutoff.isoformat(timespec='seconds')}): "
                f"{removed}; {self.partitions_kept} kept (oldest {self.oldest_kept}); "
                f"{self.feedback_records_removed:,} feedback records removed, {self.feedback_records_kept:,} kept")
        if self.problems:
            text += f"; {len(self.problems)} problem(s): " + "; ".join(self.problems[:5])
        return text


def retention_cutoff(retention_days: int, now: datetime) -> datetime:
    return now - timedelta(days=retention_days)


def partition_expired(day: date, cutoff: datetime) -> bool:
    """A partition holds [day 00:00, next day 00:00) UTC: expired when all of it is before ``cutoff``."""
    return datetime.combine(day + timedelta(days=1), time(), tzinfo=UTC) <= cutoff


def remove_partition(folder: Path) -> tuple[int, int, int]:
    """Delete a day partition with everything in it (unfinished dot-files too: they hold old
    records). Returns files, records (of the readable log files) and bytes removed."""
    files = [f for f in folder.rglob("*") if f.is_file()]
    records = sum(count for f in files if is_finished_log_file(f) and (count := _rows(f)) is not None)
    size = sum(f.stat().st_size for f in files)
    shutil.rmtree(folder)
    return len(files), records, size


def prune_feedback(path: Path, cutoff: datetime) -> tuple[int, int]:
    """Drop feedback records received before ``cutoff`` (rewritten only if any is dropped).
    Records without a time are kept: nothing shows they are old. Returns (removed, kept);
    the caller holds the feedback lock."""
    if not path.is_file():
        return 0, 0
    frame = read_feedback(path)
    received = pd.to_datetime(frame["received_at"], utc=True)
    expired = (received < pd.Timestamp(cutoff)).fillna(False).to_numpy(dtype=bool)
    if expired.any():
        write_feedback(path, frame[~expired])
    return int(expired.sum()), int((~expired).sum())


def enforce_retention(log_dir: Path, feedback_path: Path, retention_days: int | None,
                      now: datetime | None = None) -> RetentionSummary:
    """Remove what is older than ``retention_days`` (None: keep everything) from both logs."""
    moment = now or datetime.now(UTC)
    summary = RetentionSummary(retention_days=retention_days, enforced_at=moment, log_dir=str(log_dir),
                               feedback_path=str(feedback_path))
    if retention_days is None:
        partitions = partition_folders(log_dir)
        summary.partitions_kept = len(partitions)
        summary.oldest_kept = partitions[0][0] if partitions else None
        return summary
    if retention_days < 1:
        raise ValueError(f"retention_days must be at least 1, got {retention_days}")
    cutoff = summary.cutoff = retention_cutoff(retention_days, moment)
    with maintenance_locks(log_dir, feedback_path):
        kept: list[date] = []
        for day, folder in partition_folders(log_dir):
            if not partition_expired(day, cutoff):
                kept.append(day)
                continue
            try:
                files, records, size = remove_partition(folder)
            except OSError as error:
                summary.problems.append(f"could not remove {folder}: {type(error).__name__}: {error}")
                continue
            summary.partitions_removed += 1
            summary.oldest_removed = summary.oldest_removed or day
            summary.newest_removed = day
            summary.log_files_removed += files
            summary.log_records_removed += records
            summary.log_bytes_removed += size
        summary.partitions_kept, summary.oldest_kept = len(kept), (kept[0] if kept else None)
        try:
            summary.feedback_records_removed, summary.feedback_records_kept = prune_feedback(feedback_path, cutoff)
        except (OSError, ValueError, pa.ArrowException) as error:
            summary.problems.append(f"could not prune the feedback log {feedback_path}: {error}")
    return summary


# --- erasure -----------------------------------------------------------------------------

class LogErasure(BaseModel):
    """The inference-log part of an erasure."""

    files_examined: int = 0
    files_rewritten: int = 0
    files_removed: int = 0  # every record in them was a forgotten customer's
    records_removed: int = 0
    late_records_removed: int = 0  # in files a running service wrote during the erasure
    unfinished_files_skipped: int = 0  # dot-names: being written, or left by a crash
    unreadable_files: list[str] = Field(default_factory=list)
    files_without_customer_key: int = 0


class ErasureSummary(BaseModel):
    """What ``forget_customers`` removed: counts only, no id and no pseudonym."""

    erased_at: datetime
    customers: int
    pseudonyms: int
    log_dir: str
    feedback_path: str
    inference_log: LogErasure = Field(default_factory=LogErasure)
    feedback_records_removed: int = 0
    feedback_rewritten: bool = False
    retraining_records_removed: int = 0
    retraining_tables_rewritten: int = 0
    retraining_tables_unmatchable: int = 0  # unreadable or without an id column: cannot be searched

    @property
    def records_removed(self) -> int:
        log = self.inference_log
        return (log.records_removed + log.late_records_removed + self.feedback_records_removed
                + self.retraining_records_removed)

    @property
    def incomplete(self) -> bool:
        """Files that might hold the customers' records could not be examined."""
        return bool(self.inference_log.unreadable_files or self.inference_log.unfinished_files_skipped)

    def audit_entry(self, user: str) -> dict[str, object]:
        """The audit record: when, who, how many. File names are left out too: a partition
        date next to "1 customer" would say when that customer was served."""
        log = self.inference_log
        return {
            "event": "forget_customer", "at": self.erased_at.isoformat(), "user": user,
            "customers": self.customers, "pseudonyms": self.pseudonyms,
            "inference_log": {"records_removed": log.records_removed + log.late_records_removed,
                              "late_records_removed": log.late_records_removed,
                              "files_examined": log.files_examined, "files_rewritten": log.files_rewritten,
                              "files_removed": log.files_removed,
                              "unfinished_files_skipped": log.unfinished_files_skipped,
                              "unreadable_files": len(log.unreadable_files)},
            "feedback_log": {"records_removed": self.feedback_records_removed,
                             "files_rewritten": int(self.feedback_rewritten)},
            "retraining_tables": {"records_removed": self.retraining_records_removed,
                                  "files_rewritten": self.retraining_tables_rewritten,
                                  "unmatchable_tables": self.retraining_tables_unmatchable},
            "complete": not self.incomplete,
        }


def _key_mask(column: pa.ChunkedArray, keys: pa.Array) -> pa.ChunkedArray:
    """True where the row's customer key is one of ``keys`` (null keys never match)."""
    if pa.types.is_null(column.type):  # a column of nulls only (no id column was sent)
        return pa.chunked_array([pa.array([False] * len(column), type=pa.bool_())])
    if pa.types.is_dictionary(column.type):
        column = column.cast(pa.string())
    return pc.fill_null(pc.is_in(column, value_set=keys.cast(column.type)), False)


def _log_files(log_dir: Path, erasure: LogErasure) -> list[Path]:
    """Finished log files, counting the unfinished ones (dot-names) the erasure cannot read."""
    files = []
    for _day, folder in partition_folders(log_dir):
        for path in sorted(folder.iterdir()):
            if path.name.startswith("."):
                # A running writer's journal is published within flush_seconds (settle() waits
                # for that); only leftovers of a crash make the erasure incomplete.
                erasure.unfinished_files_skipped += int(path.is_file() and not live_writer_file(path))
            elif path.is_file() and path.suffix in LOG_FILE_SUFFIXES:
                files.append(path)
    return files


def _matching_request_ids(paths: list[Path], keys: pa.Array, erasure: LogErasure) -> dict[Path, set[str]]:
    """The files holding records of ``keys``, each with those records' row ids (as /predict
    answered them: feedback joins on them)."""
    affected: dict[Path, set[str]] = {}
    for path in paths:
        try:
            if "customer_key" not in _file_schema(path).names:
                erasure.files_without_customer_key += 1
                erasure.files_examined += 1
                continue
            table = read_log_file(path, ["customer_key"])
            mask = _key_mask(table.column("customer_key"), keys)
            if pc.any(mask).as_py():
                rows = read_log_file(path, ["request_id", "customer_key"])
                ids = rows.filter(_key_mask(rows.column("customer_key"), keys)).column("request_id")
                affected[path] = {str(v) for v in ids.drop_null().to_pylist()}
        except FileNotFoundError:
            continue  # removed meanwhile (retention elsewhere): nothing left to erase
        except (OSError, KeyError, pa.ArrowException) as error:
            erasure.unreadable_files.append(f"{path}: {type(error).__name__}: {str(error)[:120]}")
            continue
        erasure.files_examined += 1
    return affected


def _erase_from_log_file(path: Path, keys: pa.Array, erasure: LogErasure) -> int:
    """Rewrite ``path`` without the records of ``keys`` (delete it if nothing else is left)."""
    if path.name.startswith(".") or not path.is_file():
        return 0  # gone meanwhile
    table = _read_raw(path)
    drop = _key_mask(table.column("customer_key"), keys)
    removed = int(pc.sum(drop).as_py() or 0)
    if not removed:
        return 0
    kept = table.filter(pc.invert(drop))
    if kept.num_rows:
        _write_raw(kept, path)
        erasure.files_rewritten += 1
    else:
        path.unlink()
        erasure.files_removed += 1
    return removed


def erase_feedback(path: Path, keys: set[str], request_ids: set[str]) -> int:
    """Drop the feedback records of ``keys`` or of ``request_ids``; the caller holds the lock."""
    if not path.is_file():
        return 0
    frame = read_feedback(path)
    drop = (frame["customer_key"].isin(keys) | frame["request_id"].isin(request_ids)).to_numpy(dtype=bool)
    if drop.any():
        write_feedback(path, frame[~drop])
    return int(drop.sum())


def _retraining_id_column(schema_path: Path) -> str | None:
    try:
        described = yaml.safe_load(schema_path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    column = described.get("id_column") if isinstance(described, dict) else None
    return str(column) if column else None


def erase_retraining_tables(folder: Path, customer_ids: set[str], keys: set[str], summary: ErasureSummary) -> None:
    """Drop the customers' rows from every retraining table under ``folder``: production rows
    (named ``prod-cust-<pseudonym>``; a ``prod-req-`` row had no customer key, so it is nobody's)
    and rows copied from the training data (named by the raw id)."""
    if not folder.is_dir():
        return
    wanted = pa.array(sorted(customer_ids | {CUSTOMER_ROW_PREFIX + k for k in keys}), type=pa.string())
    for path in sorted(folder.glob(f"*/{RETRAINING_TABLE}")):
        id_column = _retraining_id_column(path.parent / RETRAINING_SCHEMA)
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException):
            table = None
        if table is None or id_column is None or id_column not in table.column_names:
            summary.retraining_tables_unmatchable += 1
            continue
        ids = table.column(id_column).cast(pa.string())
        drop = pc.fill_null(pc.is_in(ids, value_set=wanted), False)
        removed = int(pc.sum(drop).as_py() or 0)
        if removed:
            _write_raw(table.filter(pc.invert(drop)), path)
            summary.retraining_records_removed += removed
            summary.retraining_tables_rewritten += 1


def forget_customers(customer_ids: Sequence[str], customer_keys: CustomerKeys, log_dir: Path, feedback_path: Path,
                     retraining_dir: Path | None = None, settle: Callable[[], None] | None = None,
                     now: datetime | None = None) -> ErasureSummary:
    """Remove every record of ``customer_ids`` (pseudonymised with ``customer_keys``, the
    function the service's log uses) from the inference log, the feedback log and the
    retraining tables under ``retraining_dir``.

    The feedback log goes first: its records are partly found through the request ids of the
    customers' logged predictions, which an interrupted run must still find when it is run
    again. ``settle`` (e.g. wait one flush interval of a running service) is called
    before a last look at the log files that appeared meanwhile.
    """
    customers = {str(i).strip() for i in customer_ids}
    if not customers or "" in customers:
        raise ValueError("every customer id must be non-empty")
    # The service hashes ids as sent, feedback ingestion stripped: match both spellings.
    ids = customers | {str(i) for i in customer_ids}
    key_set = {k for k in customer_keys(sorted(ids)) if k}
    keys = pa.array(sorted(key_set), type=pa.string())
    summary = ErasureSummary(erased_at=now or datetime.now(UTC), customers=len(customers), pseudonyms=len(key_set),
                             log_dir=str(log_dir), feedback_path=str(feedback_path))
    log = summary.inference_log
    with maintenance_locks(log_dir, feedback_path):
        seen = _log_files(log_dir, log)
        affected = _matching_request_ids(seen, keys, log)
        request_ids = set().union(*affected.values())
        summary.feedback_records_removed = erase_feedback(feedback_path, key_set, request_ids)
        summary.feedback_rewritten = summary.feedback_records_removed > 0
        if retraining_dir is not None:
            erase_retraining_tables(retraining_dir, ids, key_set, summary)
        for path in affected:
            log.records_removed += _erase_from_log_file(path, keys, log)
        if settle is not None:
            settle()
        # Files that got their final name since the first look: a running service's flushes.
        late = LogErasure()
        fresh = sorted(set(_log_files(log_dir, late)) - set(seen))
        log.unfinished_files_skipped = late.unfinished_files_skipped
        for path in _matching_request_ids(fresh, keys, log):
            log.late_records_removed += _erase_from_log_file(path, keys, log)
    return summary
