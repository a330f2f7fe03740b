"""The feedback log: actual outcomes of served customers, and its join with predictions.

Format (docs/contracts.md): one Parquet file with ``request_id`` (str or null), ``customer_key``
(str or null: the service's salted hash of the customer id), ``outcome`` (0/1) and
``received_at`` (UTC). A label is joined to a prediction by request id, else by customer key;
when the same id was labelled twice, the latest label wins.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from pydantic import BaseModel

FEEDBACK_COLUMNS = ["request_id", "customer_key", "outcome", "received_at"]
# Accepted spellings of an outcome in a feedback CSV (case- and space-insensitive).
POSITIVE = {"1", "1.0", "true", "yes", "y", "churned", "churn"}
NEGATIVE = {"0", "0.0", "false", "no", "n", "stayed", "retained", "active"}
ID_COLUMNS = ("id", "request_id", "customer_id")


class FeedbackError(ValueError):
    """A feedback file that cannot be ingested; names the row and column at fault."""


class FeedbackIngest(BaseModel):
    file: str
    rows: int
    by_request_id: int
    by_customer_id: int
    positives: int
    log_path: str
    total_in_log: int


def empty_feedback() -> pd.DataFrame:
    return pd.DataFrame({
        "request_id": pd.Series(dtype=object),
        "customer_key": pd.Series(dtype=object),
        "outcome": pd.Series(dtype="int64"),
        "received_at": pd.Series(dtype="datetime64[ns, UTC]"),
    })


def read_feedback(path: Path) -> pd.DataFrame:
    """The whole feedback log (empty when none was written yet)."""
    if not path.is_file():
        return empty_feedback()
    frame = pd.read_parquet(path)
    missing = [c for c in FEEDBACK_COLUMNS if c not in frame.columns]
    if missing:
        raise FeedbackError(f"feedback log {path} lacks columns {missing}; expected {FEEDBACK_COLUMNS}")
    return frame[FEEDBACK_COLUMNS]


def feedback_lock_path(path: Path) -> Path:
    """The lock file every read-modify-write of the feedback log at ``path`` holds (ingestion,
    retention, erasure), so none of them writes back rows another has just removed or added."""
    return path.with_name(f".{path.name}.lock")


def write_feedback(path: Path, frame: pd.DataFrame) -> None:
    """Write the whole feedback log atomically (a dot-named temporary file, then a rename)."""
    frame = frame[FEEDBACK_COLUMNS].copy()
    frame["outcome"] = frame["outcome"].astype("int64")
    frame["received_at"] = pd.to_datetime(frame["received_at"], utc=True).astype("datetime64[ns, UTC]")
    for column in ("request_id", "customer_key"):
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    frame.to_parquet(partial, index=False)
    partial.replace(path)


def append_feedback(path: Path, records: pd.DataFrame) -> int:
    """Append ``records`` (FEEDBACK_COLUMNS) atomically; return the number of rows in the log."""
    from churnops.core.locking import exclusive_lock

    path.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(feedback_lock_path(path)):
        combined = pd.concat([read_feedback(path), records[FEEDBACK_COLUMNS]], ignore_index=True)
        write_feedback(path, combined)
    return len(combined)


def feedback_records(request_ids: Iterable[str | None], customer_keys: Iterable[str | None],
                     outcomes: Iterable[int], received_at: datetime | None = None) -> pd.DataFrame:
    frame = pd.DataFrame({"request_id": list(request_ids), "customer_key": list(customer_keys),
                          "outcome": [int(o) for o in outcomes]})
    frame["received_at"] = pd.Timestamp(received_at or datetime.now(UTC))
    return frame[FEEDBACK_COLUMNS]


def _parse_outcome(value: object) -> int | None:
    text = re.sub(r"\s+", " ", str(value)).strip().casefold()
    if text in POSITIVE:
        return 1
    if text in NEGATIVE:
        return 0
    return None


def parse_feedback_csv(path: Path, known_request_ids: set[str],
                       customer_keys: Callable[[Sequence[str]], list[str | None]] | None,
                       ) -> tuple[pd.DataFrame, int, int]:
    """Read a CSV of ``id, outcome`` into feedback records; nothing is kept if any row is bad.

    ``id`` may be a request id (matched against ``known_request_ids`` from the inference log)
    or a customer id (pseudonymised with ``customer_keys``). Explicit ``request_id`` or
    ``customer_id`` columns are accepted instead of ``id``. Returns the records and how many
    were matched by request id and by customer id.
    """
    if not path.is_file():
        raise FeedbackError(f"feedback file not found: {path}")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise FeedbackError(f"{path}: not a readable CSV ({error})") from error
    columns = {c.strip().casefold(): c for c in table.columns}
    id_column = next((columns[c] for c in ID_COLUMNS if c in columns), None)
    if id_column is None or "outcome" not in columns:
        raise FeedbackError(f"{path}: needs a header with columns 'id' and 'outcome' (found {list(table.columns)})")
    if table.empty:
        raise FeedbackError(f"{path}: no rows after the header")
    ids = table[id_column].str.strip()
    outcomes = table[columns["outcome"]].map(_parse_outcome)
    # Row numbers as in the file (the header is row 1), in file order.
    found = [(i, f"row {i + 2}: column '{id_column}' is empty") for i in ids.index[ids.eq("")]]
    found += [(i, f"row {i + 2}: column 'outcome' is {table.at[i, columns['outcome']]!r}, expected one of "
                  f"1/0, yes/no, true/false, churned/stayed") for i in outcomes.index[outcomes.isna()]]
    problems = [text for _, text in sorted(found, key=lambda item: item[0])]
    if problems:
        shown = "; ".join(problems[:5]) + (f"; and {len(problems) - 5} more" if len(problems) > 5 else "")
        raise FeedbackError(f"{path}: {len(problems)} bad row(s), nothing was ingested: {shown}")
    kind = id_column.strip().casefold()
    is_request = ids.isin(known_request_ids) if kind == "id" else pd.Series(kind == "request_id", index=ids.index)
    unmatched_customers = ~is_request
    if unmatched_customers.any() and customer_keys is None:
        example = ids[unmatched_customers].iloc[0]
        raise FeedbackError(
            f"{path}: {int(unmatched_customers.sum())} id(s) such as {example!r} are not request ids in the inference "
            "log, and customer ids cannot be pseudonymised here (no customer-key function available); "
            "nothing was ingested")
    keys: list[str | None] = [None] * len(ids)
    if unmatched_customers.any():
        hashed = iter(customer_keys(ids[unmatched_customers].tolist()))  # type: ignore[misc]
        keys = [next(hashed) if customer else None for customer in unmatched_customers]
    records = feedback_records(ids.where(is_request, None), keys, outcomes.astype(int))
    return records, int(is_request.sum()), int(unmatched_customers.sum())


def latest_labels(feedback: pd.DataFrame, column: str) -> pd.DataFrame:
    """The latest outcome per non-null ``column`` value."""
    labelled = feedback[feedback[column].notna()].sort_values("received_at", kind="stable")
    return labelled.drop_duplicates(column, keep="last")[[column, "outcome"]]


class OutcomeIndex:
    """The latest outcome per request id and per customer key, built once and probed chunk by
    chunk (a hash join: the feedback log is the build side, the window streams past it)."""

    def __init__(self, feedback: pd.DataFrame) -> None:
        self.by_request = latest_labels(feedback, "request_id").set_index("request_id")["outcome"]
        self.by_customer = latest_labels(feedback, "customer_key").set_index("customer_key")["outcome"]

    def join(self, predictions: pd.DataFrame) -> pd.DataFrame:
        """``predictions`` with ``outcome`` (NaN when unlabelled) and ``matched_by`` (request/customer/none)."""
        out = predictions.copy()
        outcome = out["request_id"].map(self.by_request)
        matched_by = pd.Series("none", index=out.index, dtype=object)
        matched_by[outcome.notna()] = "request"
        if "customer_key" in out.columns:
            from_customer = out["customer_key"].map(self.by_customer)
            fill = outcome.isna() & from_customer.notna()
            outcome = outcome.where(~fill, from_customer)
            matched_by[fill] = "customer"
        out["outcome"] = outcome.astype(float)
        out["matched_by"] = matched_by
        return out


def join_outcomes(predictions: pd.DataFrame, feedback: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with ``outcome`` (NaN when unlabelled) and ``matched_by`` (request/customer/none)."""
    return OutcomeIndex(feedback).join(predictions)
