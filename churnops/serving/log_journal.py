"""The durable log mode's open file: a journal of commit groups, published as an Arrow IPC log file.

Why not write Arrow on every commit: building and serialising a 25-column Arrow table costs
about 0.5 ms of CPU whatever its size, and in durable mode a commit happens every one or few
requests. A journal record is the group's column buffers as they are (a few ``tobytes``), the
request ids and the customer keys (hashed before they are written: no raw customer id is
ever on disk), packed with msgpack: about 0.01 ms. The Arrow table is built once per file,
when the journal is published, as the buffered mode builds it once per flush.

File ``.<name>.open`` (``<name>`` is the log file it becomes): the magic ``CHRNLOG1``, then
records, each ``<u32 payload length><u32 CRC-32 of the payload><msgpack payload>`` (little
endian). The first record is the layout (model name and version, feature names, categories),
so any process can publish the journal, whatever model it serves itself; the others are one
commit group each. A reader stops at the first record that is cut short or fails its CRC: the
one a killed writer was writing, never acknowledged. :func:`publish_unfinished` turns a
journal (or a buffered writer's cut-short ``.tmp`` IPC file) into ``<name>``, written and
fsynced, and removes it.
"""

from __future__ import annotations

import contextlib
import os
import struct
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import pyarrow as pa

from churnops.serving.log_format import (
    OPEN_SUFFIX,
    TEMP_SUFFIX,
    fsync_directory,
    salvage_log_file,
    write_log_file,
)

MAGIC = b"CHRNLOG1"
_FRAME = struct.Struct("<II")
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


@dataclass
class LogLayout:
    """What a log table holds besides its rows: the model and the schema's features."""

    model_name: str
    model_version: str
    numeric_names: list[str]
    categorical: list[tuple[str, list[str]]]  # name, categories (a row's code indexes them)
    dictionaries: list[pa.Array] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.dictionaries = [pa.array(categories, type=pa.string()) for _name, categories in self.categorical]

    def to_record(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "model_version": self.model_version,
                "numeric": self.numeric_names, "categorical": [[n, c] for n, c in self.categorical]}

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> LogLayout:
        return cls(record["model_name"], record["model_version"], list(record["numeric"]),
                   [(name, list(categories)) for name, categories in record["categorical"]])


@dataclass
class LogRows:
    """``n`` rows as the writer buffers them: features column by column, and row ids as an index
    into ``id_values`` plus the position in the request where the id is derived (-1: its own)."""

    numeric: np.ndarray  # (numeric features, n) float64, NaN for null
    codes: np.ndarray  # (categorical features, n) int32, -1 for null
    probability: np.ndarray
    label: np.ndarray
    timestamp: np.ndarray  # ns since the epoch, UTC
    id_index: np.ndarray
    position: np.ndarray
    id_values: list[str]

    def __len__(self) -> int:
        return len(self.probability)

    def take(self, selected: np.ndarray) -> LogRows:
        return LogRows(self.numeric[:, selected], self.codes[:, selected], self.probability[selected],
                       self.label[selected], self.timestamp[selected], self.id_index[selected],
                       self.position[selected], self.id_values)


def build_log_table(layout: LogLayout, rows: LogRows, keys: pa.Array) -> pa.Table:
    """The log's columns (docs/contracts.md) over ``rows``, without copying the numbers."""
    n = len(rows)
    constant = pa.array(np.zeros(n, dtype=np.int32))  # one value per column: a dictionary of one
    columns: dict[str, pa.Array] = {
        "request_id": pa.DictionaryArray.from_arrays(pa.array(rows.id_index),
                                                     pa.array(rows.id_values, type=pa.string())),
        "request_row": pa.array(rows.position, mask=rows.position < 0, type=pa.int32()),
        "timestamp": pa.array(rows.timestamp, type=pa.timestamp("ns", tz="UTC")),
        "model_name": pa.DictionaryArray.from_arrays(constant, pa.array([layout.model_name])),
        "model_version": pa.DictionaryArray.from_arrays(constant, pa.array([layout.model_version])),
        "customer_key": keys,
        "probability": pa.array(rows.probability),
        "label": pa.array(rows.label),
    }
    for values, name in zip(rows.numeric, layout.numeric_names, strict=True):
        columns[name] = pa.array(values, mask=np.isnan(values), type=pa.float64())
    for codes, dictionary, (name, _categories) in zip(rows.codes, layout.dictionaries, layout.categorical, strict=True):
        indices = pa.array(codes, mask=codes < 0, type=pa.int32())
        columns[name] = pa.DictionaryArray.from_arrays(indices, dictionary)
    return pa.table(columns)


def _frame(record: dict[str, Any]) -> bytes:
    payload = _ENCODER.encode(record)
    return _FRAME.pack(len(payload), zlib.crc32(payload)) + payload


class Journal:
    """An open journal: :meth:`append` writes a group straight to the OS (no user-space buffer),
    :meth:`sync` makes everything appended so far durable."""

    def __init__(self, final_path: Path, layout: LogLayout) -> None:
        self.final_path = final_path
        self.path = final_path.with_name(f".{final_path.name}{OPEN_SUFFIX}")
        self.rows = 0
        self.opened = time.monotonic()
        self._descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._size = 0
        self._synced_size = 0
        self._entry_synced = False
        self._write(MAGIC + _frame({"layout": layout.to_record()}))

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(self._descriptor, view)
            view = view[written:]
        self._size += len(data)

    def append(self, rows: LogRows, keys: list[str | None] | None) -> None:
        self._write(_frame({
            "n": len(rows), "numeric": rows.numeric.tobytes(), "codes": rows.codes.tobytes(),
            "probability": rows.probability.tobytes(), "label": rows.label.tobytes(),
            "timestamp": rows.timestamp.tobytes(), "id_index": rows.id_index.tobytes(),
            "position": rows.position.tobytes(), "ids": rows.id_values, "keys": keys,
        }))
        self.rows += len(rows)

    def sync(self) -> None:
        """fsync what was appended; the first time, the folder too (the file's entry)."""
        os.fsync(self._descriptor)
        self._synced_size = self._size
        if not self._entry_synced:
            fsync_directory(self.path.parent)
            self._entry_synced = True

    def close(self) -> None:
        os.fsync(self._descriptor)
        os.close(self._descriptor)

    def abandon(self) -> None:
        """After a failed append or sync: cut the file back to what was last synced and close it."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._descriptor, self._synced_size)
        with contextlib.suppress(OSError):
            os.close(self._descriptor)


def read_journal(path: Path) -> pa.Table | None:
    """The rows of every whole record of a journal; None if not even its layout is whole."""
    data = path.read_bytes()
    if not data.startswith(MAGIC):
        return None
    records, offset = [], len(MAGIC)
    while offset + _FRAME.size <= len(data):
        length, checksum = _FRAME.unpack_from(data, offset)
        payload = data[offset + _FRAME.size:offset + _FRAME.size + length]
        if len(payload) < length or zlib.crc32(payload) != checksum:
            break  # the record a killed writer was writing
        try:
            records.append(_DECODER.decode(payload))
        except msgspec.DecodeError:
            break
        offset += _FRAME.size + length
    if not records or "layout" not in records[0]:
        return None
    layout = LogLayout.from_record(records[0]["layout"])
    return _table_of(layout, records[1:])


def _table_of(layout: LogLayout, groups: list[dict[str, Any]]) -> pa.Table:
    numeric_count, categorical_count = len(layout.numeric_names), len(layout.categorical)

    def column(name: str, dtype: type, width: int = 0) -> np.ndarray:
        parts = [np.frombuffer(g[name], dtype=dtype) for g in groups]
        if width:
            parts = [p.reshape(width, g["n"]) for p, g in zip(parts, groups, strict=True)]
            return np.concatenate(parts, axis=1) if parts else np.empty((width, 0), dtype=dtype)
        return np.concatenate(parts) if parts else np.empty(0, dtype=dtype)

    # Each group indexes its own ids: shift the indices past the ids of the groups before it.
    shifts, id_values = [], []
    for group in groups:
        shifts.append(np.full(group["n"], len(id_values), dtype=np.int32))
        id_values.extend(group["ids"])
    id_index = column("id_index", np.int32) + (np.concatenate(shifts) if shifts else np.empty(0, dtype=np.int32))
    rows = LogRows(column("numeric", np.float64, numeric_count), column("codes", np.int32, categorical_count),
                   column("probability", np.float64), column("label", np.int64), column("timestamp", np.int64),
                   id_index, column("position", np.int32), id_values)
    if any(g["keys"] is not None for g in groups):
        keys = pa.array([k for g in groups for k in (g["keys"] or [None] * g["n"])], type=pa.string())
    else:
        keys = pa.nulls(len(rows), type=pa.string())
    return build_log_table(layout, rows, keys)


def publish_unfinished(path: Path, final_path: Path) -> int:
    """Turn an unfinished log file (a journal ``.<name>.open``, or a buffered writer's
    ``.<name>.tmp`` IPC file) into ``final_path`` (one LZ4 IPC file, written and synced), then
    remove it; returns the rows kept. A file with no whole record is just removed."""
    if path.name.endswith(TEMP_SUFFIX):
        # write_log_file writes through that very name: move the file out of its way first,
        # to the name recovery looks at first (it tells the two formats apart by their start).
        moved = final_path.with_name(f".{final_path.name}{OPEN_SUFFIX}")
        os.replace(path, moved)
        path = moved
    table = read_unfinished(path)
    if table is not None and table.num_rows:
        write_log_file(table.combine_chunks(), final_path, sync=True)
    path.unlink()
    fsync_directory(path.parent)
    return table.num_rows if table is not None else 0


def read_unfinished(path: Path) -> pa.Table | None:
    """What an unfinished file holds, a journal or an IPC file (told apart by how they start)."""
    with path.open("rb") as source:
        start = source.read(len(MAGIC))
    return read_journal(path) if start == MAGIC else salvage_log_file(path)
