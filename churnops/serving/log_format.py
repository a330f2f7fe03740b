"""The inference log's file format, shared by its writers and its readers (docs/contracts.md).

Arrow IPC files (the Feather v2 format) with LZ4-compressed buffers, named ``*.arrow``, each
written under a dot-name and renamed, so a reader never sees half a file. A ``/predict_batch``
record without an id of its own is stored as its request's id plus ``request_row``, its
position in the request; :func:`join_row_ids` turns that back into ``<request_id>-<row>``.

Only pyarrow is imported here: the monitoring pipeline reads the log without the serving stack.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.feather as feather

LOG_FILE_SUFFIX = ".arrow"
# LZ4 on the calling thread: on a busy serving core a pool thread would only add switches.
_WRITE_OPTIONS = pa.ipc.IpcWriteOptions(compression="lz4", use_threads=False)


def write_log_file(table: pa.Table, path: Path) -> None:
    """Write ``table`` to ``path`` atomically (a dot-named temporary file, then a rename)."""
    temporary = path.with_name(f".{path.name}.tmp")
    with pa.ipc.new_file(str(temporary), table.schema, options=_WRITE_OPTIONS) as sink:
        sink.write_table(table)
    os.replace(temporary, path)


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
