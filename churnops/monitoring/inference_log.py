"""Reading a window of the inference log the service writes.

Layout (docs/contracts.md): ``<log_dir>/date=YYYY-MM-DD/<writer>-<seq>.arrow`` (Arrow IPC, as the
service and :func:`write_partitioned` write it) or ``.parquet`` (the same columns), with columns
``request_id``, ``timestamp`` (UTC), ``model_name``, ``model_version``, ``customer_key``,
``probability``, ``label`` and one column per schema feature, as sent.

The reader never fails on bad records: unreadable files and rows without a usable
``request_id``/``timestamp``/``probability`` are skipped and counted, and feature columns are
checked against the model's dataset schema column by column.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, Field, model_validator

from churnops.data.schema import DatasetSchema
from churnops.serving.log_format import (
    LOG_FILE_SUFFIX,
    partition_folders,
    partition_name,
    read_ipc_log_file,
    write_log_file,
)

LOG_COLUMNS = ["request_id", "timestamp", "model_name", "model_version", "customer_key", "probability", "label"]
REQUIRED_COLUMNS = ["request_id", "timestamp", "probability"]
# The service writes Arrow IPC (churnops.serving.log_format), as does write_partitioned;
# Parquet files with the same columns (exported from elsewhere) are read too.
LOG_FILE_SUFFIXES = (LOG_FILE_SUFFIX, ".parquet")
# High-cardinality text columns stay plain strings; every other text column (model name and
# version, categorical features) becomes a pandas categorical.
_UNIQUE_STRING_COLUMNS = {"request_id", "customer_key"}
# Keep reports small: list this many skipped files by name, count the rest.
MAX_LISTED_FILES = 20


class WindowSpec(BaseModel):
    """Which predictions to monitor: the last ``hours`` hours, or the last ``last`` predictions."""

    hours: float | None = Field(None, gt=0)
    last: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _one_kind(self) -> WindowSpec:
        if self.hours is not None and self.last is not None:
            raise ValueError("a window is either the last N hours or the last N predictions, not both")
        if self.hours is None and self.last is None:
            raise ValueError("a window needs hours or last")
        return self

    def describe(self) -> str:
        if self.last is not None:
            return f"last {self.last:,} predictions"
        return f"last {self.hours:g} h"


class SkippedFile(BaseModel):
    path: str
    reason: str


class LogReadSummary(BaseModel):
    """What was read, what was skipped and why."""

    log_dir: str
    window: str
    start: datetime | None = None
    end: datetime
    files_read: int = 0
    files_skipped: int = 0
    skipped_files: list[SkippedFile] = Field(default_factory=list)
    rows_read: int = 0
    rows_malformed: int = 0
    malformed_by_reason: dict[str, int] = Field(default_factory=dict)
    rows_in_window: int = 0
    first_timestamp: datetime | None = None
    last_timestamp: datetime | None = None
    model_versions: dict[str, int] = Field(default_factory=dict)

    def skip_file(self, path: Path, reason: str) -> None:
        self.files_skipped += 1
        if len(self.skipped_files) < MAX_LISTED_FILES:
            self.skipped_files.append(SkippedFile(path=str(path), reason=reason))

    def describe(self) -> str:
        text = f"{self.rows_in_window:,} predictions in the window ({self.window}; {self.files_read} files read"
        if self.files_skipped:
            text += f", {self.files_skipped} unreadable skipped"
        if self.rows_malformed:
            reasons = ", ".join(f"{k}: {v:,}" for k, v in sorted(self.malformed_by_reason.items()))
            text += f", {self.rows_malformed:,} malformed records skipped ({reasons})"
        return text + ")"


class ColumnIssue(BaseModel):
    column: str
    problem: Literal["missing", "unparseable", "unknown_categories", "not_a_feature"]
    rows: int = 0
    detail: str

    def describe(self) -> str:
        return f"column '{self.column}': {self.detail}"


class SchemaCheck(BaseModel):
    """How the logged columns compare with the dataset schema the model was trained with."""

    dataset: str
    features: list[str]
    issues: list[ColumnIssue] = Field(default_factory=list)

    @property
    def missing_features(self) -> list[str]:
        return [i.column for i in self.issues if i.problem == "missing"]

    @property
    def blocking_issues(self) -> list[ColumnIssue]:
        """Issues that mean served data does not match the model (extra columns are harmless)."""
        return [i for i in self.issues if i.problem != "not_a_feature"]


def is_finished_log_file(path: Path) -> bool:
    """A log file a writer has finished: dot-names are files still being written (or left by a
    crash), renamed when done."""
    return path.suffix in LOG_FILE_SUFFIXES and not path.name.startswith(".")


def list_partitions(log_dir: Path) -> list[tuple[date, list[Path]]]:
    """Day partitions, oldest first, each with its finished log files in name order."""
    return [(day, sorted(f for f in folder.iterdir() if is_finished_log_file(f)))
            for day, folder in partition_folders(log_dir)]


def read_log_file(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One log file, Arrow IPC or Parquet. Low-cardinality text (categories, model name and
    version) comes back as dictionaries: a fraction of the memory of a million Python strings.
    Raises OSError or an Arrow error if the file is unreadable, KeyError if a column is absent."""
    if path.suffix == LOG_FILE_SUFFIX:
        return read_ipc_log_file(path, columns)
    text = [f.name for f in pq.read_schema(path) if pa.types.is_string(f.type) and f.name not in _UNIQUE_STRING_COLUMNS]
    return pq.read_table(path, columns=columns, read_dictionary=text)


def _read_file(path: Path, summary: LogReadSummary) -> pa.Table | None:
    try:
        table = read_log_file(path)
    except (OSError, pa.ArrowException) as error:
        summary.skip_file(path, f"unreadable: {type(error).__name__}: {str(error)[:160]}")
        return None
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        summary.skip_file(path, f"missing required columns {missing}")
        summary.rows_read += table.num_rows
        summary.rows_malformed += table.num_rows
        summary.malformed_by_reason["file without required columns"] = (
            summary.malformed_by_reason.get("file without required columns", 0) + table.num_rows)
        return None
    summary.files_read += 1
    summary.rows_read += table.num_rows
    return table


def log_timestamps(column: pa.ChunkedArray) -> pd.Series:
    """A log file's ``timestamp`` column as UTC times; naive times are UTC by contract, text is
    parsed and garbage becomes NaT."""
    timestamps = column.to_pandas()
    if isinstance(timestamps.dtype, pd.DatetimeTZDtype):
        timestamps = timestamps.dt.tz_convert(UTC)
    else:
        timestamps = pd.to_datetime(timestamps, errors="coerce", utc=True, format="mixed")
    return timestamps.astype("datetime64[ns, UTC]")


def log_probabilities(column: pa.ChunkedArray) -> pd.Series:
    """A log file's ``probability`` column as floats (NaN where it does not parse)."""
    return pd.to_numeric(column.to_pandas(), errors="coerce").astype(float)


def checked_rows(table: pa.Table, summary: LogReadSummary, start: datetime | None,
                 end: datetime) -> tuple[np.ndarray, pd.Series, pd.Series]:
    """Which rows of ``table`` have a usable id, time and probability inside (start, end]
    (malformed ones are counted in ``summary``), with the parsed times and probabilities."""
    timestamps = log_timestamps(table.column("timestamp"))
    probability = log_probabilities(table.column("probability"))
    checks = {
        "missing request_id": _blank(table.column("request_id")),
        "missing or unparseable timestamp": timestamps.isna().to_numpy(),
        "missing or out-of-range probability": (~probability.between(0.0, 1.0)).to_numpy(),
    }
    bad = np.zeros(table.num_rows, dtype=bool)
    for reason, mask in checks.items():
        # Count each bad row once, under its first failing rule.
        fresh = mask & ~bad
        if fresh.any():
            summary.malformed_by_reason[reason] = summary.malformed_by_reason.get(reason, 0) + int(fresh.sum())
        bad |= mask
    summary.rows_malformed += int(bad.sum())
    keep = ~bad & (timestamps <= pd.Timestamp(end)).to_numpy()
    if start is not None:
        keep &= (timestamps > pd.Timestamp(start)).to_numpy()
    return keep, timestamps, probability


def selected_frame(table: pa.Table, keep: np.ndarray, timestamps: pd.Series | None,
                   probability: pd.Series | None) -> pd.DataFrame:
    """The ``keep`` rows of ``table`` as pandas, with the parsed times and probabilities.

    Rows are filtered in Arrow before conversion, several times cheaper than boolean indexing
    in pandas; low-cardinality text becomes categoricals, ids stay in Arrow memory.
    """
    selected = table if keep.all() else table.filter(pa.array(keep))
    for index, field in enumerate(selected.schema):
        if field.name not in _UNIQUE_STRING_COLUMNS and pa.types.is_string(field.type):
            selected = selected.set_column(index, field.name, pc.dictionary_encode(selected.column(index)))
    # Ids stay in Arrow memory (pandas "string[pyarrow]"), not as a million Python strings.
    frame = selected.to_pandas(types_mapper={pa.string(): pd.StringDtype("pyarrow")}.get)
    # Series aligned by a fresh index: .to_numpy() would turn tz-aware times into objects.
    if timestamps is not None:
        frame["timestamp"] = timestamps[keep].reset_index(drop=True)
    if probability is not None:
        frame["probability"] = probability[keep].reset_index(drop=True)
    if "request_id" in selected.column_names and not pa.types.is_string(selected.schema.field("request_id").type):
        frame["request_id"] = frame["request_id"].astype(str).astype(pd.StringDtype("pyarrow"))
    return frame


def _usable(table: pa.Table, summary: LogReadSummary, start: datetime | None, end: datetime) -> pd.DataFrame:
    """The rows of ``table`` with a usable id, time and probability inside (start, end], as pandas."""
    keep, timestamps, probability = checked_rows(table, summary, start, end)
    frame = selected_frame(table, keep, timestamps, probability)
    for column in LOG_COLUMNS:
        if column not in frame.columns:
            frame[column] = None if column != "label" else np.nan
    return frame


def _blank(column: pa.ChunkedArray) -> np.ndarray:
    """Null or whitespace-only ids, computed in Arrow for text (no Python strings)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        blank = pc.or_kleene(pc.is_null(column), pc.equal(pc.utf8_trim_whitespace(column), ""))
        return blank.to_numpy(zero_copy_only=False).astype(bool)
    values = column.to_pandas()
    return (values.isna() | values.astype(str).str.strip().eq("")).to_numpy()


def _select(tables: list[pa.Table], summary: LogReadSummary, start: datetime | None, end: datetime) -> pd.DataFrame:
    if not tables:
        frame = pd.DataFrame({c: pd.Series(dtype=object) for c in LOG_COLUMNS})
        frame["timestamp"] = pd.Series(dtype="datetime64[ns, UTC]")
        frame["probability"] = pd.Series(dtype=float)
        return frame
    try:
        return _usable(pa.concat_tables(tables, promote_options="permissive"), summary, start, end)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        # Writers disagreed on a column's type (e.g. a feature sent as text): let pandas hold both.
        frames = [_usable(t, summary, start, end) for t in tables]
        return pd.concat([f.astype({c: object for c in f.columns if isinstance(f[c].dtype, pd.CategoricalDtype)})
                          for f in frames], ignore_index=True)


def read_window(log_dir: Path, window: WindowSpec, now: datetime | None = None) -> tuple[pd.DataFrame, LogReadSummary]:
    """Read the predictions of ``window`` (sorted by time) and a summary of what was skipped."""
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=window.hours) if window.hours is not None else None
    summary = LogReadSummary(log_dir=str(log_dir), window=window.describe(), start=start, end=end)
    partitions = list_partitions(log_dir)
    if start is not None:
        tables = [t for day, files in partitions if start.date() <= day <= end.date()
                  for t in (_read_file(f, summary) for f in files) if t is not None]
        frame = _select(tables, summary, start, end)
    else:
        assert window.last is not None
        # Newest day first, until enough valid rows are in hand.
        frames: list[pd.DataFrame] = []
        for _day, files in reversed(partitions):
            frames.append(_select([t for t in (_read_file(f, summary) for f in files) if t is not None],
                                  summary, None, end))
            if sum(len(f) for f in frames) >= window.last:
                break
        frame = pd.concat(frames[::-1], ignore_index=True) if frames else _select([], summary, None, end)
    frame = frame.sort_values("timestamp", kind="stable")
    if window.last is not None:
        frame = frame.tail(window.last)
    frame = frame.reset_index(drop=True)
    summary.rows_in_window = len(frame)
    if len(frame):
        summary.first_timestamp = frame["timestamp"].iloc[0].floor("us").to_pydatetime()
        summary.last_timestamp = frame["timestamp"].iloc[-1].floor("us").to_pydatetime()
        versions = frame["model_version"].astype(str).value_counts()
        summary.model_versions = {str(k): int(v) for k, v in versions.items() if v}
    return frame, summary


def window_has_rows(log_dir: Path, window: WindowSpec, now: datetime | None = None) -> bool:
    """A cheap look (timestamps only) whether the window can hold any prediction."""
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=window.hours) if window.hours is not None else None
    for day, files in reversed(list_partitions(log_dir)):
        if start is not None and not (start.date() <= day <= end.date()):
            continue
        for path in files:
            try:
                stamps = pd.to_datetime(read_log_file(path, ["timestamp"]).column(0).to_pandas(),
                                        utc=True, errors="coerce")
            except (OSError, KeyError, pa.ArrowException):
                continue
            inside = stamps <= pd.Timestamp(end)
            if start is not None:
                inside &= stamps > pd.Timestamp(start)
            if inside.any():
                return True
    return False


def logged_request_ids(log_dir: Path) -> set[str]:
    """Every request id in the log (one column read per file; unreadable files are skipped)."""
    ids: set[str] = set()
    for _day, files in list_partitions(log_dir):
        for path in files:
            try:
                column = read_log_file(path, ["request_id"]).column(0)
            except (OSError, KeyError, pa.ArrowException):
                continue
            ids.update(str(v) for v in column.drop_null().to_pylist())
    return ids


def conform_features(frame: pd.DataFrame, schema: DatasetSchema) -> tuple[pd.DataFrame, SchemaCheck]:
    """Type the feature columns as the schema says and report every mismatch per column.

    Missing feature columns are added as all-missing (and reported); numeric values that do not
    parse become missing (and are counted); categories the schema does not know are kept (drift
    sees them) and counted. Columns that are neither log nor feature columns are reported.
    """
    check = SchemaCheck(dataset=schema.name, features=schema.feature_names)
    out = frame.copy()
    if out.empty:
        # No rows, no evidence about the columns: give them their types and report nothing.
        for name in schema.numeric_names:
            out[name] = pd.Series(dtype=float)
        for name in schema.categorical_names:
            out[name] = pd.Series(dtype="category")
        return out, check
    known = set(LOG_COLUMNS) | set(schema.feature_names) | {schema.id_column, schema.target.column}
    for column in out.columns:
        if column not in known:
            check.issues.append(ColumnIssue(column=str(column), problem="not_a_feature",
                                            detail="logged but not a feature of the model's schema (ignored)"))
    for feature in schema.numeric:
        name = feature.name
        if name not in out.columns:
            check.issues.append(ColumnIssue(column=name, problem="missing", rows=len(out),
                                            detail="numeric feature missing from the inference log"))
            out[name] = np.nan
            continue
        raw = out[name]
        values = pd.to_numeric(raw, errors="coerce").astype(float)
        unparseable = int((values.isna() & raw.notna()).sum())
        if unparseable:
            examples = sorted({str(v) for v in raw[values.isna() & raw.notna()].head(50)})[:3]
            check.issues.append(ColumnIssue(
                column=name, problem="unparseable", rows=unparseable,
                detail=f"{unparseable:,} values are not numbers (e.g. {examples}); treated as missing"))
        out[name] = values
    for feature in schema.categorical:
        name = feature.name
        if name not in out.columns:
            check.issues.append(ColumnIssue(column=name, problem="missing", rows=len(out),
                                            detail="categorical feature missing from the inference log"))
            out[name] = pd.Series(pd.Categorical([None] * len(out)), index=out.index)
            continue
        values = as_text_category(out[name])
        known_categories = set(feature.categories)
        unknown = {str(k): int(v) for k, v in values.value_counts().items() if v and k not in known_categories}
        if unknown:
            rows = sum(unknown.values())
            shown = ", ".join(f"'{k}' ({v:,})" for k, v in sorted(unknown.items(), key=lambda kv: -kv[1])[:5])
            check.issues.append(ColumnIssue(
                column=name, problem="unknown_categories", rows=rows,
                detail=f"{rows:,} values outside the schema's categories {feature.categories}: {shown}"))
        out[name] = values
    return out, check


def as_text_category(values: pd.Series) -> pd.Series:
    """A categorical of the values as text (nulls stay null); one conversion per distinct value."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    labels = pd.Index([str(u) for u in uniques], dtype=object)
    if labels.has_duplicates:
        # e.g. 1 and "1" both present: merge them under one label.
        merged, labels = pd.factorize(labels)
        codes = np.where(codes >= 0, merged[np.maximum(codes, 0)], -1)
    return pd.Series(pd.Categorical.from_codes(codes, categories=labels), index=values.index)


def write_partitioned(records: pd.DataFrame, log_dir: Path, writer: str, rows_per_file: int = 50_000) -> list[Path]:
    """Write prediction records in the contract's layout and format (Arrow IPC, LZ4), one day
    partition per UTC date.

    For backfills (predictions made outside the service, e.g. batch scoring), benchmarks and
    tests; the service has its own buffered writer. ``records`` needs the log columns.
    """
    missing = [c for c in LOG_COLUMNS if c not in records.columns]
    if missing:
        raise ValueError(f"records lack inference-log columns {missing}")
    frame = records.copy()
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True).astype("datetime64[ns, UTC]")
    for column in ("request_id", "customer_key", "model_name"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    frame["probability"] = frame["probability"].astype("float64")
    frame["label"] = frame["label"].astype("int64")
    frame["model_version"] = frame["model_version"].astype(str)
    written = []
    days = frame["timestamp"].dt.strftime("%Y-%m-%d")
    for day, rows in frame.groupby(days, sort=True):
        folder = log_dir / partition_name(day)
        folder.mkdir(parents=True, exist_ok=True)
        existing = len(list(folder.glob(f"{writer}-*{LOG_FILE_SUFFIX}")))
        for offset, start in enumerate(range(0, len(rows), rows_per_file)):
            path = folder / f"{writer}-{existing + offset:06d}{LOG_FILE_SUFFIX}"
            write_log_file(pa.Table.from_pandas(rows.iloc[start:start + rows_per_file], preserve_index=False), path)
            written.append(path)
    return written
