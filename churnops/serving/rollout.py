"""A challenger served beside production: shadow and canary (docs/serving.md#shadow-and-canary).

* **shadow**: production answers every request; the challenger scores the same rows off the
  response path (a background thread scores queued requests together, one vectorised call per
  flush), so a request waits for one model only.
* **canary**: a stable share of customers, chosen by their pseudonymised id, gets the challenger's
  answer; the other model scores them off the response path too. Rows without a customer id go to
  production.

Either way both versions score every request. The served answers go to the inference log as
today (``model_version`` says who answered); the other model's scores go to the same log format
under ``<log dir>/_shadow/`` (readers of the served log ignore the folder), with the same request
ids, so monitoring pairs the two by request. Per-version counts, errors and scoring latency are
written to ``<log dir>/_rollout/`` (:mod:`churnops.serving.rollout_stats`). A challenger that
fails never fails a request: the error is counted and production answers.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from churnops.core.settings import StatePaths
from churnops.serving.compiled import compile_pipeline
from churnops.serving.config import ServingConfig
from churnops.serving.contract import FeatureBatch
from churnops.serving.inference_log import InferenceLogWriter
from churnops.serving.packaging import read_model_files
from churnops.serving.pseudonym import load_salt
from churnops.serving.rollout_stats import RolloutStatsRecorder

logger = logging.getLogger(__name__)

SHADOW_DIR = "_shadow"
STATS_DIR = "_rollout"
BUCKETS = 10_000  # canary shares in steps of 0.01 %
# Shadow scoring: flush when this many rows wait, or when the oldest has waited FLUSH_SECONDS.
FLUSH_ROWS = 512
FLUSH_SECONDS = 0.05
MAX_QUEUED_ROWS = 200_000  # beyond this, shadow rows are dropped (and counted), never a request blocked


class RolloutPlan(BaseModel):
    """What the deployment asked for (the Bento's arguments)."""

    mode: str = Field(pattern="^(shadow|canary)$")
    rollout_id: str
    started_at: str
    canary_percent: float = Field(0.0, ge=0, lt=100)
    production_version: str
    challenger_version: str


def route_to_challenger(customer_ids: list[str | None] | None, percent: float, salt: bytes) -> np.ndarray:
    """True for the rows the canary answers: bucket(HMAC-SHA256(salt, id)) < percent of the buckets.

    Keyed with the salt of the log's pseudonyms, so a customer always lands in the same bucket (across
    requests, workers and restarts) and nobody without the salt can tell which customers are in it.
    """
    if not customer_ids:
        return np.zeros(0 if customer_ids is None else len(customer_ids), dtype=bool)
    cut = percent * BUCKETS / 100
    routed = np.zeros(len(customer_ids), dtype=bool)
    for row, customer in enumerate(customer_ids):
        if customer is not None:
            digest = hashlib.blake2b(customer.encode(), key=salt[:64], digest_size=8).digest()
            routed[row] = int.from_bytes(digest, "big") % BUCKETS < cut
    return routed


def take(batch: FeatureBatch, rows: np.ndarray) -> FeatureBatch:
    """The rows ``rows`` (a boolean mask) of ``batch``."""
    index = np.flatnonzero(rows)
    return FeatureBatch(numeric=batch.numeric[index], codes=batch.codes[index],
                        customer_ids=None if batch.customer_ids is None else [batch.customer_ids[i] for i in index],
                        request_ids=[batch.request_ids[i] for i in index])


def concat(batches: list[FeatureBatch]) -> FeatureBatch:
    customer_ids: list[str | None] = []
    for batch in batches:
        customer_ids.extend(batch.customer_ids or [None] * len(batch))
    return FeatureBatch(numeric=np.concatenate([b.numeric for b in batches]),
                        codes=np.concatenate([b.codes for b in batches]),
                        customer_ids=customer_ids, request_ids=[r for b in batches for r in b.request_ids])


@dataclass
class VersionScorer:
    """One model version as the rollout uses it."""

    version: str
    score: Callable[[FeatureBatch], np.ndarray]
    threshold: float
    shadow_log: InferenceLogWriter | None  # its scores of requests the other version answered
    served_log: InferenceLogWriter | None  # its answers (the main log); None: production's own runtime logs


@dataclass
class _Queued:
    scorer: VersionScorer
    batch: FeatureBatch
    request_ids: list[str]
    timestamp_ns: int


class ShadowQueue:
    """Requests waiting to be scored by the model that did not answer them, scored in micro-batches
    by one background thread (one vectorised call per version and flush)."""

    def __init__(self, stats: RolloutStatsRecorder, flush_rows: int = FLUSH_ROWS,
                 flush_seconds: float = FLUSH_SECONDS, max_rows: int = MAX_QUEUED_ROWS,
                 stats_seconds: float = 2.0) -> None:
        self.stats = stats
        self.flush_rows, self.flush_seconds, self.max_rows = flush_rows, flush_seconds, max_rows
        self.stats_seconds = stats_seconds
        self._queue: list[_Queued] = []
        self._rows = 0
        self._oldest: float | None = None
        self._closing = False
        self._busy = False  # the thread is scoring a batch it took off the queue
        self._condition = threading.Condition()
        self.scored_rows = 0
        self.dropped_rows = 0
        self._thread = threading.Thread(target=self._run, name="shadow-scorer", daemon=True)
        self._thread.start()

    def put(self, scorer: VersionScorer, batch: FeatureBatch, request_ids: list[str], timestamp_ns: int) -> None:
        with self._condition:
            if self._rows + len(batch) > self.max_rows or self._closing:
                self.dropped_rows += len(batch)
                self.stats.dropped(scorer.version, len(batch))
                return
            self._queue.append(_Queued(scorer, batch, request_ids, timestamp_ns))
            self._rows += len(batch)
            if self._oldest is None:
                self._oldest = time.monotonic()
            if self._rows >= self.flush_rows:
                self._condition.notify()

    def drain(self, timeout: float = 10.0) -> bool:
        """Score everything queued so far (tests, shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._condition:
            self._oldest = 0.0 if self._queue else self._oldest
            self._condition.notify()
            while self._queue or self._busy:
                if time.monotonic() > deadline:
                    return False
                self._condition.wait(0.01)
        return True

    def close(self) -> None:
        self.drain()
        with self._condition:
            self._closing = True
            self._condition.notify()
        self._thread.join(10)
        self.stats.write()

    def _due(self) -> bool:
        if not self._queue:
            return False
        return self._rows >= self.flush_rows or time.monotonic() - (self._oldest or 0.0) >= self.flush_seconds

    def _run(self) -> None:
        next_stats = time.monotonic() + self.stats_seconds
        while True:
            with self._condition:
                while not self._due() and not self._closing:
                    self._condition.wait(self.flush_seconds)
                    if time.monotonic() >= next_stats:
                        break
                if self._closing and not self._queue:
                    return
                queued, self._queue, self._rows, self._oldest = self._queue, [], 0, None
                self._busy = bool(queued)
            try:
                self._score(queued)
            finally:
                with self._condition:
                    self._busy = False
                    self._condition.notify_all()
            if time.monotonic() >= next_stats:
                self.stats.write()
                next_stats = time.monotonic() + self.stats_seconds

    def _score(self, queued: list[_Queued]) -> None:
        by_version: dict[str, list[_Queued]] = {}
        for item in queued:
            by_version.setdefault(item.scorer.version, []).append(item)
        for items in by_version.values():
            scorer = items[0].scorer
            started = time.perf_counter()
            try:
                probabilities = scorer.score(concat([item.batch for item in items]))
            except Exception:  # a failing shadow model is counted, never raised into serving
                logger.exception("shadow scoring by version %s failed", scorer.version)
                for item in items:
                    self.stats.observe(scorer.version, len(item.batch), 0.0, error=True)
                continue
            elapsed = time.perf_counter() - started
            total = sum(len(item.batch) for item in items)
            start = 0
            for item in items:
                part = probabilities[start:start + len(item.batch)]
                start += len(item.batch)
                labels = (part >= scorer.threshold).astype(np.int64)
                if scorer.shadow_log is not None:
                    scorer.shadow_log.append(item.batch, item.request_ids, part, labels, item.timestamp_ns)
                # The shared call's time, in proportion to the request's rows.
                self.stats.observe(scorer.version, len(item.batch), elapsed * len(item.batch) / total)
            self.scored_rows += total


class Rollout:
    """Production and a challenger behind one service: who answers, who scores in the background."""

    def __init__(self, plan: RolloutPlan, production: VersionScorer, challenger: VersionScorer, salt: bytes,
                 stats: RolloutStatsRecorder) -> None:
        self.plan = plan
        self.production, self.challenger = production, challenger
        self.salt = salt
        self.stats = stats
        self.canary = plan.mode == "canary"
        self.shadow = ShadowQueue(stats)

    def describe(self) -> dict[str, object]:
        return {"mode": self.plan.mode, "rollout_id": self.plan.rollout_id, "started_at": self.plan.started_at,
                "production_version": self.plan.production_version,
                "challenger_version": self.plan.challenger_version,
                "canary_percent": self.plan.canary_percent if self.canary else None}

    def score(self, batch: FeatureBatch, request_ids: list[str], served_log: Callable[..., int | None]
              ) -> tuple[np.ndarray, np.ndarray, int | None, list[str] | None]:
        """Probabilities and labels of the answering model(s), the log group, and per row the version
        that answered (None: production answered every row). ``served_log(batch, ids, p, labels)`` logs
        production's answers as the runtime always does."""
        now = time.time_ns()
        if not self.canary:  # shadow: production answers every row (no routing array: 7 us a request)
            return (*self._answer(self.production, batch, request_ids, served_log, now), None)
        routed = route_to_challenger(batch.customer_ids, self.plan.canary_percent, self.salt)
        if not routed.any():
            return (*self._answer(self.production, batch, request_ids, served_log, now), None)
        if routed.all():
            try:
                probabilities, labels, group = self._answer(self.challenger, batch, request_ids, served_log, now)
                return probabilities, labels, group, [self.challenger.version] * len(batch)
            except Exception:  # the canary failed: counted, and production answers
                logger.exception("canary version %s failed; production answered", self.challenger.version)
                self.stats.observe(self.challenger.version, len(batch), 0.0, error=True)
                return (*self._answer(self.production, batch, request_ids, served_log, now, shadow=False), None)
        # A batch with both kinds of customers: each part answered by its model.
        probabilities = np.empty(len(batch))
        labels = np.empty(len(batch), dtype=np.int64)
        versions = [self.production.version] * len(batch)
        group = None
        for scorer, rows in ((self.production, ~routed), (self.challenger, routed)):
            part = take(batch, rows)
            ids = [request_ids[i] for i in np.flatnonzero(rows)]
            try:
                p, label, g = self._answer(scorer, part, ids, served_log, now)
            except Exception:
                if scorer is self.production:
                    raise
                logger.exception("canary version %s failed; production answered", scorer.version)
                self.stats.observe(scorer.version, len(part), 0.0, error=True)
                p, label, g = self._answer(self.production, part, ids, served_log, now, shadow=False)
                scorer = self.production
            probabilities[rows], labels[rows] = p, label
            group = g if g is not None else group
            for i in np.flatnonzero(rows):
                versions[i] = scorer.version
        return probabilities, labels, group, versions

    def _answer(self, scorer: VersionScorer, batch: FeatureBatch, request_ids: list[str],
                served_log: Callable[..., int | None], timestamp_ns: int, shadow: bool = True
                ) -> tuple[np.ndarray, np.ndarray, int | None]:
        """Score on the response path with ``scorer``, log the answer, queue the other model."""
        started = time.perf_counter()
        probabilities = scorer.score(batch)
        labels = (probabilities >= scorer.threshold).astype(np.int64)
        self.stats.observe(scorer.version, len(batch), time.perf_counter() - started, served=len(batch))
        if scorer.served_log is None:
            group = served_log(batch, request_ids, probabilities, labels)
        else:
            group = None
            scorer.served_log.append(batch, request_ids, probabilities, labels, timestamp_ns)
        if shadow:
            other = self.challenger if scorer is self.production else self.production
            self.shadow.put(other, batch, request_ids, timestamp_ns)
        return probabilities, labels, group

    def close(self) -> None:
        self.shadow.close()
        for scorer in (self.production, self.challenger):
            for writer in (scorer.shadow_log, scorer.served_log):
                if writer is not None:
                    writer.close()


def attach_challenger(runtime: Any, challenger_folder: Path, config: ServingConfig, paths: StatePaths, *,
                      mode: str, rollout_id: str, started_at: str, canary_percent: float = 0.0) -> Rollout:
    """Serve the model in ``challenger_folder`` beside ``runtime``'s (a ServingRuntime) from now on."""
    if runtime.log_directory is None:
        raise RuntimeError("a rollout needs the inference log (inference_log.enabled in configs/serving.yaml): "
                           "the challenger is judged on what both versions logged")
    challenger = read_model_files(challenger_folder)
    if challenger.schema.feature_names != runtime.schema.feature_names:
        raise RuntimeError(f"challenger version {challenger.card.model_version} expects other features than "
                           f"production version {runtime.card.model_version}")
    plan = RolloutPlan(mode=mode, rollout_id=rollout_id, started_at=started_at, canary_percent=canary_percent,
                       production_version=runtime.card.model_version,
                       challenger_version=challenger.card.model_version)
    pseudonym = config.pseudonymisation
    salt = load_salt(paths, pseudonym.salt_env, pseudonym.salt_file)
    options = config.inference_log
    canary = mode == "canary"

    def writer(directory: Path, version: str) -> InferenceLogWriter:
        return InferenceLogWriter(directory, runtime.schema, runtime.card.model_name, version,
                                  salt if runtime.schema.id_column else None, flush_rows=options.flush_rows,
                                  flush_seconds=options.flush_seconds, max_pending_rows=options.max_pending_rows)

    shadow_dir = shadow_log_dir(runtime.log_directory)
    production = VersionScorer(plan.production_version, runtime.scorer, runtime.threshold,
                               shadow_log=writer(shadow_dir, plan.production_version) if canary else None,
                               served_log=None)
    challenger_side = VersionScorer(
        plan.challenger_version, compile_pipeline(challenger.pipeline, challenger.schema),
        float(challenger.card.threshold), shadow_log=writer(shadow_dir, plan.challenger_version),
        served_log=writer(runtime.log_directory, plan.challenger_version) if canary else None)
    stats = RolloutStatsRecorder(stats_dir(runtime.log_directory), rollout_id, mode,
                                 canary_percent if canary else None, started_at,
                                 {plan.production_version: "production", plan.challenger_version: "challenger"})
    rollout = Rollout(plan, production, challenger_side, salt, stats)
    runtime.attach_rollout(rollout, float(challenger.card.threshold))
    logger.info("rollout %s: %s of version %s beside production version %s%s", rollout_id, mode,
                plan.challenger_version, plan.production_version,
                f" ({canary_percent:g} % of customers)" if canary else "")
    return rollout


def shadow_log_dir(log_dir: Path) -> Path:
    return Path(log_dir) / SHADOW_DIR


def stats_dir(log_dir: Path) -> Path:
    return Path(log_dir) / STATS_DIR
