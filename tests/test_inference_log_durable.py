"""The inference log's durable mode (group commit) and the start-up recovery of unfinished files.
The service-level kill -9 test is tests/test_inference_log_crash.py."""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churnops.monitoring import retention
from churnops.monitoring.inference_log import list_partitions, read_log_file
from churnops.serving import log_recovery
from churnops.serving.config import ServingConfig
from churnops.serving.inference_log import InferenceLogUnavailable, InferenceLogWriter
from churnops.serving.log_format import write_log_file
from churnops.serving.log_journal import Journal, LogLayout, LogRows, read_unfinished
from churnops.serving.log_recovery import recover_unfinished_files
from churnops.serving.log_writers import MAINTENANCE_LOCK_NAME, WriterLock
from tests.test_serving_unit import CONTRACT, SCHEMA, read_log, records

ONE = CONTRACT.parse_batch(json.dumps(records(1, seed=3)).encode())


def durable_writer(directory: Path, **options) -> InferenceLogWriter:
    return InferenceLogWriter(directory, SCHEMA, "churn_classifier", "2", b"salt", mode="durable",
                              **{"flush_rows": 10**6, "flush_seconds": 3600, **options})


def open_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("date=*/.*.open"))


def ids_on_disk(directory: Path) -> set[str]:
    """Every record id in the log's files, finished or not (what survives a kill -9)."""
    ids: set[str] = set()
    for path in directory.glob("date=*/*"):
        table = read_unfinished(path) if path.name.startswith(".") else read_log_file(path)
        if table is not None:
            ids |= set(read_ids(table))
    return ids


def read_ids(table: pa.Table) -> list[str]:
    from churnops.serving.log_format import join_row_ids

    return [str(v) for v in join_row_ids(table).column("request_id").to_pylist()]


def test_durable_answers_wait_for_the_disk_and_concurrent_requests_share_one_fsync(tmp_path):
    directory = tmp_path / "log"
    writer = durable_writer(directory)
    on_disk_when_answered: list[bool] = []

    async def request(i: int) -> None:
        group = writer.append(ONE, [f"r{i}"], np.array([0.3]), np.array([0]))
        await writer.committed(group)
        on_disk_when_answered.append(f"r{i}" in ids_on_disk(directory) if i % 50 == 0 else True)

    async def clients() -> None:
        # The loop keeps serving while commits are in flight: a timer fires between them.
        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        tick = asyncio.ensure_future(ticker())
        for wave in range(5):
            await asyncio.gather(*(request(100 * wave + i) for i in range(100)))
        tick.cancel()
        assert ticks > 10

    asyncio.run(clients())
    assert all(on_disk_when_answered) and len(on_disk_when_answered) == 500
    # Group commit: far fewer fsyncs than requests; one open file, not one per group.
    assert 5 <= writer.stats.commits < 100, writer.stats.commits
    assert len(open_files(directory)) == 1 and not list(directory.glob("date=*/*.arrow"))
    assert writer.flush(timeout=20)
    assert not open_files(directory) and len(list(directory.glob("date=*/*.arrow"))) == 1
    writer.close()
    frame = read_log(directory)
    assert sorted(frame["request_id"]) == sorted(f"r{i}" for i in range(500))
    assert not list(directory.glob(".writer-*")), "a closed writer leaves no lock file"


def test_durable_files_rotate_and_read_like_buffered_ones(tmp_path):
    directory = tmp_path / "log"
    writer = durable_writer(directory, flush_rows=7)
    batch = CONTRACT.parse_batch(json.dumps(records(3, seed=8)).encode())

    async def run() -> None:
        for n in range(6):
            await writer.committed(writer.append(batch, None, np.full(3, 0.9), np.ones(3, dtype=np.int64),
                                                 base_id=f"b{n}"))

    asyncio.run(run())
    writer.close()
    files = sorted(directory.glob("date=*/*.arrow"))
    assert len(files) >= 2, "rotated every flush_rows rows"
    for path in files:
        with pa.OSFile(str(path)) as source:
            assert pa.ipc.open_file(source).num_record_batches == 1  # compacted for readers
    frame = read_log(directory)
    assert frame["request_id"].tolist() == [f"b{n}-{i}" for n in range(6) for i in range(3)]
    assert (frame["label"] == 1).all() and frame["customer_key"].notna().all()


def test_a_failed_durable_write_fails_its_requests_and_keeps_their_rows(tmp_path):
    directory = tmp_path / "log"
    writer = durable_writer(directory)
    today = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    blocker = directory / f"date={today}"
    blocker.write_text("a file where the day's folder should be")  # every write now fails

    async def answer(request_id: str) -> None:
        await writer.committed(writer.append(ONE, [request_id], np.array([0.5]), np.array([1])))

    with pytest.raises(InferenceLogUnavailable, match="could not be written"):
        asyncio.run(answer("refused"))
    assert writer.stats.write_errors >= 1
    blocker.unlink()
    asyncio.run(answer("later"))
    writer.close()
    # The refused request's record was kept and written on the retry: logged, never answered.
    assert sorted(read_log(directory)["request_id"]) == ["later", "refused"]


@pytest.fixture(scope="module")
def model_folder(tmp_path_factory) -> Path:
    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean
    from churnops.serving.packaging import ModelCard, write_model_files
    from tests.test_serving_unit import fit

    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=1000, seed=5)), SCHEMA)
    folder = tmp_path_factory.mktemp("model")
    card = ModelCard(model_name="churn_classifier", model_version="3", stage="production", threshold=0.4,
                     metrics={"f1": 0.6}, dataset="synthetic")
    write_model_files(folder, fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=500), SCHEMA, card)
    return folder


def serving_runtime(model_folder: Path, tmp_path: Path, **log_options):
    from churnops.core.settings import StatePaths
    from churnops.serving.runtime import ServingRuntime

    config = ServingConfig.model_validate({"inference_log": {"directory": str(tmp_path / "log"), **log_options}})
    return ServingRuntime(model_folder, "churn_classifier:test", config, StatePaths(tmp_path / "home"))


def test_runtime_answers_503_when_the_durable_log_cannot_write(model_folder, tmp_path):
    from churnops.serving.contract import RequestError

    blocker = tmp_path / "log" / f"date={pd.Timestamp.now(tz='UTC').strftime('%Y-%m-%d')}"
    blocker.parent.mkdir()
    blocker.write_text("a file where the day's folder should be")
    runtime = serving_runtime(model_folder, tmp_path, mode="durable", flush_seconds=3600)
    body = json.dumps(records(1)[0]).encode()
    refused = runtime.predict(body, "refused-1")
    assert refused.log_group is not None
    with pytest.raises(RequestError) as error:
        asyncio.run(runtime.logged(refused.log_group))
    assert error.value.status == 503 and "not recorded" in error.value.message
    blocker.unlink()
    answered = runtime.predict(body, "ok-1")
    asyncio.run(runtime.logged(answered.log_group))  # type: ignore[arg-type]
    runtime.close()
    assert sorted(read_log(tmp_path / "log")["request_id"]) == ["ok-1", "refused-1"]


def test_buffered_runtime_answers_carry_no_commit_to_wait_for(model_folder, tmp_path):
    runtime = serving_runtime(model_folder, tmp_path)
    assert runtime.predict(json.dumps(records(1)[0]).encode(), "b-1").log_group is None
    runtime.close()


def test_a_bad_log_mode_is_refused_with_its_name(tmp_path):
    with pytest.raises(ValueError, match=r"buffered, durable.*'fast'"):
        InferenceLogWriter(tmp_path, SCHEMA, "m", "1", None, mode="fast")
    with pytest.raises(ValueError, match="mode"):
        ServingConfig.model_validate({"inference_log": {"mode": "fast"}})


# ------------------------------------------------------------------------------ recovery


def log_table(ids: list[str]) -> pa.Table:
    return pa.table({"request_id": ids, "timestamp": pa.array([time.time_ns()] * len(ids), pa.timestamp("ns", "UTC")),
                     "probability": [0.5] * len(ids)})


def dead_writer(directory: Path, writer: str) -> None:
    """The lock file a killed writer leaves: present, held by nobody."""
    (directory / f".writer-{writer}.lock").touch()


def cut(path: Path, drop_bytes: int) -> None:
    """Drop the file's last bytes, as a kill in the middle of a write leaves it."""
    path.write_bytes(path.read_bytes()[:-drop_bytes])


LAYOUT = LogLayout("churn_classifier", "1", SCHEMA.numeric_names,
                   [(f.name, list(f.categories)) for f in SCHEMA.categorical])


def journal_rows(ids: list[str]) -> LogRows:
    n = len(ids)
    return LogRows(np.full((len(SCHEMA.numeric_names), n), 1.5), np.zeros((len(SCHEMA.categorical), n), np.int32),
                   np.full(n, 0.5), np.ones(n, np.int64), np.full(n, time.time_ns(), np.int64),
                   np.arange(n, dtype=np.int32), np.full(n, -1, np.int32), ids)


def journal_file(final: Path, groups: list[list[str]]) -> Path:
    """An open journal as a durable writer leaves it when killed: one record per group."""
    journal = Journal(final, LAYOUT)
    for ids in groups:
        journal.append(journal_rows(ids), [f"key-{i}" for i in ids])
    journal.sync()
    journal.close()
    return journal.path


def test_recovery_publishes_what_dead_writers_committed_and_leaves_live_writers_alone(tmp_path):
    log = tmp_path / "log"
    day = log / "date=2026-12-03"
    day.mkdir(parents=True)
    dead_writer(log, "dead-1")
    # Killed mid-batch in durable mode: two whole batches, a third cut off.
    journal_file(day / "dead-1-000003.arrow", [["a", "b"], ["c"], ["torn"]])
    cut(day / ".dead-1-000003.arrow.open", 20)
    # Killed while writing a buffered file (torn: nothing whole), and after writing one (not renamed).
    write_log_file(log_table(["x"]), day / "dead-1-000001.arrow")
    (day / "dead-1-000001.arrow").rename(day / ".dead-1-000002.arrow.tmp")
    write_log_file(log_table(["lost"]), day / "scratch.arrow")
    (day / ".dead-1-000004.arrow.tmp").write_bytes((day / "scratch.arrow").read_bytes()[:300])
    (day / "scratch.arrow").unlink()
    # Killed between publishing a rotated file and removing its stream: the file is the record.
    write_log_file(log_table(["p", "q"]), day / "dead-1-000000.arrow")
    journal_file(day / "dead-1-000000.arrow", [["p", "q"]])
    # A live writer's open file is not touched, even with a final file name free.
    live = WriterLock(log, "live-7")
    journal_file(day / "live-7-000001.arrow", [["in-progress"]])

    summary = recover_unfinished_files(log, "me")

    assert summary.dead_writers == 1
    assert summary.files_published == 2 and summary.rows_recovered == 4  # a, b, c; x
    assert sorted(p.name for p in day.iterdir()) == [
        ".live-7-000001.arrow.open", "dead-1-000000.arrow", "dead-1-000002.arrow", "dead-1-000003.arrow"]
    assert summary.files_left == [".live-7-000001.arrow.open"]
    recovered = read_log_file(day / "dead-1-000003.arrow")
    assert sorted(read_ids(recovered)) == ["a", "b", "c"]
    assert recovered.column("customer_key").to_pylist() == ["key-a", "key-b", "key-c"]
    assert recovered.column("model_version").to_pylist() == ["1"] * 3  # the journal's, not the reader's
    assert recovered.column("tenure_months").to_pylist() == [1.5] * 3
    assert read_ids(read_log_file(day / "dead-1-000002.arrow")) == ["x"]
    assert read_ids(read_log_file(day / "dead-1-000000.arrow")) == ["p", "q"]
    assert {f.name for _d, files in list_partitions(log) for f in files} == {
        "dead-1-000000.arrow", "dead-1-000002.arrow", "dead-1-000003.arrow"}
    assert not (log / ".writer-dead-1.lock").exists() and (log / ".writer-live-7.lock").exists()
    live.release()
    assert not (log / ".writer-live-7.lock").exists()


def test_recovery_leaves_a_rewrite_alone_while_maintenance_holds_the_log(tmp_path):
    assert MAINTENANCE_LOCK_NAME == retention.LOG_LOCK_NAME
    log = tmp_path / "log"
    day = log / "date=2026-12-03"
    day.mkdir(parents=True)
    dead_writer(log, "w")
    write_log_file(log_table(["kept"]), day / "w-000001.arrow")
    write_log_file(log_table(["rewritten"]), day / "scratch.arrow")
    (day / "scratch.arrow").rename(day / ".w-000001.arrow.tmp")  # --forget-customer mid-rewrite
    held = os.open(log / MAINTENANCE_LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(held, fcntl.LOCK_EX)
    try:
        summary = recover_unfinished_files(log, "me")
    finally:
        os.close(held)
    assert summary.files_left == [".w-000001.arrow.tmp"] and (day / ".w-000001.arrow.tmp").exists()
    assert (log / ".writer-w.lock").exists(), "kept, so the next start knows the file is a dead writer's"
    summary = recover_unfinished_files(log, "me")  # the next start, no maintenance running
    assert summary.files_removed == 1 and not (day / ".w-000001.arrow.tmp").exists()
    assert read_ids(read_log_file(day / "w-000001.arrow")) == ["kept"]
    assert not (log / ".writer-w.lock").exists()


def test_recovery_takes_files_without_a_lock_only_once_they_are_stale(tmp_path):
    log = tmp_path / "log"
    day = log / "date=2026-12-03"
    day.mkdir(parents=True)
    journal_file(day / "old-writer-000001.arrow", [["old"]])
    assert recover_unfinished_files(log, "me").files_left == [".old-writer-000001.arrow.open"]
    later = time.time() + log_recovery.STALE_SECONDS + 1
    summary = recover_unfinished_files(log, "me", now=later)
    assert summary.rows_recovered == 1 and read_ids(read_log_file(day / "old-writer-000001.arrow")) == ["old"]


def test_a_starting_writer_recovers_the_open_file_a_killed_one_left(tmp_path):
    """A durable writer's process killed (SIGKILL, by itself) right after its last commit: the
    next writer to start publishes every committed row."""
    import subprocess
    import sys

    directory = tmp_path / "log"
    script = f"""
import asyncio, json, os, numpy as np
from pathlib import Path
from tests.test_inference_log_durable import ONE, durable_writer
writer = durable_writer(Path({str(directory)!r}))
async def main():
    for i in range(40):
        await writer.committed(writer.append(ONE, [f"k{{i}}"], np.array([0.5]), np.array([1])))
asyncio.run(main())
print("committed", flush=True)
os.kill(os.getpid(), 9)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == -9 and "committed" in result.stdout, result.stderr[-2000:]
    assert len(open_files(directory)) == 1 and not list(directory.glob("date=*/*.arrow"))
    writer = durable_writer(directory)
    assert writer.recovery.rows_recovered == 40 and not open_files(directory)
    writer.close()
    assert sorted(read_log(directory)["request_id"]) == sorted(f"k{i}" for i in range(40))
