"""Retention and erasure of the inference log and the feedback log (issue 10, point 6).

Logs are written by the service's own writer (InferenceLogWriter) and by the backfill writer
(write_partitioned) for six customers over several days, with a feedback log and a retraining
table built from them as the monitoring pipeline builds it. Fast: no service, no ZenML, except
the CLI tests (two subprocesses) and the one ZenML step test (slow).
"""

from __future__ import annotations

import argparse
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnops.core.errors import UserError
from churnops.core.locking import exclusive_lock
from churnops.core.settings import StatePaths, state_paths
from churnops.data.schema import load_schema
from churnops.data.synthetic import SyntheticSpec, generate_customers
from churnops.data.validation import validate_and_clean
from churnops.monitoring.feedback import (
    append_feedback,
    feedback_lock_path,
    feedback_records,
    join_outcomes,
    read_feedback,
)
from churnops.monitoring.inference_log import (
    LOG_COLUMNS,
    WindowSpec,
    list_partitions,
    read_log_file,
    read_window,
    write_partitioned,
)
from churnops.monitoring.retention import LOG_LOCK_NAME, enforce_retention, forget_customers
from churnops.monitoring.retraining import RetrainingSettings, production_training_rows, write_training_table
from churnops.serving.contract import RequestContract
from churnops.serving.inference_log import InferenceLogWriter
from churnops.serving.pseudonym import customer_keys_function
from tests.support import run_cli

SCHEMA = load_schema("synthetic")
CONTRACT = RequestContract(SCHEMA, max_predict_customers=50, max_batch_rows=1000)
CUSTOMERS = [f"CUST-{n}" for n in range(7001, 7007)]
FORGOTTEN = "CUST-7003"
SALT = "retention-test-salt"
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
EVERYTHING = WindowSpec(last=10**6)


def requests(ids: list[str], seed: int) -> bytes:
    """A /predict_batch body for customers ``ids`` (synthetic features)."""
    frame = generate_customers(SyntheticSpec(rows=len(ids), seed=seed)).drop(columns=[SCHEMA.target.column])
    frame[SCHEMA.id_column] = ids
    records = json.loads(frame.to_json(orient="records"))
    for record in records:
        for feature in SCHEMA.numeric:
            if feature.kind == "int" and record[feature.name] is not None:
                record[feature.name] = int(record[feature.name])
    return json.dumps(records).encode()


def at(moment: datetime) -> int:
    return int(pd.Timestamp(moment).value)


def write_service_log(log_dir: Path, now: datetime) -> None:
    """What the service writes over four days: per day a /predict list of all six customers
    (own ids) and a /predict_batch with derived ids where the forgotten customer appears twice,
    in one file, then a request of the forgotten customer alone (a file with nobody else in it);
    and one file of the other five customers."""

    def service(name: str) -> InferenceLogWriter:
        # Closed after each group: close() writes everything pending, one file per day.
        return InferenceLogWriter(log_dir, SCHEMA, "churn_classifier", "3", SALT.encode(), flush_rows=10**6,
                                  flush_seconds=3600, writer_id=name)

    for day in range(4):
        moment = at(now - timedelta(days=day))
        writer = service(f"svc{day}a")
        everyone = CONTRACT.parse_batch(requests(CUSTOMERS, seed=day))
        writer.append(everyone, [f"d{day}-c{i}" for i in range(6)], np.linspace(0.1, 0.9, 6),
                      np.array([0, 0, 1, 0, 1, 1]), timestamp_ns=moment)
        mixed = CONTRACT.parse_batch(requests([FORGOTTEN, "CUST-7001", FORGOTTEN], seed=10 + day))
        writer.append(mixed, None, np.array([0.7, 0.2, 0.6]), np.array([1, 0, 1]), timestamp_ns=moment + 1,
                      base_id=f"batch{day}")
        writer.close()
        writer = service(f"svc{day}b")
        alone = CONTRACT.parse_batch(requests([FORGOTTEN], seed=20 + day))
        writer.append(alone, [f"alone{day}"], np.array([0.8]), np.array([1]), timestamp_ns=moment + 2)
        writer.close()
    # A file without the forgotten customer: an erasure must leave it as it is.
    writer = service("svc-others")
    others = [c for c in CUSTOMERS if c != FORGOTTEN]
    writer.append(CONTRACT.parse_batch(requests(others, seed=30)), [f"o{i}" for i in range(5)],
                  np.full(5, 0.5), np.zeros(5, dtype=np.int64), timestamp_ns=at(now - timedelta(days=1)) + 3)
    writer.close()


def write_backfill(log_dir: Path, moments: list[datetime], keys: list[str | None], prefix: str) -> None:
    """Backfilled predictions (write_partitioned), one per (moment, key)."""
    rows = len(moments)
    features = generate_customers(SyntheticSpec(rows=rows, seed=99))[SCHEMA.feature_names]
    frame = pd.DataFrame({"request_id": [f"{prefix}{i}" for i in range(rows)], "timestamp": moments,
                          "model_name": "churn_classifier", "model_version": "2", "customer_key": keys,
                          "probability": np.linspace(0.05, 0.95, rows), "label": np.arange(rows) % 2})
    write_partitioned(pd.concat([frame, features], axis=1), log_dir, "backfill")


def write_feedback(paths: StatePaths, keys: dict[str, str], now: datetime) -> None:
    by_key = [keys[c] for c in CUSTOMERS]
    append_feedback(paths.feedback_log, feedback_records([None] * 6, by_key, [0, 1, 1, 0, 0, 1],
                                                         received_at=now - timedelta(days=1)))
    # By request id (no customer key): two predictions of the forgotten customer, one of another.
    append_feedback(paths.feedback_log, feedback_records(["d0-c2", "batch1-0", "d0-c0"], [None] * 3, [1, 1, 0],
                                                         received_at=now - timedelta(days=3)))
    append_feedback(paths.feedback_log, feedback_records([None, None], [keys[FORGOTTEN], keys["CUST-7005"]],
                                                         [1, 0], received_at=now - timedelta(days=3, seconds=1)))
    append_feedback(paths.feedback_log, feedback_records(["d1-c4"], [None], [1], received_at=now - timedelta(days=20)))


def write_retraining_table(paths: StatePaths, now: datetime) -> Path:
    """A retraining table as monitoring builds it: labelled production rows plus training rows
    copied from the training data, one of them the forgotten customer's (by raw id)."""
    frame, _ = read_window(paths.inference_log_dir, EVERYTHING, now=now + timedelta(days=1))
    joined = join_outcomes(frame, read_feedback(paths.feedback_log))
    production = production_training_rows(joined[joined["outcome"].notna()], SCHEMA, max_rows=10_000)
    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=600, seed=5)), SCHEMA)
    reference = cleaned.head(5).copy()
    reference[SCHEMA.id_column] = [FORGOTTEN, "TRAIN-1", "TRAIN-2", "TRAIN-3", "TRAIN-4"]
    table = write_training_table(reference, production, SCHEMA, RetrainingSettings(reference_rows=None),
                                 paths.retraining_dir / "20260310T120000Z")
    return Path(table.data_path)


def populate(paths: StatePaths, now: datetime) -> dict[str, str]:
    """Logs of four service days and two backfilled days before them, feedback and a retraining
    table; returns each customer's key."""
    (paths.home / "secrets").mkdir(parents=True, exist_ok=True)
    (paths.home / "secrets" / "customer_salt").write_text(SALT)
    keys = dict(zip(CUSTOMERS, customer_keys_function(paths)(CUSTOMERS), strict=True))
    write_service_log(paths.inference_log_dir, now)
    old = [now - timedelta(days=3, hours=12, minutes=30)] * 3 + [now - timedelta(days=6, hours=2)] * 3
    write_backfill(paths.inference_log_dir, old, [keys[FORGOTTEN], keys["CUST-7002"], None] * 2, "bf")
    write_feedback(paths, keys, now)
    write_retraining_table(paths, now)
    return keys


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[StatePaths, dict[str, str]]:
    for name in ("CHURNOPS_CUSTOMER_SALT", "CHURNOPS_INFERENCE_LOG_DIR", "CHURNOPS_SERVING_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    paths = state_paths(tmp_path / "home")
    return paths, populate(paths, NOW)


def comparable(frame: pd.DataFrame) -> pd.DataFrame:
    """Values as plain objects (categories depend on what a file happens to hold), in id order."""
    out = frame.copy()
    for column in out.columns:
        if isinstance(out[column].dtype, pd.CategoricalDtype | pd.StringDtype):
            out[column] = out[column].astype(object).where(out[column].notna(), None)
    return out.sort_values("request_id", kind="stable").reset_index(drop=True)


def log_rows(log_dir: Path) -> pd.DataFrame:
    """Every record of every log file, as stored (row ids put together)."""
    frames = [comparable(read_log_file(f).to_pandas()) for _day, files in list_partitions(log_dir) for f in files]
    return comparable(pd.concat(frames, ignore_index=True))


def file_bytes(folder: Path) -> dict[Path, bytes]:
    """Every file's content (the maintenance lock file aside)."""
    return {f: f.read_bytes() for f in folder.rglob("*") if f.is_file() and f.name != LOG_LOCK_NAME}


def test_forgetting_a_customer_removes_exactly_their_records(state):
    paths, keys = state
    key, log_dir, feedback_path = keys[FORGOTTEN], paths.inference_log_dir, paths.feedback_log
    [table_path] = paths.retraining_dir.glob("*/retraining_data.parquet")
    before_log, before_feedback = log_rows(log_dir), read_feedback(feedback_path)
    before_window, _ = read_window(log_dir, EVERYTHING, now=NOW + timedelta(days=1))
    before_table = pd.read_parquet(table_path)
    before_files = file_bytes(log_dir)
    holders = {f for f in before_files if key in read_log_file(f, ["customer_key"]).column(0).to_pylist()}
    theirs = before_log["customer_key"] == key
    # 4 days x (1 own-id record, 2 in a batch, 1 alone) + 2 backfilled.
    assert int(theirs.sum()) == 18 and len(before_log) == 4 * 10 + 5 + 6 and len(holders) == 10
    their_ids = set(before_log.loc[theirs, "request_id"])
    assert {"d0-c2", "batch1-0", "batch1-2", "alone3", "bf0"} <= their_ids

    summary = forget_customers([FORGOTTEN], customer_keys_function(paths), log_dir, feedback_path,
                               paths.retraining_dir)

    after_log = log_rows(log_dir)
    assert int((after_log["customer_key"] == key).sum()) == 0
    assert not set(after_log["request_id"]) & their_ids
    pd.testing.assert_frame_equal(after_log, comparable(before_log[~theirs]))
    # Feedback: by their key (2 records) and by their request ids (2 records, no key); nothing else.
    after_feedback = read_feedback(feedback_path)
    dropped = before_feedback["customer_key"].eq(key) | before_feedback["request_id"].isin(their_ids)
    assert int(dropped.sum()) == 4
    pd.testing.assert_frame_equal(after_feedback.reset_index(drop=True),
                                  before_feedback[~dropped].reset_index(drop=True))
    # Retraining table: their production row (named by pseudonym) and their copied training row.
    after_table = pd.read_parquet(table_path)
    ids = before_table[SCHEMA.id_column]
    gone = ids.isin([FORGOTTEN, f"prod-cust-{key}"])
    assert int(gone.sum()) == 2
    pd.testing.assert_frame_equal(after_table, before_table[~gone].reset_index(drop=True))

    log = summary.inference_log
    assert (summary.customers, summary.pseudonyms) == (1, 1)
    assert (log.records_removed, log.late_records_removed, log.files_removed) == (18, 0, 4)  # the "alone" files
    assert summary.feedback_records_removed == 4 and summary.retraining_records_removed == 2
    assert not summary.incomplete and log.files_examined == len(before_files)
    # Files without their records are untouched; the rest are valid files the monitoring reads.
    after_files = file_bytes(log_dir)
    unchanged = {f for f, data in before_files.items() if after_files.get(f) == data}
    assert unchanged == set(before_files) - holders
    assert len(holders) == log.files_rewritten + log.files_removed and set(after_files) <= set(before_files)
    assert not [f for f in after_files if f.name.startswith(".")]
    after_window, read_summary = read_window(log_dir, EVERYTHING, now=NOW + timedelta(days=1))
    assert (read_summary.files_skipped, read_summary.rows_malformed) == (0, 0)
    expected = before_window[before_window["customer_key"].astype(object) != key]
    pd.testing.assert_frame_equal(comparable(after_window), comparable(expected))

    # A second run finds nothing left and changes nothing.
    again = forget_customers([FORGOTTEN], customer_keys_function(paths), log_dir, feedback_path, paths.retraining_dir)
    assert again.records_removed == 0 and file_bytes(log_dir) == after_files


def test_records_a_running_service_writes_during_the_erasure_are_caught(state):
    paths, keys = state
    log_dir = paths.inference_log_dir
    partition = log_dir / f"date={NOW:%Y-%m-%d}"
    unfinished = partition / ".svc-000099.arrow.tmp"  # a file the service is still writing
    unfinished.write_bytes(b"half a file")

    def flush_during_erasure() -> None:
        writer = InferenceLogWriter(log_dir, SCHEMA, "churn_classifier", "3", SALT.encode(), writer_id="late")
        batch = CONTRACT.parse_batch(requests([FORGOTTEN, "CUST-7006"], seed=42))
        writer.append(batch, ["late-0", "late-1"], np.array([0.3, 0.4]), np.array([0, 0]), timestamp_ns=at(NOW))
        writer.close()

    summary = forget_customers([FORGOTTEN], customer_keys_function(paths), log_dir, paths.feedback_log,
                               paths.retraining_dir, settle=flush_during_erasure)
    assert summary.inference_log.late_records_removed == 1
    rows = log_rows(log_dir)
    assert "late-1" in set(rows["request_id"]) and "late-0" not in set(rows["request_id"])
    assert not (rows["customer_key"] == keys[FORGOTTEN]).any()
    # The unfinished file is neither read nor touched, and the erasure says it is incomplete.
    assert unfinished.read_bytes() == b"half a file"
    assert summary.inference_log.unfinished_files_skipped == 1 and summary.incomplete
    assert summary.audit_entry("ops")["complete"] is False


def test_a_running_writers_journal_does_not_make_the_erasure_incomplete(state):
    from churnops.serving.log_writers import WriterLock

    paths, _ = state
    log_dir = paths.inference_log_dir
    partition = log_dir / f"date={NOW:%Y-%m-%d}"
    live = partition / ".svc-live-000001.arrow.open"  # a durable writer's journal, published within flush_seconds
    live.write_bytes(b"journal")
    lock = WriterLock(log_dir, "svc-live")
    try:
        summary = forget_customers([FORGOTTEN], customer_keys_function(paths), log_dir, paths.feedback_log,
                                   paths.retraining_dir)
    finally:
        lock.release()
    assert summary.inference_log.unfinished_files_skipped == 0 and not summary.incomplete
    assert live.read_bytes() == b"journal"
    # The same journal once its writer is gone (killed) is a leftover the erasure cannot read.
    again = forget_customers([FORGOTTEN], customer_keys_function(paths), log_dir, paths.feedback_log,
                             paths.retraining_dir)
    assert again.inference_log.unfinished_files_skipped == 1 and again.incomplete


def test_retention_removes_exactly_the_expired_partitions_and_feedback(state):
    paths, _keys = state
    log_dir, feedback_path = paths.inference_log_dir, paths.feedback_log
    (log_dir / "date=not-a-day").mkdir()
    (log_dir / "README.txt").write_text("not a partition")
    before_log, before_feedback = log_rows(log_dir), read_feedback(feedback_path)
    days = [day.isoformat() for day, _files in list_partitions(log_dir)]
    assert days == ["2026-03-04", "2026-03-06", "2026-03-07", "2026-03-08", "2026-03-09", "2026-03-10"]
    untouched = file_bytes(log_dir / "date=2026-03-07")

    kept_forever = enforce_retention(log_dir, feedback_path, None, now=NOW)
    assert not kept_forever.enabled and kept_forever.partitions_kept == 6
    assert log_rows(log_dir).equals(before_log) and read_feedback(feedback_path).equals(before_feedback)

    # Cutoff 2026-03-07 12:00: the 7th is partly younger (kept whole); the 6th and older go.
    summary = enforce_retention(log_dir, feedback_path, 3, now=NOW)
    assert summary.cutoff == datetime(2026, 3, 7, 12, 0, tzinfo=UTC)
    assert [day.isoformat() for day, _files in list_partitions(log_dir)] == days[2:]
    assert (summary.partitions_removed, summary.partitions_kept) == (2, 4)
    assert (str(summary.oldest_removed), str(summary.newest_removed), str(summary.oldest_kept)) == (
        "2026-03-04", "2026-03-06", "2026-03-07")
    assert summary.log_records_removed == 6 and summary.log_files_removed == 2 and not summary.problems
    old = pd.to_datetime(before_log["timestamp"], utc=True) < pd.Timestamp("2026-03-07", tz="UTC")
    pd.testing.assert_frame_equal(log_rows(log_dir), before_log[~old].reset_index(drop=True))
    assert file_bytes(log_dir / "date=2026-03-07") == untouched
    assert (log_dir / "date=not-a-day").is_dir() and (log_dir / "README.txt").is_file()
    # Feedback received before the cutoff goes (one second before it, and 20 days old); the rest stays.
    expired = before_feedback["received_at"] < pd.Timestamp(summary.cutoff)
    assert int(expired.sum()) == 3 == summary.feedback_records_removed
    pd.testing.assert_frame_equal(read_feedback(feedback_path).reset_index(drop=True),
                                  before_feedback[~expired].reset_index(drop=True))
    _window, read_summary = read_window(log_dir, EVERYTHING, now=NOW + timedelta(days=1))
    assert read_summary.rows_in_window == len(before_log) - 6 and read_summary.files_skipped == 0

    assert enforce_retention(log_dir, feedback_path, 3, now=NOW).partitions_removed == 0
    with pytest.raises(ValueError, match="at least 1"):
        enforce_retention(log_dir, feedback_path, 0, now=NOW)


def test_feedback_ingestion_waits_for_a_running_erasure(tmp_path):
    """Ingestion rewrites the whole feedback log: under the same lock as erasure and retention,
    it can neither write back records they removed nor lose its own."""
    path = tmp_path / "feedback" / "feedback.parquet"
    path.parent.mkdir()
    appended = threading.Event()

    def ingest() -> None:
        append_feedback(path, feedback_records(["r1"], [None], [1]))
        appended.set()

    with exclusive_lock(feedback_lock_path(path)):  # as forget_customers holds it
        thread = threading.Thread(target=ingest)
        thread.start()
        assert not appended.wait(0.3)
    thread.join(10)
    assert appended.is_set() and read_feedback(path)["request_id"].tolist() == ["r1"]


def test_erasure_refuses_without_the_salt_and_config_mistakes_are_one_line(tmp_path, monkeypatch):
    from churnops.commands.monitoring import resolve_config
    from churnops.commands.retention import forget, prune
    from churnops.core.settings import CONFIGS_DIR
    from churnops.platform.run_config import load_config

    monkeypatch.delenv("CHURNOPS_CUSTOMER_SALT", raising=False)
    paths = state_paths(tmp_path / "home")
    with pytest.raises(UserError, match=r"salt is not available.*Nothing was erased"):
        forget(argparse.Namespace(forget_customer=["CUST-1"], config=None), paths)
    assert not (paths.home / "secrets" / "customer_salt").exists()  # no new salt that matches nothing
    with pytest.raises(UserError, match="every customer id must be non-empty"):
        forget(argparse.Namespace(forget_customer=[" "], config=None), paths)
    with pytest.raises(UserError, match="no retention period configured"):
        prune(argparse.Namespace(retention_days=None, config=None), paths)
    config = load_config(CONFIGS_DIR / "monitoring.yaml")
    resolved, _ = resolve_config(config, paths)
    assert resolved["parameters"]["retention_days"] is None  # the serving config's default: keep
    config["parameters"]["retention_days"] = 0
    with pytest.raises(UserError, match=r"^monitoring config: parameters\.retention_days: .*greater than or equal"):
        resolve_config(config, paths)
    config["parameters"]["retention_days"] = 45
    assert resolve_config(config, paths)[0]["parameters"]["retention_days"] == 45


def test_cli_forgets_a_customer_with_an_audit_entry_and_prunes(tmp_path, monkeypatch):
    for name in ("CHURNOPS_CUSTOMER_SALT", "CHURNOPS_INFERENCE_LOG_DIR", "CHURNOPS_SERVING_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    paths = state_paths(tmp_path / "home")
    now = datetime.now(UTC)
    keys = populate(paths, now)
    raw, key = FORGOTTEN.encode(), keys[FORGOTTEN].encode()
    assert any(raw in data for data in file_bytes(paths.home).values())  # the copied training row

    result = run_cli(paths, "--forget-customer", FORGOTTEN)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Forgot 1 customer id(s): 24 records removed." in result.stdout  # 18 log + 4 feedback + 2 retraining
    assert FORGOTTEN not in result.stdout
    leaks = [f for f, data in file_bytes(paths.home).items() if raw in data]
    assert not leaks, leaks
    [entry] = [json.loads(line) for line in paths.erasure_audit_log.read_text().splitlines()]
    assert raw not in paths.erasure_audit_log.read_bytes() and key not in paths.erasure_audit_log.read_bytes()
    assert (entry["event"], entry["customers"], entry["pseudonyms"], entry["complete"]) == (
        "forget_customer", 1, 1, True)
    assert entry["inference_log"]["records_removed"] == 18 and entry["feedback_log"]["records_removed"] == 4
    assert entry["retraining_tables"] == {"records_removed": 2, "files_rewritten": 1, "unmatchable_tables": 0}
    frame, summary = read_window(paths.inference_log_dir, EVERYTHING)
    assert len(frame) == 4 * 10 + 5 + 6 - 18 and summary.files_skipped == 0

    # The cutoff is 3 days ago at this time: the day of the 6-day-old backfill goes, the cutoff's own day
    # stays (the 3.5-day-old backfill may fall on either).
    result = run_cli(paths, "--prune-logs", "--retention-days", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Retention 3 days" in result.stdout and "Note: retraining takes" in result.stdout
    days = [day for day, _files in list_partitions(paths.inference_log_dir)]
    assert (now - timedelta(days=6, hours=2)).date() not in days and (now - timedelta(days=3)).date() in days
    assert all(day >= (now - timedelta(days=3)).date() for day in days)

    result = run_cli(paths, "--prune-logs", "--retention-days", "0")
    assert result.returncode == 2 and "--retention-days: must be at least 1: 0" in result.stderr
    assert set(LOG_COLUMNS) <= set(frame.columns)


@pytest.mark.slow
def test_the_monitoring_step_prunes_and_shows_its_summary_in_zenml(session_paths, tmp_path):
    from zenml import pipeline
    from zenml.client import Client

    from steps.monitoring import enforce_retention as enforce_step

    @pipeline(name="retention_step_test", enable_cache=False)
    def retention_only(log_dir: str, feedback_path: str, retention_days: int | None = None) -> None:
        enforce_step(log_dir, feedback_path, retention_days)

    log_dir, feedback = tmp_path / "log", tmp_path / "feedback.parquet"
    now = datetime.now(UTC)
    write_backfill(log_dir, [now - timedelta(days=400), now - timedelta(days=1)], ["k1", "k2"], "r")
    append_feedback(feedback, feedback_records(["r0", "r1"], [None, None], [1, 0], received_at=now))
    run = retention_only(log_dir=str(log_dir), feedback_path=str(feedback), retention_days=90)
    run = Client().get_pipeline_run(run.id)
    artifact = run.steps["enforce_retention"].outputs["retention_summary"][0]
    summary = artifact.load()
    assert (summary.partitions_removed, summary.partitions_kept, summary.log_records_removed) == (1, 1, 1)
    assert len(list_partitions(log_dir)) == 1 and len(read_feedback(feedback)) == 2
    assert artifact.run_metadata["partitions_removed"] == 1
    assert run.run_metadata["retention_partitions_removed"] == 1
    [visualization] = artifact.visualizations
    assert "Retention: 90 days" in Path(visualization.uri).read_text()
