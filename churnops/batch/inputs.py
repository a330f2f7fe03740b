"""Finding and reading the batch: one CSV or Parquet file, or a folder of parts, in bounded chunks.

Every file is inspected before any row is scored: it must exist, hold rows, and carry the id
column and every feature with a usable type. Rows are then streamed through ``pyarrow.dataset``
(Parquet) or pyarrow's incremental CSV reader, ``chunk_rows`` at a time, so memory does not grow
with the size of the batch.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as pads
import pyarrow.parquet as pq
from pydantic import BaseModel

from churnops.batch.errors import BatchInputError
from churnops.data.schema import DatasetSchema, load_schema
from churnops.data.synthetic import SyntheticSpec, generate_customers

Format = Literal["csv", "parquet"]
SUFFIXES: dict[str, Format] = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
# The same null spellings training's CSV reader accepts (churnops.data.sources.read_table).
CSV_NULLS = ["", "NA", "NaN", "null"]
CSV_BLOCK_BYTES = 16 << 20


class BatchInput(BaseModel):
    """The files of one batch, checked; ``rows`` is known up front for Parquet only."""

    files: list[str]
    format: Format
    rows: int | None = None
    source: str


def _format_of(path: Path) -> Format:
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise BatchInputError(str(path), f"unsupported file type '{suffix}': use .csv or .parquet")
    return SUFFIXES[suffix]


def locate_files(path: Path) -> tuple[list[Path], Format]:
    """The data files of ``path`` (a file, or a folder of same-format parts, dot-names skipped)."""
    if path.is_file():
        return [path], _format_of(path)
    if not path.is_dir():
        raise BatchInputError(str(path), "no such file or folder")
    parts = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith((".", "_"))
                   and p.suffix.lower() in SUFFIXES)
    if not parts:
        raise BatchInputError(str(path), "the folder holds no .csv or .parquet file")
    formats = {_format_of(p) for p in parts}
    if len(formats) > 1:
        raise BatchInputError(str(path), "the folder mixes CSV and Parquet parts: use one format")
    return parts, formats.pop()


def _csv_options(schema: DatasetSchema) -> tuple[pacsv.ReadOptions, pacsv.ConvertOptions]:
    # Ids are text whatever they look like; every other column is typed by cleaning, as in training.
    types = {schema.id_column: pa.string()} if schema.id_column else {}
    return (pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            pacsv.ConvertOptions(null_values=CSV_NULLS, strings_can_be_null=True, column_types=types))


def _is_text(kind: pa.DataType) -> bool:
    if pa.types.is_dictionary(kind):
        return _is_text(kind.value_type)
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)


def _numbers_or_text(kind: pa.DataType) -> bool:
    return (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_decimal(kind)
            or pa.types.is_null(kind) or _is_text(kind))


def check_columns(file: str, arrow_schema: pa.Schema, schema: DatasetSchema) -> None:
    """Every required column present, with a type cleaning can read; the id as text or integers."""
    names = set(arrow_schema.names)
    required = ([schema.id_column] if schema.id_column else []) + schema.feature_names
    for column in required:
        if column not in names:
            raise BatchInputError(file, f"required column is missing (the file has: {', '.join(arrow_schema.names)})",
                                  column)
    if schema.id_column:
        kind = arrow_schema.field(schema.id_column).type
        # An all-null column reads as type null: rule id_present then names the rows.
        if not (pa.types.is_integer(kind) or _is_text(kind) or pa.types.is_null(kind)):
            raise BatchInputError(file, f"unknown customer id type {kind}: ids must be text or whole numbers",
                                  schema.id_column)
    for column in schema.feature_names:
        kind = arrow_schema.field(column).type
        if not _numbers_or_text(kind):
            expected = "numbers (or text holding numbers)" if column in schema.numeric_names else "text categories"
            raise BatchInputError(file, f"wrong type {kind}: expected {expected}", column)


def inspect_file(path: Path, fmt: Format, schema: DatasetSchema) -> int | None:
    """Check one file's columns and emptiness; its row count (Parquet) or None (CSV)."""
    file = str(path)
    if path.stat().st_size == 0:
        raise BatchInputError(file, "the file is empty")
    try:
        if fmt == "parquet":
            metadata = pq.read_metadata(path)
            if metadata.num_rows == 0:
                raise BatchInputError(file, "the file holds no rows")
            check_columns(file, metadata.schema.to_arrow_schema(), schema)
            return int(metadata.num_rows)
        read, convert = _csv_options(schema)
        reader = pacsv.open_csv(path, read_options=read, convert_options=convert)
        check_columns(file, reader.schema, schema)
        if all(batch.num_rows == 0 for batch in _first(reader)):
            raise BatchInputError(file, "the file has a header but no rows")
        return None
    except (pa.ArrowInvalid, OSError) as error:
        raise BatchInputError(file, f"cannot be read as {fmt.upper()}: {error}") from None


def _first(reader: pacsv.CSVStreamingReader) -> list[pa.RecordBatch]:
    try:
        return [reader.read_next_batch()]
    except StopIteration:
        return []


def open_batch(path: Path, schema: DatasetSchema) -> BatchInput:
    """Locate and inspect every file of the batch at ``path``."""
    files, fmt = locate_files(path)
    counts = [inspect_file(f, fmt, schema) for f in files]
    rows = sum(c for c in counts if c is not None) if all(c is not None for c in counts) else None
    return BatchInput(files=[str(f) for f in files], format=fmt, rows=rows, source=str(path))


def required_columns(schema: DatasetSchema) -> list[str]:
    return ([schema.id_column] if schema.id_column else []) + schema.feature_names


def iter_file_chunks(file: str, fmt: Format, schema: DatasetSchema, chunk_rows: int) -> Iterator[pd.DataFrame]:
    """The required columns of ``file`` as DataFrames of at most ``chunk_rows`` rows."""
    columns = required_columns(schema)
    if fmt == "parquet":
        # No read-ahead: pyarrow's default (16 batches, 4 files) would hold that many chunks at once.
        batches: Iterator[pa.RecordBatch] = pads.dataset(file, format="parquet").to_batches(
            columns=columns, batch_size=chunk_rows, batch_readahead=0, fragment_readahead=0, use_threads=False)
    else:
        read, convert = _csv_options(schema)
        batches = iter(pacsv.open_csv(file, read_options=read, convert_options=convert))
    pending: list[pa.RecordBatch] = []
    size = 0
    for batch in batches:
        if batch.num_rows == 0:
            continue
        pending.append(batch.select(columns))
        size += batch.num_rows
        while size >= chunk_rows:
            table = pa.Table.from_batches(pending)
            yield _to_pandas(table.slice(0, chunk_rows))
            rest = table.slice(chunk_rows)
            pending, size = rest.to_batches(), rest.num_rows
    if size:
        yield _to_pandas(pa.Table.from_batches(pending))


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    # Plain object/float columns, as training's reader gives them: cleaning does the typing.
    for i, field in enumerate(table.schema):
        if pa.types.is_dictionary(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(field.type.value_type))
    return table.to_pandas().reset_index(drop=True)


def schema_for_batch(model_schema: DatasetSchema, schema_path: Path | None) -> DatasetSchema:
    """The schema the batch is read with: the model's own, or ``--schema`` when it describes the
    same features (its source, spellings and gates may differ; the features may not)."""
    if schema_path is None:
        return model_schema
    schema = load_schema(schema_path)
    if schema.numeric_names != model_schema.numeric_names or schema.categorical_names != model_schema.categorical_names:
        raise BatchInputError(str(schema_path), f"the schema's features ({', '.join(schema.feature_names)}) are not "
                              f"the model's ({', '.join(model_schema.feature_names)})")
    for mine, theirs in zip(schema.categorical, model_schema.categorical, strict=True):
        if mine.categories != theirs.categories:
            raise BatchInputError(str(schema_path), f"categories {mine.categories} differ from the model's "
                                  f"{theirs.categories}", mine.name)
    return schema


def write_synthetic_batch(folder: Path, rows: int, seed: int, schema: DatasetSchema,
                          part_rows: int = 1_000_000) -> Path:
    """Synthetic customers without the target, as Parquet parts under ``folder``: the default
    batch, so the pipeline runs right after ``make run``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = 0
    while written < rows:
        n = min(part_rows, rows - written)
        # A distinct seed per part: different customers, and ids (they start with the seed) stay unique.
        frame = generate_customers(SyntheticSpec(rows=n, seed=seed + written // part_rows))
        frame = frame.drop(columns=[schema.target.column], errors="ignore")
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False),
                       folder / f"part-{written // part_rows:05d}.parquet")
        written += n
    return folder
