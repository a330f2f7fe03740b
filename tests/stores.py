"""Copy a whole state folder (ZenML store, artifacts, MLflow, BentoML) to another place, so that
tests can start from one trained store instead of each training its own.

ZenML and MLflow record absolute paths: the artifact store's path (inside a base64 JSON blob of
the stack component), every artifact, visualization and log URI, the MLflow tracking URI and
artifact locations, and the store URL in ``zenml/config.yaml``. A plain copy would keep pointing
at the original folder, so a test that writes or tampers with artifacts would change the shared
source. ``copy_state`` rewrites every such path and then checks that none is left.
"""

from __future__ import annotations

import base64
import binascii
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from churnops.core.settings import StatePaths

SQLITE_MAGIC = b"SQLite format 3\x00"
TEXT_FILE_LIMIT = 1_000_000  # larger files are data (Parquet, Arrow, joblib), never configuration


class StateCopyError(RuntimeError):
    """A copied state folder still refers to the folder it was copied from."""


def copy_state(source: StatePaths, target: Path) -> StatePaths:
    """Copy the state folder ``source`` to ``target`` (must not exist) and point every path at the copy."""
    if target.exists():
        raise StateCopyError(f"copy target {target} exists already")
    shutil.copytree(source.home, target, symlinks=True)
    old, new = str(source.home), str(target.resolve())
    for file in _files(target):
        with file.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        if head == SQLITE_MAGIC:
            _rewrite_sqlite(file, old, new)
        elif file.stat().st_size <= TEXT_FILE_LIMIT:
            _rewrite_text_file(file, old, new)
    leftovers = list(_references(target, old))
    if leftovers:
        raise StateCopyError(f"the copy in {target} still names {old}: " + "; ".join(leftovers[:10]))
    return StatePaths(target.resolve())


def _files(root: Path) -> Iterator[Path]:
    return (path for path in sorted(root.rglob("*")) if path.is_file() and not path.is_symlink())


def _rewrite_text_file(file: Path, old: str, new: str) -> None:
    data = file.read_bytes()
    if old.encode() not in data:
        return
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # binary (a pickle or joblib file): left alone, and reported by _references
    file.write_text(text.replace(old, new), encoding="utf-8")


def _rewritten(value: object, old: str, new: str) -> object | None:
    """The value with ``old`` replaced, or None when it does not contain ``old``."""
    if isinstance(value, str):
        return value.replace(old, new) if old in value else None
    if isinstance(value, bytes):
        decoded = _base64_text(value)
        if decoded is not None and old in decoded:
            return base64.b64encode(decoded.replace(old, new).encode())
        if old.encode() in value:
            return value.replace(old.encode(), new.encode())
    return None


def _mentions(value: object, old: str) -> bool:
    if isinstance(value, str):
        return old in value
    if isinstance(value, bytes):
        decoded = _base64_text(value)
        return old.encode() in value or (decoded is not None and old in decoded)
    return False


def _base64_text(value: bytes) -> str | None:
    """ZenML keeps JSON configuration as base64 text in BLOB columns."""
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None


def _tables(connection: sqlite3.Connection) -> list[str]:
    rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'")
    return [name for (name,) in rows]


def _rewrite_sqlite(file: Path, old: str, new: str) -> None:
    connection = sqlite3.connect(file)
    try:
        with connection:
            for table in _tables(connection):
                columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
                for column in columns:
                    rows = connection.execute(f'SELECT rowid, "{column}" FROM "{table}"').fetchall()
                    for rowid, value in rows:
                        changed = _rewritten(value, old, new)
                        if changed is not None:
                            connection.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE rowid = ?', (changed, rowid))
    finally:
        connection.close()


def _references(root: Path, old: str) -> Iterator[str]:
    """Where the copy below ``root`` still names ``old``: 'file' or 'file: table.column'."""
    for file in _files(root):
        with file.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        if head != SQLITE_MAGIC:
            if file.stat().st_size <= TEXT_FILE_LIMIT and old.encode() in file.read_bytes():
                yield str(file)
            continue
        connection = sqlite3.connect(f"file:{file}?mode=ro", uri=True)
        try:
            for table in _tables(connection):
                columns = [row[1] for row in connection.execute(f'PRAGMA table_info("{table}")')]
                for column in columns:
                    for (value,) in connection.execute(f'SELECT "{column}" FROM "{table}"'):
                        if _mentions(value, old):
                            yield f"{file}: {table}.{column}"
                            break
        finally:
            connection.close()
