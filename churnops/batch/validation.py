"""The training data contract minus the target, applied to a batch chunk by chunk.

Cleaning is training's own (``churnops.data.validation``): the same repairs, the same rules and
the same per-rule messages. What differs for a batch:

* there is no target column, and no minimum row count;
* a customer without an id cannot be put on a contact list (rule ``id_present``);
* missing-value rates are judged over the whole batch, not per chunk;
* ``on_invalid: skip`` drops the rows that break a row rule (``ROW_RULES``) and counts them per
  column and rule instead of failing; ``fail`` stops at the first chunk with a violation.

Valid, cleaned chunks are written as Arrow IPC parts (categories as dictionary codes in schema
order) for the drift check and scoring to stream again.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.feather as feather
from pydantic import BaseModel, Field

from churnops.batch.errors import BatchDataError, BatchValidationError
from churnops.batch.inputs import BatchInput, iter_file_chunks
from churnops.data.schema import DatasetSchema
from churnops.data.validation import Violation, _Cleaner, _explain, _gate_schema, _map_distinct, _normalise_text

OnInvalid = Literal["fail", "skip"]
# Rules a single row can break (its row is dropped under ``on_invalid: skip``).
ROW_RULES = ("id_present", "duplicate_id", "numeric_type", "numeric_range", "allowed_categories")
# Rules judged over the whole batch, or not at all for a batch.
BATCH_LEVEL_RULES = ("max_missing_rate", "min_rows")
DEFAULT_CHUNK_ROWS = 250_000


class SkippedRows(BaseModel):
    column: str
    rule: str
    rows: int
    file: str


class BatchValidation(BaseModel):
    """What validation did to the batch: rows in and kept, skipped rows by rule, repairs."""

    on_invalid: OnInvalid
    files: int
    rows_in: int = 0
    rows_valid: int = 0
    rows_skipped: int = 0
    skipped: list[SkippedRows] = Field(default_factory=list)
    repairs: dict[str, int] = Field(default_factory=dict)
    missing_rates: dict[str, float] = Field(default_factory=dict)

    def skipped_by_rule(self) -> dict[str, int]:
        totals: Counter[str] = Counter()
        for entry in self.skipped:
            totals[f"{entry.column}: {entry.rule}"] += entry.rows
        return dict(totals)


class CleanBatch(BaseModel):
    """The valid rows, cleaned, as Arrow IPC parts in input order."""

    parts: list[str]
    rows: int
    source: str


class _BatchCleaner(_Cleaner):
    """Training's cleaner without the target; keeps the chunk's row positions as the index."""

    def run(self) -> pd.DataFrame:
        required = [c for c in self.schema.required_columns if c != self.schema.target.column]
        for column in required:
            if column not in self.frame.columns:
                self.violate(column, "required_column", "column absent", "column present")
        self.frame = self.frame[[c for c in required if c in self.frame.columns]]
        if self.schema.id_column in self.frame.columns:
            self._drop_duplicate_ids()
        for numeric in self.schema.numeric:
            if numeric.name in self.frame.columns:
                self._clean_numeric(numeric)
        for categorical in self.schema.categorical:
            if categorical.name in self.frame.columns:
                self._clean_categorical(categorical)
        return self.frame


def _unparseable(raw: pd.Series) -> pd.Series:
    """Non-blank values that do not parse as numbers (training turns them into missing values)."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_bool_dtype(raw):
        return pd.Series(False, index=raw.index)
    text = _normalise_text(raw)
    blank = text.eq("")
    parsed = _map_distinct(text.where(~blank), lambda v: pd.to_numeric(v, errors="coerce")).astype(float)
    return parsed.isna() & text.notna() & ~blank


def row_rule_masks(raw: pd.DataFrame, cleaned: pd.DataFrame, schema: DatasetSchema,
                   type_violations: set[str]) -> dict[tuple[str, str], pd.Series]:
    """Per (column, rule): which cleaned rows break it. ``type_violations``: numeric columns whose
    unparseable share broke ``numeric_type`` (below the share, training keeps them as missing)."""
    masks: dict[tuple[str, str], pd.Series] = {}
    if schema.id_column:
        masks[(schema.id_column, "id_present")] = cleaned[schema.id_column].isna()
    for feature in schema.numeric:
        values = cleaned[feature.name]
        if feature.name in type_violations:
            masks[(feature.name, "numeric_type")] = _unparseable(raw.loc[cleaned.index, feature.name])
        if feature.out_of_range == "fail":
            low = -np.inf if feature.min is None else feature.min
            high = np.inf if feature.max is None else feature.max
            masks[(feature.name, "numeric_range")] = (values < low) | (values > high)
    for categorical in schema.categorical:
        values = cleaned[categorical.name]
        masks[(categorical.name, "allowed_categories")] = values.notna() & ~values.isin(categorical.categories)
    return {key: mask for key, mask in masks.items() if bool(mask.any())}


def _id_violation(column: str, rows: int) -> Violation:
    return Violation(column=column, rule="id_present", observed=f"{rows} rows without a customer id",
                     expected="an id on every row")


def _gate_violations(cleaned: pd.DataFrame, schema: DatasetSchema) -> list[Violation]:
    try:
        _gate_schema(schema, list(cleaned.columns)).validate(cleaned, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return [v for v in _explain(schema, cleaned, errors.failure_cases) if v.rule not in BATCH_LEVEL_RULES]
    return []


@dataclass
class ChunkResult:
    cleaned: pd.DataFrame
    skipped: dict[tuple[str, str], int] = field(default_factory=dict)
    repairs: dict[str, int] = field(default_factory=dict)


def validate_chunk(frame: pd.DataFrame, schema: DatasetSchema, on_invalid: OnInvalid, file: str,
                   rows: str = "") -> ChunkResult:
    """Clean one chunk; raise :class:`BatchValidationError` (``fail``) or drop and count (``skip``)."""
    cleaner = _BatchCleaner(schema, frame.reset_index(drop=True))
    cleaned = cleaner.run()
    violations = list(cleaner.violations)
    repairs = {f"{a.column}.{a.action}": a.count for a in cleaner.actions}
    if any(v.rule == "required_column" for v in violations):
        raise BatchValidationError(file, violations, rows)
    if on_invalid == "fail":
        if schema.id_column and int(cleaned[schema.id_column].isna().sum()):
            violations.append(_id_violation(schema.id_column, int(cleaned[schema.id_column].isna().sum())))
        violations += _gate_violations(cleaned, schema)
        if violations:
            raise BatchValidationError(file, violations, rows)
        return ChunkResult(cleaned=cleaned, repairs=repairs)
    skipped: dict[tuple[str, str], int] = {}
    duplicates = repairs.pop(f"{schema.id_column}.duplicate_id_dropped", 0) if schema.id_column else 0
    if duplicates:
        skipped[(str(schema.id_column), "duplicate_id")] = duplicates
    type_violations = {v.column for v in violations if v.rule == "numeric_type"}
    masks = row_rule_masks(frame.reset_index(drop=True), cleaned, schema, type_violations)
    dropped = pd.Series(False, index=cleaned.index)
    for key, mask in masks.items():
        skipped[key] = int(mask.sum())
        dropped |= mask
    return ChunkResult(cleaned=cleaned[~dropped], skipped=skipped, repairs=repairs)


def as_arrow(cleaned: pd.DataFrame, schema: DatasetSchema) -> pyarrow.Table:
    """A cleaned chunk for the staging parts: ids as text, numbers as float64, categories as
    dictionary codes in schema order (-1 null), which scoring reads back without a lookup."""
    columns: dict[str, pyarrow.Array] = {}
    if schema.id_column:
        columns[schema.id_column] = pyarrow.array(cleaned[schema.id_column].astype(object), type=pyarrow.string())
    for name in schema.numeric_names:
        columns[name] = pyarrow.array(cleaned[name].to_numpy(dtype=np.float64), type=pyarrow.float64())
    for feature in schema.categorical:
        categorical = pd.Categorical(cleaned[feature.name], categories=feature.categories)
        columns[feature.name] = pyarrow.DictionaryArray.from_arrays(
            pyarrow.array(categorical.codes, type=pyarrow.int32(), mask=categorical.codes < 0),
            pyarrow.array(feature.categories, type=pyarrow.string()))
    return pyarrow.table(columns)


def missing_rate_violations(missing: dict[str, int], rows: int, schema: DatasetSchema) -> list[Violation]:
    """Training's ``max_missing_rate`` rule over the whole batch (same message)."""
    limits = {f.name: f.max_missing for f in [*schema.numeric, *schema.categorical]}
    return [Violation(column=name, rule="max_missing_rate", observed=f"{count / rows:.4f}",
                      expected=f"<= {limits[name]}")
            for name, count in missing.items() if rows and count / rows > limits[name]]


def _chunks(batch: BatchInput, schema: DatasetSchema,
            chunk_rows: int) -> Iterator[tuple[str, int, pd.DataFrame]]:
    for file in batch.files:
        start = 0
        for frame in iter_file_chunks(file, batch.format, schema, chunk_rows):
            yield file, start, frame
            start += len(frame)


def validate_batch(batch: BatchInput, schema: DatasetSchema, on_invalid: OnInvalid, staging: Path,
                   chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple[CleanBatch, BatchValidation]:
    """Validate every chunk of ``batch``, writing the valid cleaned rows under ``staging``."""
    staging.mkdir(parents=True, exist_ok=True)
    report = BatchValidation(on_invalid=on_invalid, files=len(batch.files))
    missing: Counter[str] = Counter()
    repairs: Counter[str] = Counter()
    parts: list[str] = []
    for file, start, frame in _chunks(batch, schema, chunk_rows):
        where = f" (rows {start + 1:,}-{start + len(frame):,})"
        result = validate_chunk(frame, schema, on_invalid, file, where)
        report.rows_in += len(frame)
        repairs.update(result.repairs)
        for (column, rule), count in result.skipped.items():
            report.skipped.append(SkippedRows(column=column, rule=rule, rows=count, file=file))
        report.rows_skipped += len(frame) - len(result.cleaned)
        if len(result.cleaned) == 0:
            continue
        report.rows_valid += len(result.cleaned)
        missing.update({n: int(result.cleaned[n].isna().sum()) for n in schema.feature_names})
        part = staging / f"clean-{len(parts):05d}.arrow"
        feather.write_feather(as_arrow(result.cleaned, schema), part, compression="uncompressed")
        parts.append(str(part))
    if report.rows_valid == 0:
        raise BatchDataError(f"{batch.source}: no valid row to score ({report.rows_in:,} read, "
                             f"{report.rows_skipped:,} skipped: {report.skipped_by_rule()})")
    violations = missing_rate_violations(dict(missing), report.rows_valid, schema)
    if violations:
        raise BatchValidationError(batch.source, violations)
    report.repairs = dict(repairs)
    report.missing_rates = {n: round(missing[n] / report.rows_valid, 6) for n in schema.feature_names}
    return CleanBatch(parts=parts, rows=report.rows_valid, source=batch.source), report


def read_part(part: str) -> pyarrow.Table:
    return feather.read_table(part, memory_map=True)
