"""Per-version counts, errors and scoring latency of a rollout, written by each service worker.

Each worker process writes ``<log dir>/_rollout/<rollout id>-<worker>.json`` (atomically: a
temporary file, then a rename) every few seconds and at shutdown; :func:`read_rollout_stats`
merges every worker's file of one rollout. Latency is the model's scoring time of a request
(parsing excluded), kept as a histogram so workers merge exactly.
"""

from __future__ import annotations

import bisect
import json
import os
import socket
import threading
import uuid
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

LATENCY_BOUNDS_MS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)


class VersionStats(BaseModel):
    role: str  # production | challenger
    requests: int = 0
    rows: int = 0
    served_rows: int = 0  # rows this version answered (the rest it scored in the background)
    errors: int = 0  # requests it failed to score
    dropped_rows: int = 0  # background rows not scored (queue full)
    latency_ms_bounds: list[float] = Field(default_factory=lambda: list(LATENCY_BOUNDS_MS))
    latency_ms_counts: list[int] = Field(default_factory=lambda: [0] * (len(LATENCY_BOUNDS_MS) + 1))

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    def latency_quantile_ms(self, q: float) -> float | None:
        """Upper bound of the histogram bucket holding quantile ``q`` (None: no request timed)."""
        counts = np.asarray(self.latency_ms_counts)
        total = int(counts.sum())
        if not total:
            return None
        bucket = int(np.searchsorted(np.cumsum(counts), q * total, side="left"))
        bounds = [*self.latency_ms_bounds, float("inf")]
        return float(bounds[min(bucket, len(bounds) - 1)])

    def merged(self, other: VersionStats) -> VersionStats:
        return VersionStats(
            role=self.role, requests=self.requests + other.requests, rows=self.rows + other.rows,
            served_rows=self.served_rows + other.served_rows, errors=self.errors + other.errors,
            dropped_rows=self.dropped_rows + other.dropped_rows, latency_ms_bounds=self.latency_ms_bounds,
            latency_ms_counts=[a + b for a, b in zip(self.latency_ms_counts, other.latency_ms_counts, strict=True)])


class RolloutStats(BaseModel):
    rollout_id: str
    mode: str
    canary_percent: float | None = None
    started_at: str
    updated_at: str
    workers: int = 1
    versions: dict[str, VersionStats]


class RolloutStatsRecorder:
    """The counters of one worker; thread-safe (the request path and the shadow thread both count)."""

    def __init__(self, folder: Path, rollout_id: str, mode: str, canary_percent: float | None, started_at: str,
                 roles: dict[str, str]) -> None:
        self.path = Path(folder) / f"{rollout_id}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}.json"
        self._stats = RolloutStats(rollout_id=rollout_id, mode=mode, canary_percent=canary_percent,
                                   started_at=started_at, updated_at=started_at,
                                   versions={version: VersionStats(role=role) for version, role in roles.items()})
        self._lock = threading.Lock()

    def observe(self, version: str, rows: int, seconds: float, served: int = 0, error: bool = False) -> None:
        with self._lock:
            stats = self._stats.versions[version]
            stats.requests += 1
            stats.rows += rows
            stats.served_rows += served
            if error:
                stats.errors += 1
                return
            # bisect, not np.searchsorted: 0.2 us instead of 11 us on the request path
            bucket = bisect.bisect_left(LATENCY_BOUNDS_MS, seconds * 1000.0)
            stats.latency_ms_counts[bucket] += 1

    def dropped(self, version: str, rows: int) -> None:
        with self._lock:
            self._stats.versions[version].dropped_rows += rows

    def snapshot(self) -> RolloutStats:
        with self._lock:
            return self._stats.model_copy(deep=True)

    def write(self) -> None:
        with self._lock:
            self._stats.updated_at = datetime.now(UTC).isoformat(timespec="seconds")
            text = self._stats.model_dump_json(indent=1)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(text)
        os.replace(temporary, self.path)


def read_rollout_stats(folder: Path, rollout_id: str) -> RolloutStats | None:
    """Every worker's counters of ``rollout_id`` in ``folder``, merged (None: no file yet)."""
    merged: RolloutStats | None = None
    for path in sorted(Path(folder).glob(f"{rollout_id}-*.json")):
        try:
            stats = RolloutStats.model_validate(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
        if merged is None:
            merged = stats
            continue
        versions = dict(merged.versions)
        for version, counts in stats.versions.items():
            versions[version] = versions[version].merged(counts) if version in versions else counts
        merged = merged.model_copy(update={"versions": versions, "workers": merged.workers + 1,
                                           "updated_at": max(merged.updated_at, stats.updated_at)})
    return merged
