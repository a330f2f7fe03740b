"""The trend view across monitoring runs: ordering, series and the rendered chart."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from churnops.monitoring.trends import TrendPoint, ordered, render_trends, series

START = datetime(2026, 11, 1, tzinfo=UTC)


def _point(day: int, drift: float, estimated: float | None = 0.6, realised: float | None = None) -> TrendPoint:
    return TrendPoint(checked_at=START + timedelta(days=day), model_version="3", window_rows=1000,
                      drift_share=drift, estimated_f1=estimated, realised_f1=realised, prediction_rate=0.3)


def test_points_are_oldest_first_deduplicated_and_capped() -> None:
    points = [_point(3, 0.3), _point(1, 0.1), _point(2, 0.2), _point(1, 0.1)]

    kept = ordered(points, max_points=2)

    assert [p.drift_share for p in kept] == [0.2, 0.3]


def test_series_span_time_and_skip_runs_without_a_figure() -> None:
    points = ordered([_point(0, 0.0), _point(5, 0.5, realised=0.55), _point(10, 1.0, realised=0.5)], 10)

    drawn = series(points)

    assert drawn["drift share"] == ([0.0, 0.5, 1.0], [0.0, 0.5, 1.0])
    assert drawn["realised F1"] == ([0.5, 1.0], [0.55, 0.5])
    assert drawn["estimated F1 (no labels)"][1] == [0.6, 0.6, 0.6]


def test_render_shows_every_run_and_says_when_there_is_not_enough_history() -> None:
    html = render_trends(ordered([_point(0, 0.1), _point(1, 0.4, realised=0.52)], 10))

    assert "<svg" in html and "2 monitoring runs" in html
    assert "40.0%" in html and "0.520" in html and "v3" in html
    assert "need two monitoring runs" in render_trends([_point(0, 0.1)])


def test_a_point_is_read_from_a_stored_monitoring_decision() -> None:
    from churnops.monitoring.decision import DecisionRules, MonitoringDecision

    decision = MonitoringDecision(
        model_name="churn_classifier", model_version="4", checked_at=START, window="last 24 h", window_rows=500,
        drift_share=0.25, drifted_features=["age"], alert_count=1, prediction_drift=False, labelled_rows=0,
        performance_judged=False, performance_below_gate=False, estimated_f1=0.61, prediction_rate=0.28,
        retrain_recommended=False, retrain_on_drift=False, alert=False, action="none", message="ok",
        rules=DecisionRules())

    point = TrendPoint.of(decision)

    assert (point.model_version, point.drift_share, point.estimated_f1, point.realised_f1, point.prediction_rate) == (
        "4", 0.25, 0.61, None, 0.28)
