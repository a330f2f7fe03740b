"""Trends across monitoring runs: is drift creeping up, is estimated or realised quality sliding?

Each monitoring run stores its decision (``monitoring_decision`` artifact). The trend view reads the
decisions of previous runs back from the artifact store and plots drift share, estimated F1 (from
the model's calibrated probabilities, no labels needed), realised F1 (once outcomes are in) and the
share of customers predicted to churn, oldest to newest.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from pydantic import BaseModel, Field

from churnops.monitoring.decision import MonitoringDecision
from churnops.reporting.html import line_chart, table

TREND_SERIES = {
    "drift_share": "drift share",
    "estimated_f1": "estimated F1 (no labels)",
    "realised_f1": "realised F1",
    "prediction_rate": "predicted churn rate",
}


class TrendPoint(BaseModel):
    checked_at: datetime
    model_version: str
    window_rows: int
    drift_share: float
    estimated_f1: float | None = None
    realised_f1: float | None = None
    prediction_rate: float | None = None

    @classmethod
    def of(cls, decision: MonitoringDecision) -> TrendPoint:
        return cls(checked_at=decision.checked_at, model_version=decision.model_version,
                   window_rows=decision.window_rows, drift_share=decision.drift_share,
                   estimated_f1=decision.estimated_f1, realised_f1=decision.live_f1,
                   prediction_rate=decision.prediction_rate)


class MonitoringHistory(BaseModel):
    """Previous monitoring runs of one model, as trend points (``monitoring_history`` artifact)."""

    points: list[TrendPoint] = Field(default_factory=list)
    # Decisions whose artifact could not be read (e.g. stored on another stack).
    unreadable: int = 0


def ordered(points: Iterable[TrendPoint], max_points: int) -> list[TrendPoint]:
    """The newest ``max_points``, oldest first; one point per check time."""
    unique = {point.checked_at: point for point in points}
    return sorted(unique.values(), key=lambda point: point.checked_at)[-max_points:]


def series(points: Sequence[TrendPoint]) -> dict[str, tuple[list[float], list[float]]]:
    """Each figure against time scaled to [0, 1] (first run 0, last run 1); runs without the figure are skipped."""
    if not points:
        return {}
    start, end = points[0].checked_at.timestamp(), points[-1].checked_at.timestamp()
    span = (end - start) or 1.0
    out: dict[str, tuple[list[float], list[float]]] = {}
    for field, label in TREND_SERIES.items():
        xs, ys = [], []
        for point in points:
            value = getattr(point, field)
            if value is not None:
                xs.append((point.checked_at.timestamp() - start) / span if end > start else 0.5)
                ys.append(min(1.0, max(0.0, float(value))))
        if xs:
            out[label] = (xs, ys)
    return out


def render_trends(points: Sequence[TrendPoint]) -> str:
    """The trend chart and its table, for the monitoring report."""
    if len(points) < 2:
        return ("<p>Trends need two monitoring runs; this is the first one with a stored decision "
                f"({len(points)} so far).</p>")
    first, last = points[0].checked_at, points[-1].checked_at
    chart = line_chart(f"{len(points)} monitoring runs", f"time ({first:%Y-%m-%d %H:%M} → {last:%Y-%m-%d %H:%M})",
                       "share / F1", series(points))
    rows = [[f"{p.checked_at:%Y-%m-%d %H:%M:%S}", f"v{p.model_version}", p.window_rows,
             _pct(p.drift_share), _num(p.estimated_f1), _num(p.realised_f1), _pct(p.prediction_rate)]
            for p in points]
    return chart + table(["checked at", "version", "rows", "drift share", "estimated F1", "realised F1",
                          "predicted churn"], rows)


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.1%}"
