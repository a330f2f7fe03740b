"""A monitoring window out of core: a manifest of the log files it covers, read chunk by chunk.

The window of a 10M-prediction log does not fit comfortably in memory as pandas (about 2 KB a
row as Python objects), so it is never built as one frame. :func:`scan_window` reads each log
file once, checks its rows (the same rules as :func:`~churnops.monitoring.inference_log.read_window`),
checks its feature columns against the schema, draws a uniform sample for the Evidently reports
and returns a :class:`WindowManifest`: every file with its size, modification time, SHA-256,
row counts and which of its rows are in the window. The steps after it stream the files of
the manifest again (:func:`window_chunks`), one file at a time and only the columns they need,
and feed exact sketches (churnops.monitoring.drift, churnops.monitoring.performance).

Memory: one log file (50k rows) at a time, plus the sample, plus, for ``--last N``, the
timestamps of the candidate rows (16 bytes a row) to find the newest N.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather
import pyarrow.parquet as pq
from pydantic import BaseModel, Field

from churnops.data.profile import ReferenceProfile
from churnops.data.schema import DatasetSchema
from churnops.monitoring.drift import (
    DataDriftResult,
    DataDriftSketch,
    DriftThresholds,
    PredictionDrift,
    PredictionDriftSketch,
)
from churnops.monitoring.estimation import Calibration, ExpectedConfusion, LabelFreeEstimate
from churnops.monitoring.feedback import OutcomeIndex
from churnops.monitoring.inference_log import (
    LOG_COLUMNS,
    REQUIRED_COLUMNS,
    ColumnIssue,
    LogReadSummary,
    SchemaCheck,
    WindowSpec,
    as_text_category,
    checked_rows,
    conform_features,
    list_partitions,
    log_probabilities,
    log_timestamps,
    selected_frame,
)
from churnops.monitoring.performance import LivePerformance, LivePerformanceSketch
from churnops.serving.log_format import LOG_FILE_SUFFIX, join_row_ids

# Unparseable values kept as examples for the schema check (the check shows 3 of them).
MAX_EXAMPLES = 50


class WindowError(RuntimeError):
    """A log file of the window changed or vanished between the steps that read it."""


class ManifestFile(BaseModel):
    path: str
    bytes: int
    mtime_ns: int
    sha256: str
    rows: int
    # Rows of this file in the window; ``mask`` (packed bits, base64) says which, when not all.
    selected: int
    mask: str | None = None

    def keep(self) -> np.ndarray:
        if self.mask is None:
            return np.ones(self.rows, dtype=bool)
        bits = np.frombuffer(base64.b64decode(self.mask), dtype=np.uint8)
        return np.unpackbits(bits, count=self.rows).astype(bool)


class WindowManifest(BaseModel):
    """What a monitoring window is made of: the log files (with hashes) and which rows count."""

    log_dir: str
    window: str
    start: datetime | None = None
    end: datetime
    rows: int = 0
    files: list[ManifestFile] = Field(default_factory=list)
    sample_rows: int = 0
    sample_seed: int = 0

    @property
    def bytes(self) -> int:
        return sum(f.bytes for f in self.files)


class FeatureValues(NamedTuple):
    """One chunk's values of one feature, typed as the schema says."""

    numeric: np.ndarray | None  # float64, NaN where missing (numeric features)
    counts: dict[str, int]  # categorical: non-null values by their text
    missing: int
    unparseable: int
    examples: list[str]


def _read_bytes(path: Path) -> tuple[pa.Buffer, str, int, int]:
    stat = path.stat()
    with pa.OSFile(str(path)) as source:
        data = source.read_buffer()
    # hashlib releases the GIL on large buffers: the hash runs beside Arrow's decoding.
    return data, hashlib.sha256(memoryview(data)).hexdigest(), stat.st_size, stat.st_mtime_ns


def _decode(data: pa.Buffer, path: Path, columns: list[str] | None = None) -> pa.Table:
    """A log file's bytes as a table (row ids joined), like ``read_log_file``."""
    if path.suffix == LOG_FILE_SUFFIX:
        table = feather.read_table(pa.BufferReader(data))
        return join_row_ids(table)
    text = [f.name for f in pq.read_schema(pa.BufferReader(data))
            if pa.types.is_string(f.type) and f.name not in {"request_id", "customer_key"}]
    return pq.read_table(pa.BufferReader(data), columns=columns, read_dictionary=text)


def _read_columns(path: Path, columns: list[str]) -> pa.Table:
    """Only ``columns`` of a log file (those it has), row ids joined."""
    if path.suffix == LOG_FILE_SUFFIX:
        try:
            with pa.memory_map(str(path)) as source:
                names = pa.ipc.open_file(source).schema.names
        except pa.ArrowInvalid:
            feather.read_table(str(path), memory_map=False)  # raises the reader's own error, as read_log_file
            raise
        wanted = [c for c in columns if c in names]
        if "request_id" in wanted and "request_row" in names:
            wanted.append("request_row")
        return join_row_ids(feather.read_table(str(path), columns=wanted, memory_map=False))
    names = pq.read_schema(path).names
    text = [f.name for f in pq.read_schema(path) if pa.types.is_string(f.type)
            and f.name not in {"request_id", "customer_key"}]
    return pq.read_table(path, columns=[c for c in columns if c in names], read_dictionary=text)


def feature_values(column: pa.ChunkedArray | None, rows: int, numeric: bool) -> FeatureValues:
    """Arrow column → typed values, counting what does not fit the schema (as ``conform_features``)."""
    if column is None or pa.types.is_null(column.type):
        return FeatureValues(np.full(rows, np.nan) if numeric else None, {}, rows, 0, [])
    if pa.types.is_dictionary(column.type) and (numeric or not pa.types.is_string(column.type.value_type)):
        column = column.cast(column.type.value_type)
    if numeric:
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_boolean(column.type):
            values = column.cast(pa.float64()).to_numpy()
            return FeatureValues(values, {}, int(np.isnan(values).sum()), 0, [])
        raw = column.to_pandas()
        parsed = pd.to_numeric(raw, errors="coerce").astype(float)
        bad = parsed.isna() & raw.notna()
        return FeatureValues(parsed.to_numpy(), {}, int(parsed.isna().sum()), int(bad.sum()),
                             [str(v) for v in raw[bad].head(MAX_EXAMPLES)])
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type) or pa.types.is_dictionary(column.type):
        # Counted on the dictionary codes when the file has them: no string is decoded.
        counts = pc.value_counts(column)
        found = {value: int(count) for value, count in zip(counts.field("values").to_pylist(),
                                                             counts.field("counts").to_pylist(), strict=True)
                 if value is not None}
        return FeatureValues(None, found, column.null_count, 0, [])
    values = as_text_category(column.to_pandas())
    found = {str(k): int(v) for k, v in values.value_counts().items() if v}
    return FeatureValues(None, found, int(values.isna().sum()), 0, [])


class SchemaCheckBuilder:
    """``conform_features``' column-by-column check, accumulated over chunks."""

    def __init__(self, schema: DatasetSchema) -> None:
        self.schema = schema
        self.rows = 0
        self.seen: set[str] = set()
        self.extra: list[str] = []
        self.unparseable: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.counts: dict[str, dict[str, int]] = {f.name: {} for f in schema.categorical}
        known = set(LOG_COLUMNS) | set(schema.feature_names) | {schema.id_column, schema.target.column}
        self._known = known

    def add_columns(self, names: list[str]) -> None:
        """A file's columns (even if none of its rows is in the window, as a whole-frame read sees them)."""
        for name in names:
            if name not in self._known and name not in self.extra and name != "request_row":
                self.extra.append(name)
        self.seen.update(names)

    def add(self, name: str, values: FeatureValues) -> None:
        if values.unparseable:
            self.unparseable[name] = self.unparseable.get(name, 0) + values.unparseable
            kept = self.examples.setdefault(name, [])
            kept.extend(values.examples[:MAX_EXAMPLES - len(kept)])
        if name in self.counts:
            totals = self.counts[name]
            for category, count in values.counts.items():
                totals[category] = totals.get(category, 0) + count

    def check(self) -> SchemaCheck:
        schema = self.schema
        check = SchemaCheck(dataset=schema.name, features=schema.feature_names)
        if self.rows == 0:
            return check
        for column in self.extra:
            check.issues.append(ColumnIssue(column=column, problem="not_a_feature",
                                            detail="logged but not a feature of the model's schema (ignored)"))
        for feature in schema.numeric:
            name = feature.name
            if name not in self.seen:
                check.issues.append(ColumnIssue(column=name, problem="missing", rows=self.rows,
                                                detail="numeric feature missing from the inference log"))
            elif self.unparseable.get(name):
                count = self.unparseable[name]
                examples = sorted(set(self.examples[name]))[:3]
                check.issues.append(ColumnIssue(
                    column=name, problem="unparseable", rows=count,
                    detail=f"{count:,} values are not numbers (e.g. {examples}); treated as missing"))
        for feature in schema.categorical:
            name = feature.name
            if name not in self.seen:
                check.issues.append(ColumnIssue(column=name, problem="missing", rows=self.rows,
                                                detail="categorical feature missing from the inference log"))
                continue
            known = set(feature.categories)
            unknown = {k: v for k, v in sorted(self.counts[name].items(), key=lambda kv: -kv[1]) if k not in known}
            if unknown:
                rows = sum(unknown.values())
                shown = ", ".join(f"'{k}' ({v:,})" for k, v in list(unknown.items())[:5])
                check.issues.append(ColumnIssue(
                    column=name, problem="unknown_categories", rows=rows,
                    detail=f"{rows:,} values outside the schema's categories {feature.categories}: {shown}"))
        return check


class _Sampler:
    """A uniform sample without replacement of at most ``size`` window rows, in one pass: every
    row gets a seeded random key and the ``size`` smallest keys win (bottom-k sampling). Rows are
    kept as Arrow (raw, as logged) until the end."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys: list[np.ndarray] = []
        self.tables: list[pa.Table] = []
        self.held = 0
        self.cutoff = np.inf

    def offer(self, table: pa.Table, keep: np.ndarray) -> None:
        keys = self.rng.random(int(keep.sum()))
        chosen = keys < self.cutoff
        if not chosen.any():
            return
        self.tables.append(table.take(pa.array(np.flatnonzero(keep)[chosen])))
        self.keys.append(keys[chosen])
        self.held += int(chosen.sum())
        if self.held > 2 * self.size:
            self._prune()

    def _prune(self) -> None:
        table, keys = _concat(self.tables), np.concatenate(self.keys)
        if len(keys) > self.size:
            order = np.argsort(keys, kind="stable")[:self.size]
            order.sort()  # keep the log's order among the sampled rows
            table, keys = table.take(pa.array(order)), keys[order]
            self.cutoff = float(keys.max())
        self.tables, self.keys, self.held = [table], [keys], len(keys)

    def sample(self) -> pa.Table | None:
        if not self.tables:
            return None
        self._prune()
        return self.tables[0]


def _concat(tables: list[pa.Table]) -> pa.Table:
    """Tables of different files as one; a column the writers typed differently becomes text
    (``conform_features`` parses it again, as it does for a whole-window read)."""
    if len(tables) == 1:
        return tables[0]
    try:
        return pa.concat_tables(tables, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        types: dict[str, set[pa.DataType]] = {}
        for table in tables:
            for field in table.schema:
                types.setdefault(field.name, set()).add(field.type)
        mixed = {name for name, kinds in types.items() if len(kinds) > 1}
        return pa.concat_tables([pa.table({name: _as_text(t.column(name)) if name in mixed else t.column(name)
                                           for name in t.column_names}) for t in tables],
                                promote_options="permissive")


def _as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.cast(pa.string())


def _packed(keep: np.ndarray) -> str | None:
    return None if keep.all() else base64.b64encode(np.packbits(keep).tobytes()).decode()


def _newest(stamps: list[np.ndarray], last: int) -> list[np.ndarray]:
    """Per file, which of its valid rows are among the ``last`` newest (ties: the later in the
    log wins, as a stable sort by time of the files in order followed by ``tail`` picks)."""
    everything = np.concatenate(stamps) if stamps else np.empty(0, dtype=np.int64)
    chosen = np.ones(len(everything), dtype=bool)
    if len(everything) > last:
        chosen[:] = False
        chosen[np.argsort(everything, kind="stable")[-last:]] = True
    return np.split(chosen, np.cumsum([len(s) for s in stamps])[:-1]) if stamps else []


def _candidates(log_dir: Path, window: WindowSpec, summary: LogReadSummary, start: datetime | None,
                end: datetime) -> list[tuple[Path, np.ndarray | None, list[str] | None]]:
    """The files to read, oldest first, each with its window rows and columns when already known (``--last``)."""
    partitions = list_partitions(log_dir)
    if window.last is None:
        return [(f, None, None) for day, files in partitions if start is None or start.date() <= day <= end.date()
                for f in files]
    # The last N: newest day first until N valid rows are in hand (as read_window), on the three
    # required columns only; then the newest N of those.
    found: list[tuple[Path, np.ndarray, np.ndarray, list[str]]] = []
    valid = 0
    for _day, files in reversed(partitions):
        day_found = []
        for path in files:
            try:
                table = _read_columns(path, REQUIRED_COLUMNS)
            except (OSError, pa.ArrowException) as error:
                summary.skip_file(path, f"unreadable: {type(error).__name__}: {str(error)[:160]}")
                continue
            summary.rows_read += table.num_rows
            missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
            if missing:
                summary.skip_file(path, f"missing required columns {missing}")
                summary.rows_malformed += table.num_rows
                summary.malformed_by_reason["file without required columns"] = (
                    summary.malformed_by_reason.get("file without required columns", 0) + table.num_rows)
                continue
            summary.files_read += 1
            keep, timestamps, _probability = checked_rows(table, summary, None, end)
            day_found.append((path, keep, timestamps[keep].array.asi8, table.column_names))
            valid += int(keep.sum())
        found = day_found + found
        if valid >= window.last:
            break
    chosen = []
    for (path, keep, _stamps, names), newest in zip(found, _newest([f[2] for f in found], window.last), strict=True):
        rows = np.zeros(len(keep), dtype=bool)
        rows[np.flatnonzero(keep)[newest]] = True
        chosen.append((path, rows, names))
    return chosen


def scan_window(log_dir: Path, window: WindowSpec, schema: DatasetSchema, sample_rows: int = 100_000,
                seed: int = 0, now: datetime | None = None,
                ) -> tuple[WindowManifest, LogReadSummary, SchemaCheck, pd.DataFrame]:
    """One pass over the window's log files: the manifest, what was read and skipped, the schema
    check over every row, and a uniform sample of at most ``sample_rows`` rows (features typed)."""
    end = now or datetime.now(UTC)
    start = end - timedelta(hours=window.hours) if window.hours is not None else None
    summary = LogReadSummary(log_dir=str(log_dir), window=window.describe(), start=start, end=end)
    manifest = WindowManifest(log_dir=str(log_dir), window=window.describe(), start=start, end=end,
                              sample_seed=seed)
    candidates = _candidates(log_dir, window, summary, start, end)
    check = SchemaCheckBuilder(schema)
    sampler = _Sampler(sample_rows, seed)
    versions: dict[str, int] = {}
    first, latest = None, None
    with ThreadPoolExecutor(max_workers=1) as pool:
        # The next file is read and hashed while this one is decoded and checked.
        # (--last: a file none of whose rows is among the newest N is not read again.)
        for _path, known, names in candidates:
            if known is not None and not known.any():
                check.add_columns(names or [])
        candidates = [c for c in candidates if c[1] is None or c[1].any()]
        # One file ahead only: memory holds two files' bytes at most.
        ahead = pool.submit(_read_bytes, candidates[0][0]) if candidates else None
        for index, (path, known, _names) in enumerate(candidates):
            current = ahead
            ahead = pool.submit(_read_bytes, candidates[index + 1][0]) if index + 1 < len(candidates) else None
            try:
                assert current is not None
                data, digest, size, mtime = current.result()
                table = _decode(data, path)
            except (OSError, pa.ArrowException) as error:
                if known is not None:
                    raise WindowError(f"log file {path} became unreadable while the window was read: {error}") \
                        from error
                summary.skip_file(path, f"unreadable: {type(error).__name__}: {str(error)[:160]}")
                continue
            if known is None:
                summary.rows_read += table.num_rows
                missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
                if missing:
                    summary.skip_file(path, f"missing required columns {missing}")
                    summary.rows_malformed += table.num_rows
                    summary.malformed_by_reason["file without required columns"] = (
                        summary.malformed_by_reason.get("file without required columns", 0) + table.num_rows)
                    continue
                summary.files_read += 1
                keep, timestamps, _probability = checked_rows(table, summary, start, end)
            else:
                keep, timestamps = known, log_timestamps(table.column("timestamp"))
            check.add_columns(table.column_names)
            selected = int(keep.sum())
            manifest.files.append(ManifestFile(path=str(path), bytes=size, mtime_ns=mtime, sha256=digest,
                                               rows=table.num_rows, selected=selected, mask=_packed(keep)))
            if not selected:
                continue
            manifest.rows += selected
            chosen = table if selected == table.num_rows else table.filter(pa.array(keep))
            check.rows += selected
            for name in schema.feature_names:
                column = chosen.column(name) if name in chosen.column_names else None
                check.add(name, feature_values(column, selected, name in schema.numeric_names))
            if "model_version" in chosen.column_names:
                for version, count in _value_counts(chosen.column("model_version")).items():
                    versions[version] = versions.get(version, 0) + count
            times = timestamps[keep]
            first = times.min() if first is None else min(first, times.min())
            latest = times.max() if latest is None else max(latest, times.max())
            sampler.offer(table, keep)
    summary.rows_in_window = manifest.rows
    if manifest.rows:
        summary.first_timestamp = first.floor("us").to_pydatetime()
        summary.last_timestamp = latest.floor("us").to_pydatetime()
        summary.model_versions = {k: v for k, v in sorted(versions.items(), key=lambda kv: -kv[1]) if v}
    sampled = sampler.sample()
    if sampled is None:
        sample = pd.DataFrame({c: pd.Series(dtype=object) for c in LOG_COLUMNS})
    else:
        sample = selected_frame(sampled, np.ones(sampled.num_rows, dtype=bool), log_timestamps(
            sampled.column("timestamp")), log_probabilities(sampled.column("probability")))
        sample = sample.sort_values("timestamp", kind="stable").reset_index(drop=True)
    for column in LOG_COLUMNS:
        if column not in sample.columns:
            sample[column] = None if column != "label" else np.nan
    sample, _ = conform_features(sample, schema)
    manifest.sample_rows = len(sample)
    return manifest, summary, check.check(), sample


def _value_counts(column: pa.ChunkedArray) -> dict[str, int]:
    """Counts of a column's values by their text (nulls as 'None', as pandas' astype(str) does)."""
    counts = pc.value_counts(column)
    return {str(v): int(c) for v, c in zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(),
                                           strict=True)}


def _verified(entry: ManifestFile) -> Path:
    path = Path(entry.path)
    try:
        stat = path.stat()
    except OSError as error:
        raise WindowError(f"log file {path} of the window is gone ({error}); run the monitoring again") from error
    if stat.st_size != entry.bytes or stat.st_mtime_ns != entry.mtime_ns:
        raise WindowError(f"log file {path} changed after the window was read (size or modification time); "
                          "run the monitoring again")
    return path


def window_chunks(manifest: WindowManifest, columns: list[str], schema: DatasetSchema | None = None,
                  ) -> Iterator[pd.DataFrame]:
    """The window's rows, one log file at a time, as pandas with only ``columns`` (absent ones
    as missing); times and probabilities parsed, features typed by ``schema`` when given. A file
    that changed since the manifest was made raises :class:`WindowError`."""
    wanted = list(dict.fromkeys(columns))
    for entry in manifest.files:
        if not entry.selected:
            continue
        path = _verified(entry)
        table = _read_columns(path, wanted)
        if table.num_rows != entry.rows:
            raise WindowError(f"log file {path} holds {table.num_rows} rows, the window's manifest {entry.rows}")
        keep = entry.keep()
        timestamps = log_timestamps(table.column("timestamp")) if "timestamp" in table.column_names else None
        probability = log_probabilities(table.column("probability")) if "probability" in table.column_names \
            else None
        frame = selected_frame(table, keep, timestamps, probability)
        for column in wanted:
            if column not in frame.columns:
                frame[column] = np.nan if column == "label" or (schema and column in schema.numeric_names) else None
        if schema is not None:
            frame, _ = conform_features(frame, schema)
        yield frame[wanted]


def window_tables(manifest: WindowManifest, columns: list[str]) -> Iterator[pa.Table]:
    """The window's rows as Arrow, one log file at a time, with those of ``columns`` each file has."""
    for entry in manifest.files:
        if not entry.selected:
            continue
        path = _verified(entry)
        table = _read_columns(path, list(dict.fromkeys(columns)))
        if table.num_rows != entry.rows:
            raise WindowError(f"log file {path} holds {table.num_rows} rows, the window's manifest {entry.rows}")
        yield table if entry.selected == entry.rows else table.filter(pa.array(entry.keep()))


def window_data_drift(manifest: WindowManifest, profile: ReferenceProfile, schema: DatasetSchema,
                      thresholds: DriftThresholds, missing_features: list[str] | None = None) -> DataDriftResult:
    """``detect_data_drift`` over every row of the window, one file at a time (exact)."""
    sketch = DataDriftSketch(profile, schema, missing_features)
    for table in window_tables(manifest, schema.feature_names):
        sketch.rows += table.num_rows
        for name, numeric in sketch.numeric.items():
            column = table.column(name) if name in table.column_names else None
            values = feature_values(column, table.num_rows, numeric=True)
            assert values.numeric is not None
            numeric.add(values.numeric)
        for name, categorical in sketch.categorical.items():
            column = table.column(name) if name in table.column_names else None
            values = feature_values(column, table.num_rows, numeric=False)
            categorical.add(values.counts, table.num_rows, values.missing)
    return sketch.result(thresholds)


DAY_NS = 86_400 * 10**9


def _floats(column: pa.ChunkedArray) -> np.ndarray:
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        return column.cast(pa.float64()).to_numpy()
    return log_probabilities(column).to_numpy(dtype=float)


def _nanoseconds(column: pa.ChunkedArray) -> np.ndarray:
    """Times as int64 nanoseconds since the epoch, UTC (naive times are UTC by contract)."""
    return log_timestamps(column).array.asi8


def _same_version(table: pa.Table, model_version: str | None) -> np.ndarray:
    """Rows of ``model_version`` (None: every row); a row without a version is another version's."""
    if model_version is None:
        return np.ones(table.num_rows, dtype=bool)
    if "model_version" not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    column = table.column("model_version")
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    same = pc.equal(column.cast(pa.string()), str(model_version)).fill_null(False)
    return same.to_numpy(zero_copy_only=False).astype(bool)


def window_prediction_drift(manifest: WindowManifest, reference_probabilities: np.ndarray, model_version: str,
                            threshold: float, thresholds: DriftThresholds) -> PredictionDrift:
    """``detect_prediction_drift`` over every row of the window, one file at a time (exact, KS included)."""
    sketch = PredictionDriftSketch(reference_probabilities, model_version, threshold)
    for table in window_tables(manifest, ["model_version", "probability"]):
        same = _same_version(table, model_version)
        sketch.add_served(_floats(table.column("probability"))[same], int((~same).sum()))
    return sketch.result(thresholds)


def window_estimated_performance(manifest: WindowManifest, calibration: Calibration, model_version: str,
                                 threshold: float) -> LabelFreeEstimate:
    """Expected precision / recall / F1 of this version's served predictions, from their probabilities only."""
    confusion = ExpectedConfusion()
    rng = np.random.default_rng(0)
    for table in window_tables(manifest, ["model_version", "probability"]):
        served = _floats(table.column("probability"))[_same_version(table, model_version)]
        confusion.add(calibration.apply(served), served >= threshold, rng=rng)
    metrics = confusion.estimate(calibration.reference_rows)
    note = "" if metrics else f"no predictions of version {model_version} in the window"
    return LabelFreeEstimate(model_version=model_version, calibration_rows=calibration.reference_rows,
                             metrics=metrics, note=note)


PERFORMANCE_COLUMNS = ["request_id", "customer_key", "timestamp", "model_version", "probability", "label"]


JOIN_BATCH_ROWS = 500_000
MAX_JOIN_BATCH_ROWS = 2_000_000


def _batches(tables: Iterator[pa.Table], rows: int) -> Iterator[pa.Table]:
    """Consecutive tables concatenated into batches of at least ``rows`` rows (the last may be smaller)."""
    held: list[pa.Table] = []
    count = 0
    for table in tables:
        held.append(table)
        count += table.num_rows
        if count >= rows:
            yield _concat(held)
            held, count = [], 0
    if held:
        yield _concat(held)


class _Lookup:
    """Latest outcome per id, as an Arrow value set (a hash table Arrow builds per probe: cheaper,
    measured, than pandas' persistent one on 50k-row files)."""

    def __init__(self, outcomes: pd.Series) -> None:
        self.ids = pa.array(outcomes.index.astype(str).to_numpy(dtype=object), type=pa.string())
        self.outcomes = outcomes.to_numpy(dtype=float)

    def find(self, column: pa.ChunkedArray) -> np.ndarray:
        """The outcome of each value of ``column`` (NaN: none)."""
        found = np.full(len(column), np.nan)
        if not len(self.ids) or column.null_count == len(column):
            return found
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        positions = pc.index_in(column.cast(pa.string()), value_set=self.ids).to_numpy(zero_copy_only=False)
        hit = ~np.isnan(positions)
        found[hit] = self.outcomes[positions[hit].astype(np.int64)]
        return found


def window_live_performance(manifest: WindowManifest, feedback: pd.DataFrame, threshold: float, gate_f1: float,
                            gate_roc_auc: float, min_labelled: int, expected: dict[str, float] | None = None,
                            model_version: str | None = None) -> LivePerformance:
    """``evaluate_live_performance`` of the window joined with the feedback log (by request id,
    else customer key; the latest outcome wins): a hash join, the feedback side built once, the
    window streamed past it file by file. Only labelled rows are kept."""
    index = OutcomeIndex(feedback)
    by_request, by_customer = _Lookup(index.by_request), _Lookup(index.by_customer)
    sketch = LivePerformanceSketch(model_version)
    # Arrow builds the feedback's hash table once per probe: probe with at least as many window
    # rows as there are outcomes, so building costs no more than probing (memory: the batch).
    batch_rows = min(max(JOIN_BATCH_ROWS, len(index.by_request) + len(index.by_customer)), MAX_JOIN_BATCH_ROWS)
    for table in _batches(window_tables(manifest, PERFORMANCE_COLUMNS), batch_rows):
        same = _same_version(table, model_version)
        sketch.other_version_rows += int((~same).sum())
        if not same.all():
            table = table.filter(pa.array(same))
        days = _nanoseconds(table.column("timestamp")) // DAY_NS
        outcome = by_request.find(table.column("request_id"))
        matched_by = np.where(np.isnan(outcome), "none", "request").astype(object)
        if "customer_key" in table.column_names:
            from_customer = by_customer.find(table.column("customer_key"))
            fill = np.isnan(outcome) & ~np.isnan(from_customer)
            outcome[fill] = from_customer[fill]
            matched_by[fill] = "customer"
        labelled = ~np.isnan(outcome)
        label = (table.column("label").filter(pa.array(labelled)).to_pandas() if "label" in table.column_names
                 else pd.Series(np.nan, index=range(int(labelled.sum()))))
        rows = pd.DataFrame({"outcome": outcome[labelled], "label": label.to_numpy(),
                             "probability": _floats(table.column("probability"))[labelled],
                             "matched_by": matched_by[labelled],
                             "day": pd.to_datetime(days[labelled] * DAY_NS, utc=True)})
        first_day = int(days.min()) if len(days) else 0
        counts = np.bincount(days - first_day) if len(days) else np.zeros(0, dtype=np.int64)
        sketch.add_rows(pd.Series(counts, index=pd.to_datetime((first_day + np.arange(len(counts))) * DAY_NS,
                                                                utc=True)), rows)
    return sketch.result(threshold, gate_f1, gate_roc_auc, min_labelled, expected)


def window_labelled_rows(manifest: WindowManifest, feedback: pd.DataFrame, schema: DatasetSchema) -> pd.DataFrame:
    """The labelled predictions of the window (features typed, ``outcome`` joined): the rows
    retraining learns from, without holding the unlabelled rest in memory."""
    outcomes = OutcomeIndex(feedback)
    parts = [part for part in (joined[joined["outcome"].notna()] for joined in (
        outcomes.join(frame) for frame in window_chunks(manifest, [*LOG_COLUMNS, *schema.feature_names], schema)))
             if len(part)]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[*LOG_COLUMNS, "outcome"])
