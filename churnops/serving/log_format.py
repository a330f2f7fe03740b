"""The inference log's file format, shared by its writers and its readers (docs/contracts.md).

Arrow IPC files (the Feather v2 format) with LZ4-compressed buffers, named ``*.arrow``, each
written under a dot-name and renamed, so a reader never sees half a file. A ``/predict_batch``
record without an id of its own is stored as its request's id plus ``request_row``, its
position in the request; :func:`join_row_ids` turns that back into ``<request_id>-<row>``.

Unfinished files have dot-names, which readers skip: ``.<name>.tmp`` (a file being written
before its rename) and, in the durable log mode, ``.<name>.open`` (the journal of
``churnops.serving.log_journal``). :func:`salvage_log_file` reads an IPC file up to its last
complete record batch, which is how a buffered writer's file cut short by a kill is recovered
(``churnops.serving.log_recovery``).

Files live in one folder per UTC day, ``date=YYYY-MM-DD`` (:func:`partition_name`,
:func:`partition_folders`).

Only pyarrow is imported here: the monitoring pipeline reads the log without the serving stack.
"""

from __future__ import annotations

import contextlib
import os
import re
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

LOG_FILE_SUFFIX = ".arrow"
TEMP_SUFFIX = ".tmp"
OPEN_SUFFIX = ".open"
_PARTITION = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
# LZ4 on the calling thread: on a busy serving core a pool thread would only add switches.
_WRITE_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)
# An IPC file starts with "ARROW1" padded to 8 bytes, then holds a stream; its footer comes last.
_FILE_MAGIC = b"ARROW1"
_FILE_PREFIX = 8


def partition_name(day: date | str) -> str:
    """The folder name of one UTC day's files: ``date=YYYY-MM-DD``."""
    return f"date={day}"


def partition_date(folder: Path) -> date | None:
    """The day of a partition folder, None for anything else."""
    match = _PARTITION.match(folder.name)
    if not match:
        return None
    try:
        return date.fromisoformat(match.group(1))
    except ValueError:
        return None


def partition_folders(log_dir: Path) -> list[tuple[date, Path]]:
    """The day partitions of ``log_dir``, oldest first (other entries are ignored)."""
    if not log_dir.is_dir():
        return []
    found = []
    for folder in log_dir.iterdir():
        day = partition_date(folder) if folder.is_dir() else None
        if day is not None:
            found.append((day, folder))
    return sorted(found)


def write_log_file(table: pa.Table, path: Path, sync: bool = False) -> None:
    """Write ``table`` to ``path`` atomically (a dot-named temporary file, then a rename);
    with ``sync``, the file and then its folder are fsynced, so it survives a power loss."""
    temporary = path.with_name(f".{path.name}{TEMP_SUFFIX}")
    if not sync:
        with pa.ipc.new_file(str(temporary), table.schema, options=_WRITE_OPTIONS) as sink:
            sink.write_table(table)
        os.replace(temporary, path)
        return
    with pa.OSFile(str(temporary), "wb") as output:
        with pa.ipc.new_file(output, table.schema, options=_WRITE_OPTIONS) as sink:
            sink.write_table(table)
        os.fsync(output.fileno())
    os.replace(temporary, path)
    fsync_directory(path.parent)


def fsync_directory(folder: Path) -> None:
    """Make the folder's entries (files created, renamed, removed) durable."""
    descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def salvage_log_file(path: Path) -> pa.Table | None:
    """Every complete record batch of an IPC file or stream, however it ends (a footer, the
    end-of-stream mark, or a batch cut off by a crash); None if not even its schema is whole."""
    with pa.OSFile(str(path)) as source:
        data = source.read_buffer()
    if data.size >= len(_FILE_MAGIC) and data[:len(_FILE_MAGIC)].to_pybytes() == _FILE_MAGIC:
        with contextlib.suppress(pa.ArrowException):
            return pa.ipc.open_file(data).read_all()  # complete: it has its footer
        data = data[_FILE_PREFIX:]  # a file without its footer is a stream after the magic
    try:
        reader = pa.ipc.open_stream(data)
    except (OSError, pa.ArrowException):
        return None
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except (OSError, pa.ArrowException):
            break  # the torn batch the writer was killed in
    return pa.Table.from_batches(batches, schema=reader.schema)


def read_ipc_log_file(path: Path, columns: list[str] | None = None) -> pa.Table:
    """One ``*.arrow`` log file (only ``columns`` decompressed, if given), row ids joined.
    Raises OSError or an Arrow error if the file is unreadable or lacks a column."""
    wanted = columns
    if columns is not None and "request_id" in columns:
        with pa.OSFile(str(path)) as source:
            if "request_row" in pa.ipc.open_file(source).schema.names:  # the footer only
                wanted = [*columns, "request_row"]
    table = join_row_ids(feather.read_table(str(path), columns=wanted, memory_map=False))
    return table.select(columns) if columns is not None else table


def join_row_ids(table: pa.Table) -> pa.Table:
    """Each row's own id in ``request_id``, and no ``request_row``: where ``request_row`` is set,
    the id is ``<request_id>-<request_row>``."""
    if "request_row" not in table.column_names:
        return table
    given, row = table.column("request_id").cast(pa.string()), table.column("request_row")
    derived = pc.binary_join_element_wise(given, row.cast(pa.string()), "-")
    ids = pc.if_else(pc.is_null(row), given, derived)
    return table.set_column(table.column_names.index("request_id"), "request_id", ids).drop_columns(["request_row"])
