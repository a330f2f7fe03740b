"""``/predict_batch`` bodies as an Arrow IPC stream (``application/vnd.apache.arrow.stream``).

The columnar format of the batch endpoint: one column per field, validated column by column
in Arrow's C++ kernels, so a 1k-row body never becomes a thousand Python objects. The contract
is the JSON one (churnops.serving.contract): every schema feature as a column (null means
unknown), optionally the id column and ``request_id`` (strings), nothing else; numbers finite,
inside the schema's range, whole for ``int`` features; categories declared ones or their
synonyms. A refused body answers 400 naming the column and the first bad row, as
``"loc": [row, column]``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from churnops.serving.contract import MAX_ID_LENGTH, REQUEST_ID_FIELD, FeatureBatch, FieldRules, RequestError

ARROW_STREAM_TYPES = frozenset({"application/vnd.apache.arrow.stream"})


def _refuse(message: str, loc: list[Any], msg: str, kind: str) -> RequestError:
    return RequestError(400, message, [{"loc": loc, "msg": msg, "type": kind}])


def _first(mask: np.ndarray) -> int:
    """Index of the first true value; -1 when none."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else -1


def _nulls(column: pa.Array) -> np.ndarray | None:
    """The column's null mask, or None when it has no nulls."""
    return np.asarray(column.is_null()) if column.null_count else None


def read_table(body: bytes, max_rows: int) -> pa.Table:
    try:
        table = pa.ipc.open_stream(pa.py_buffer(body)).read_all()
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as error:
        raise _refuse("invalid Arrow IPC stream", ["body"], str(error).splitlines()[0] if str(error) else "unreadable",
                      "arrow_invalid") from None
    names = table.column_names
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise RequestError(400, f"repeated column(s): {', '.join(repeated)}",
                           [{"loc": [name], "msg": "each column may appear once", "type": "duplicate_column"}
                            for name in repeated])
    if table.num_rows == 0:
        raise _refuse("the stream has no rows", ["body"], "at least one row is required", "too_short")
    if table.num_rows > max_rows:
        raise _refuse("too many rows", ["body"], f"at most {max_rows} rows", "too_long")
    return table


def _numeric(table: pa.Table, name: str, rules: FieldRules) -> np.ndarray:
    # Checked in numpy once the column is an array: each Arrow compute call costs several µs.
    column = _single_chunk(table, name)
    if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type) or pa.types.is_null(column.type)):
        raise _refuse(f"invalid value in column {name}", [name], f"expected numbers, got Arrow type {column.type}",
                      "float_type")
    nulls = _nulls(column)
    values = np.asarray(column.to_numpy(zero_copy_only=False), dtype=np.float64)  # nulls -> NaN
    present = ~nulls if nulls is not None else True
    low, high, whole = rules.numeric_bounds(name)
    with np.errstate(invalid="ignore"):
        checks: list[tuple[np.ndarray, str, str]] = [
            (~np.isfinite(values) & present, "numbers must be finite (null for unknown)", "finite_number")]
        if low is not None:
            checks.append((values < low, f"Input should be greater than or equal to {low:g}", "greater_than_equal"))
        if high is not None:
            checks.append((values > high, f"Input should be less than or equal to {high:g}", "less_than_equal"))
        if whole:
            checks.append((np.isfinite(values) & (np.floor(values) != values), "Input should be a multiple of 1",
                           "multiple_of"))
    for mask, msg, kind in checks:
        row = _first(mask)
        if row >= 0:
            raise _refuse(f"1 invalid value(s): {name}", [row, name], msg, kind)
    return values


def _strings(table: pa.Table, name: str) -> pa.Array:
    column = _single_chunk(table, name)
    if pa.types.is_dictionary(column.type):
        column = column.dictionary_decode()
    if pa.types.is_large_string(column.type):
        column = column.cast(pa.string())
    if not (pa.types.is_string(column.type) or pa.types.is_null(column.type)):
        raise _refuse(f"invalid value in column {name}", [name], f"expected strings, got Arrow type {column.type}",
                      "string_type")
    return column


def _codes(table: pa.Table, name: str, rules: FieldRules, value_set: pa.Array | None = None) -> np.ndarray:
    """Category codes of a string column; ``value_set``: its accepted spellings as an Arrow array."""
    column = _strings(table, name)
    if pa.types.is_null(column.type):
        return np.full(len(column), -1, dtype=np.int32)
    spellings = rules.spellings[name]
    if value_set is None:
        value_set = pa.array(list(spellings), type=pa.string())
    position = pc.index_in(column, value_set=value_set)
    found = np.asarray(position.to_numpy(zero_copy_only=False), dtype=np.float64)  # not found -> NaN
    missing = np.isnan(found)
    nulls = _nulls(column)
    row = _first(missing & ~nulls if nulls is not None else missing)
    if row >= 0:
        allowed = ", ".join(repr(s) for s in spellings)
        raise _refuse(f"1 invalid value(s): {name}", [row, name], f"Input should be {allowed}", "literal_error")
    # Spelling position -> canonical category code; null (no position) -> -1.
    to_code = np.asarray([*spellings.values(), -1], dtype=np.int32)
    return to_code[np.where(missing, len(spellings), found).astype(np.intp)]


def _texts(table: pa.Table, name: str) -> list[str | None]:
    column = _strings(table, name)
    if not pa.types.is_null(column.type):
        lengths = np.asarray(pc.fill_null(pc.utf8_length(column), 1))
        row = _first((lengths < 1) | (lengths > MAX_ID_LENGTH))
        if row >= 0:
            raise _refuse(f"1 invalid value(s): {name}", [row, name],
                          f"String should have 1 to {MAX_ID_LENGTH} characters", "string_length")
    return column.to_pylist()


def _single_chunk(table: pa.Table, name: str) -> pa.Array:
    chunks = table[name].chunks
    return chunks[0] if len(chunks) == 1 else pa.concat_arrays(chunks)


class ArrowBatchParser:
    """Arrow IPC stream bodies to :class:`FeatureBatch` for one contract's rules.

    Good bodies take the fast path: the numeric columns checked as one matrix against per-column
    bounds (a handful of numpy calls, whatever the width); only a failing column is re-checked on
    its own to name the row and the rule. Arrow compute calls cost several µs each, so they are
    kept to one ``index_in`` per categorical column.
    """

    def __init__(self, rules: FieldRules, max_rows: int) -> None:
        self.rules, self.max_rows = rules, max_rows
        bounds = [rules.numeric_bounds(name) for name in rules.numeric_names]
        self._low = np.asarray([-np.inf if low is None else low for low, _, _ in bounds], dtype=np.float64)
        self._high = np.asarray([np.inf if high is None else high for _, high, _ in bounds], dtype=np.float64)
        self._whole = np.asarray([whole for _, _, whole in bounds], dtype=bool)
        self._value_sets = {name: pa.array(list(rules.spellings[name]), type=pa.string())
                            for name in rules.categorical_names}
        self._known = {*rules.numeric_names, *rules.categorical_names, REQUEST_ID_FIELD,
                       *([rules.id_column] if rules.id_column else [])}

    def __call__(self, body: bytes) -> FeatureBatch:
        rules = self.rules
        table = read_table(body, self.max_rows)
        unknown = [name for name in table.column_names if name not in self._known]
        missing = [name for name in (*rules.numeric_names, *rules.categorical_names) if name not in table.column_names]
        if unknown or missing:
            detail = ([{"loc": [name], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
                       for name in unknown]
                      + [{"loc": [name], "msg": "Field required", "type": "missing"} for name in missing])
            raise RequestError(400, f"{len(detail)} invalid value(s): {', '.join(unknown + missing)}", detail)
        numeric = self._numeric_matrix(table)
        codes = np.empty((table.num_rows, len(rules.categorical_names)), dtype=np.int32)
        for j, name in enumerate(rules.categorical_names):
            codes[:, j] = _codes(table, name, rules, self._value_sets[name])
        customer_ids = None
        if rules.id_column:
            customer_ids = _texts(table, rules.id_column) if rules.id_column in table.column_names \
                else [None] * table.num_rows
        request_ids = _texts(table, REQUEST_ID_FIELD) if REQUEST_ID_FIELD in table.column_names \
            else [None] * table.num_rows
        return FeatureBatch(numeric=numeric, codes=codes, customer_ids=customer_ids, request_ids=request_ids)

    def _numeric_matrix(self, table: pa.Table) -> np.ndarray:
        names = self.rules.numeric_names
        matrix = np.empty((table.num_rows, len(names)), dtype=np.float64)
        nulls = np.empty(len(names), dtype=np.int64)
        for i, name in enumerate(names):
            column = _single_chunk(table, name)
            if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
                    or pa.types.is_null(column.type)):
                raise _refuse(f"invalid value in column {name}", [name],
                              f"expected numbers, got Arrow type {column.type}", "float_type")
            matrix[:, i] = column.to_numpy(zero_copy_only=False)  # nulls -> NaN
            nulls[i] = column.null_count
        with np.errstate(invalid="ignore"):
            finite = np.isfinite(matrix)
            bad = (matrix < self._low) | (matrix > self._high) | np.isinf(matrix) \
                | (self._whole & finite & (np.floor(matrix) != matrix))
            # A NaN that is no null (Arrow tells them apart; JSON has no NaN) is refused too.
            bad_columns = bad.any(axis=0) | ((~finite).sum(axis=0) != nulls)
        for i in np.flatnonzero(bad_columns):
            _numeric(table, names[i], self.rules)  # raises, naming the row and the rule
        return matrix


def parse_arrow_batch(body: bytes, rules: FieldRules, max_rows: int) -> FeatureBatch:
    """An Arrow IPC stream to a :class:`FeatureBatch`, or a 400 naming the column and row."""
    return ArrowBatchParser(rules, max_rows)(body)
