"""Prometheus metrics of the inference log writer, exported on the service's ``/metrics``.

- ``churn_inference_log_rows_written_total``: rows on disk (durable mode: committed to the journal);
- ``churn_inference_log_write_failures_total``: failed writes (the writer keeps the rows and retries);
- ``churn_inference_log_pending_rows``: rows appended but not yet written, one series per worker
  process (``pid`` label, as prometheus_client's ``liveall`` gauges have).

The writer thread reports its :class:`~churnops.serving.inference_log.WriterStats` after each
write attempt, so the request path pays nothing; the pending count is therefore sampled at each
write, not at each request. A writer stuck inside a write reports nothing: the
``ChurnInferenceLogStalled`` alert (deploy/prometheus/alerts.yml) notices that from predictions
served while no rows are written.

Create it in the worker, after BentoML has set PROMETHEUS_MULTIPROC_DIR: prometheus_client picks
its multi-process storage when it is first imported (as bento/service.py's PredictionMetrics).
"""

from __future__ import annotations

import functools
from typing import Any

from churnops.serving.inference_log import WriterStats

ROWS_WRITTEN = "churn_inference_log_rows_written"
WRITE_FAILURES = "churn_inference_log_write_failures"
PENDING_ROWS = "churn_inference_log_pending_rows"


@functools.cache
def _families() -> tuple[Any, Any, Any]:
    """The metric families, registered once per process (prometheus_client refuses a second)."""
    import prometheus_client

    rows_written = prometheus_client.Counter(
        ROWS_WRITTEN, "Inference log rows written to disk (durable mode: committed to the journal)")
    write_failures = prometheus_client.Counter(
        WRITE_FAILURES, "Failed inference log writes; the writer keeps their rows and retries")
    # liveall: one series per live worker (pid label); sum or max them in PromQL.
    pending_rows = prometheus_client.Gauge(
        PENDING_ROWS, "Inference log rows appended but not yet written, sampled by the writer after each write",
        multiprocess_mode="liveall")
    return rows_written, write_failures, pending_rows


class InferenceLogMetrics:
    """One writer's reporter: pass its :meth:`observe` as the writer's ``stats_observer``."""

    def __init__(self) -> None:
        self._rows_written, self._write_failures, self._pending_rows = _families()
        # Counters only go up by the change since the last report; the writer's stats are totals.
        self._rows_seen = 0
        self._failures_seen = 0

    def observe(self, stats: WriterStats, pending_rows: int) -> None:
        """Called by the writer thread after each write attempt."""
        # The gauge first: a scrape that shows a write's rows counted shows the backlog after it too.
        self._pending_rows.set(pending_rows)
        rows, failures = stats.rows_written - self._rows_seen, stats.write_errors - self._failures_seen
        if rows > 0:
            self._rows_written.inc(rows)
            self._rows_seen = stats.rows_written
        if failures > 0:
            self._write_failures.inc(failures)
            self._failures_seen = stats.write_errors
