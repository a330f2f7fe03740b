"""The inference log under ``kill -9``: the real service under load from 16 concurrent clients,
killed mid-load (its process group and its worker, which BentoML runs in a group of its own),
then the acknowledged answers' request ids compared with what the log holds.

- buffered mode (the default): no torn or unreadable file; the records lost are at most those
  acknowledged in the last flush interval before the kill (plus the write then in progress);
- durable mode: after the next start (which publishes the killed writer's open file), every
  acknowledged record is in the log.

Figures are printed (``pytest -s``) for the README.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from churnops.core.settings import StatePaths
from churnops.monitoring.inference_log import list_partitions, logged_request_ids, read_log_file
from churnops.platform.ports import free_port
from churnops.platform.services import process_tree
from churnops.serving.log_recovery import recover_unfinished_files
from churnops.serving.log_writers import WRITER_LOCK_PREFIX
from churnops.serving.packaging import ModelCard
from tests.test_serving_unit import SCHEMA, fit, records

pytestmark = pytest.mark.slow

FLUSH_SECONDS = 1.0
# How long the buffered writer may take to write what it took out of the buffer (a flush of
# about a thousand rows takes a few ms; this leaves room for two busy cores).
WRITE_ALLOWANCE_SECONDS = 0.25
CLIENTS = 16
BATCH_EVERY = 8  # every 8th request of a client is a /predict_batch ...
BATCH_ROWS = 5  # ... of this many records
MAX_REQUESTS_PER_CLIENT = 20_000
LOAD_DEADLINE_SECONDS = 20.0


@dataclass
class Ack:
    ids: tuple[str, ...]  # the log record ids this 200 answer stands for
    at: float  # time.monotonic() when the answer had been read


@dataclass
class Load:
    """``CLIENTS`` threads, each with its own keep-alive connection, sending /predict (and
    every ``BATCH_EVERY``-th request a /predict_batch) with their own X-Request-ID until the
    server goes away, a request cap or a deadline."""

    url: str
    prefix: str
    acks: list[Ack] = field(default_factory=list)
    sent: list[str] = field(default_factory=list)
    refusals: list[int] = field(default_factory=list)
    threads: list[threading.Thread] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> None:
        rows = records(BATCH_ROWS, seed=21)
        single, batch = json.dumps(rows[0]).encode(), json.dumps(rows).encode()
        deadline = time.monotonic() + LOAD_DEADLINE_SECONDS
        self.threads = [threading.Thread(target=self._client, args=(i, single, batch, deadline), daemon=True)
                        for i in range(CLIENTS)]
        for thread in self.threads:
            thread.start()

    def join(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)
        assert not any(t.is_alive() for t in self.threads), "a client did not finish"

    def _client(self, index: int, single: bytes, batch: bytes, deadline: float) -> None:
        host, port = self.url.removeprefix("http://").split(":")
        connection = http.client.HTTPConnection(host, int(port), timeout=10)
        try:
            for n in range(MAX_REQUESTS_PER_CLIENT):
                if self.stop.is_set() or time.monotonic() > deadline:
                    return
                request_id = f"{self.prefix}-c{index}-{n}"
                is_batch = n % BATCH_EVERY == BATCH_EVERY - 1
                ids = tuple(f"{request_id}-{i}" for i in range(BATCH_ROWS)) if is_batch else (request_id,)
                self.sent.extend(ids)
                try:
                    connection.request("POST", "/predict_batch" if is_batch else "/predict",
                                       body=batch if is_batch else single,
                                       headers={"Content-Type": "application/json", "X-Request-ID": request_id})
                    response = connection.getresponse()
                    response.read()
                except (OSError, http.client.HTTPException):
                    return  # the server is gone
                if response.status == 200:
                    self.acks.append(Ack(ids, time.monotonic()))
                else:
                    self.refusals.append(response.status)
        finally:
            connection.close()

    def acknowledged(self) -> set[str]:
        return {i for ack in self.acks for i in ack.ids}


@pytest.fixture(scope="module")
def bento_tag() -> str:
    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean
    from churnops.platform import deployment

    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=1500, seed=4)), SCHEMA)
    pipeline = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=1000)
    card = ModelCard(model_name="churn_classifier", model_version="1", model_version_id=str(uuid.uuid4()),
                     stage="production", threshold=0.4, metrics={"f1": 0.6}, dataset="synthetic",
                     trained_at="2026-01-01T00:00:00+00:00")
    return deployment.build_bento(deployment.save_bento_model(pipeline, SCHEMA, card), card)


def serve(home: Path, bento_tag: str, mode: str, log_dir: Path):
    from churnops.platform import deployment

    config = home / f"serving-{mode}.yaml"
    config.write_text(yaml.safe_dump({"inference_log": {"flush_rows": 10**6, "flush_seconds": FLUSH_SECONDS,
                                                        "mode": mode}}))
    return deployment.start_service(StatePaths(home), bento_tag, "1", port=free_port(), extra_env={
        "BENTOML_HOME": os.environ["BENTOML_HOME"],
        "CHURNOPS_SERVING_CONFIG": str(config),
        "CHURNOPS_INFERENCE_LOG_DIR": str(log_dir),
        "CHURNOPS_CUSTOMER_SALT": "crash-test-salt",
    })


def kill_9(home: Path, server_pid: int) -> float:
    """SIGKILL the server's process group and every descendant; returns when it happened
    (time.monotonic()), once none of them runs any more."""
    from churnops.platform import services

    tree = process_tree(server_pid)
    assert len(tree) >= 2, f"expected the server and its worker, found {tree}"
    killed_at = time.monotonic()
    os.killpg(server_pid, signal.SIGKILL)  # first the parent, so nothing restarts the worker
    for pid in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    services.stop_process_group(server_pid, timeout=5)  # reaps our child; the group is empty now
    deadline = time.monotonic() + 10
    while any(services.pid_alive(pid) for pid in tree):
        assert time.monotonic() < deadline, "a server process survived SIGKILL"
        time.sleep(0.05)
    StatePaths(home).deployment_file.unlink(missing_ok=True)
    return killed_at


def run_until_killed(home: Path, bento_tag: str, mode: str, log_dir: Path, prefix: str,
                     seconds: float) -> tuple[Load, float]:
    record = serve(home, bento_tag, mode, log_dir)
    load = Load(record.url, prefix)
    load.start()
    time.sleep(seconds)
    killed_at = kill_9(home, record.pid)
    load.join()
    assert not load.refusals, f"the service refused requests: {sorted(set(load.refusals))}"
    assert len(load.acks) > 200, f"too little load to mean anything: {len(load.acks)} answers"
    return load, killed_at


def every_file(log_dir: Path) -> tuple[list[Path], list[Path]]:
    """The finished log files and the unfinished (dot-named) ones in the day partitions."""
    files = [f for f in log_dir.glob("date=*/*") if f.is_file()]
    return ([f for f in files if not f.name.startswith(".")], [f for f in files if f.name.startswith(".")])


def assert_every_finished_file_is_whole(log_dir: Path) -> None:
    finished, unfinished = every_file(log_dir)
    assert finished
    for path in finished:
        assert path.suffix == ".arrow", path
        read_log_file(path)  # raises if torn or unreadable
    listed = {f for _day, files in list_partitions(log_dir) for f in files}
    assert listed == set(finished) and not listed & set(unfinished), "readers must skip unfinished files"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("crash-home")


def test_kill_9_loses_at_most_one_flush_interval_of_buffered_records(bento_tag, home, tmp_path):
    log_dir = tmp_path / "log"
    # 2.6 s: two flushes behind it, the third 0.6 s away.
    load, killed_at = run_until_killed(home, bento_tag, "buffered", log_dir, "b", 2.6)

    assert_every_finished_file_is_whole(log_dir)
    logged = logged_request_ids(log_dir)
    acknowledged = load.acknowledged()
    assert logged <= set(load.sent)
    lost = acknowledged - logged
    window = FLUSH_SECONDS + WRITE_ALLOWANCE_SECONDS
    lost_acks = [ack for ack in load.acks if lost & set(ack.ids)]
    bound = {i for ack in load.acks if ack.at > killed_at - window for i in ack.ids}
    oldest = max((killed_at - ack.at for ack in lost_acks), default=0.0)
    # Every lost record was acknowledged in the last flush interval before the kill.
    assert lost <= bound, f"a record acknowledged {oldest:.3f} s before the kill was lost"

    # What the kill left unfinished is ignored by readers (above) and cleaned up at the next
    # start: the same recovery a starting writer runs (the durable test shows a real restart).
    _finished, unfinished = every_file(log_dir)
    locks = list(log_dir.glob(f"{WRITER_LOCK_PREFIX}*"))
    assert len(locks) == 1, "the killed writer's lock file stays behind"
    recovery = recover_unfinished_files(log_dir, "test-next-start")
    assert recovery.dead_writers == 1 and not recovery.files_left
    assert every_file(log_dir)[1] == [] and not list(log_dir.glob(f"{WRITER_LOCK_PREFIX}*"))
    assert_every_finished_file_is_whole(log_dir)
    print(f"\nbuffered, kill -9 under load ({CLIENTS} clients, flush_seconds={FLUSH_SECONDS:g}): "
          f"{len(acknowledged):,} records acknowledged, {len(lost):,} lost "
          f"(acknowledged at most {oldest:.2f} s before the kill); bound: the {len(bound):,} acknowledged in "
          f"the last {window:g} s; {len(unfinished)} unfinished file(s) left, "
          f"{recovery.rows_recovered} records recovered from them")


def test_kill_9_loses_no_acknowledged_record_in_durable_mode(bento_tag, home, tmp_path):
    from churnops.platform import deployment

    log_dir = tmp_path / "log"
    load, _killed_at = run_until_killed(home, bento_tag, "durable", log_dir, "d", 2.5)
    acknowledged = load.acknowledged()
    finished, unfinished = every_file(log_dir)
    assert_every_finished_file_is_whole(log_dir)
    in_published_files = len(acknowledged & logged_request_ids(log_dir))

    # The next start publishes the killed writer's open file before it serves.
    serve(home, bento_tag, "durable", log_dir)
    try:
        assert every_file(log_dir)[1] == [], "the killed writer's unfinished files are still there"
        assert len(list(log_dir.glob(f"{WRITER_LOCK_PREFIX}*"))) == 1  # the new writer's only
        after_restart = logged_request_ids(log_dir)
    finally:
        deployment.stop_service(StatePaths(home))
    assert_every_finished_file_is_whole(log_dir)
    assert every_file(log_dir)[1] == [] and not list(log_dir.glob(f"{WRITER_LOCK_PREFIX}*"))
    lost = acknowledged - after_restart
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {sorted(lost)[:5]}"
    assert after_restart <= set(load.sent)
    print(f"\ndurable, kill -9 under load ({CLIENTS} clients): {len(acknowledged):,} records acknowledged, "
          f"0 lost; {len(acknowledged) - in_published_files:,} of them were in the killed writer's open file "
          f"({len(unfinished)} unfinished file(s) beside {len(finished)} published) until the next start")
