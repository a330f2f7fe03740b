"""The whole monitoring verdict in one object, as HTML (dashboard) and as terminal text."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from churnops.monitoring.alerts import AlertDelivery
from churnops.monitoring.decision import MonitoringDecision
from churnops.monitoring.drift import DataDriftResult, PredictionDrift
from churnops.monitoring.estimation import LabelFreeEstimate
from churnops.monitoring.evidently_reports import EvidentlyReport
from churnops.monitoring.inference_log import LogReadSummary, SchemaCheck
from churnops.monitoring.performance import METRIC_NAMES, LivePerformance
from churnops.monitoring.trends import TrendPoint, render_trends
from churnops.reporting import html


class EvidentlySummary(BaseModel):
    drift_share: float | None
    drifted_columns: list[str]
    rows: int
    sampled: bool
    note: str

    @classmethod
    def of(cls, report: EvidentlyReport) -> EvidentlySummary:
        return cls(drift_share=report.drift_share, drifted_columns=report.drifted_columns,
                   rows=report.current_rows, sampled=report.sampled, note=report.note)


class MonitoringReport(BaseModel):
    decision: MonitoringDecision
    log: LogReadSummary
    schema_check: SchemaCheck
    data_drift: DataDriftResult
    prediction_drift: PredictionDrift
    performance: LivePerformance
    evidently: EvidentlySummary
    # Label-free estimate and the trend across runs (absent from reports written before they existed).
    estimate: LabelFreeEstimate | None = None
    trends: list[TrendPoint] = Field(default_factory=list)


def _num(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, float) else "-"


# --- HTML (dashboard visualizations) -------------------------------------------------------

def render_log_summary(log: LogReadSummary) -> str:
    skipped = html.table(["file", "reason"], [[s.path, s.reason] for s in log.skipped_files]) if log.skipped_files \
        else "<p>No file was skipped.</p>"
    return (html.cards({"window": log.window, "predictions": log.rows_in_window, "files read": log.files_read,
                        "files skipped": log.files_skipped, "malformed records": log.rows_malformed})
            + f"<p class='muted'>{html.fmt(log.log_dir)} · {html.fmt(log.first_timestamp)} → "
              f"{html.fmt(log.last_timestamp)} · model versions {html.fmt(log.model_versions)}</p>"
            + (html.table(["malformed because", "records"], list(log.malformed_by_reason.items()))
               if log.malformed_by_reason else "")
            + skipped)


def render_schema_check(check: SchemaCheck) -> str:
    if not check.issues:
        return f"<p class='ok'>Every feature of schema '{html.fmt(check.dataset)}' is logged with usable values.</p>"
    return html.table(["column", "problem", "rows", "detail"],
                      [[i.column, i.problem, i.rows, i.detail] for i in check.issues])


def render_data_drift(drift: DataDriftResult) -> str:
    t = drift.thresholds
    rows = []
    for f in drift.features:
        if f.kind == "numeric":
            stats = (f"z={_num(f.z_score, 2)} · PSI={_num(f.psi)} · mean {_num(f.current_mean, 4)} vs "
                     f"{_num(f.reference_mean, 4)}")
        else:
            stats = f"max shift {_num(f.frequency_shift)} ({f.shifted_category}) · unseen {_num(f.unseen_share)}"
        rows.append([f.feature, f.kind, stats, f"{f.missing_rate:.1%}",
                     html.status(not f.drifted, "stable", "DRIFT"), "; ".join(f.reasons)])
    unchecked = (html.table(["feature not checked", "why"], list(drift.unchecked.items()))
                 if drift.unchecked else "")
    return (html.cards({"rows": drift.rows, "drift share": drift.drift_share,
                        "drifted features": len(drift.drifted_features)})
            + f"<p class='muted'>Rules: |z| &gt; {t.z_score} · PSI &gt; {t.psi} · category shift &gt; "
              f"{t.frequency_shift} · missing rate +{t.missing_rate_increase}. Every row of the window.</p>"
            + html.table(["feature", "type", "statistics", "missing", "verdict", "why"], rows, raw_columns=[4])
            + unchecked)


def _bars(title: str, labels: list[str], series: dict[str, list[float]]) -> str:
    """Grouped bars of shares (0..1) as SVG."""
    width, height, pad = 560, 200, 30
    colours = ["#9ca3af", "#2563eb"]
    groups = max(len(labels), 1)
    slot = (width - 2 * pad) / groups
    bar = slot / (len(series) + 1)
    top = max([v for values in series.values() for v in values] + [0.01])
    parts = [f"<text x='{pad}' y='16' font-size='13'>{html.fmt(title)}</text>"]
    for s, (name, values) in enumerate(series.items()):
        for i, value in enumerate(values):
            h = (height - 2 * pad) * value / top
            parts.append(f"<rect x='{pad + i * slot + s * bar:.1f}' y='{height - pad - h:.1f}' width='{bar:.1f}' "
                         f"height='{h:.1f}' fill='{colours[s % 2]}'/>")
        parts.append(f"<text x='{width - 150}' y='{16 + 14 * s}' font-size='12' fill='{colours[s % 2]}'>"
                     f"{html.fmt(name)}</text>")
    for i, label in enumerate(labels):
        parts.append(f"<text x='{pad + i * slot:.1f}' y='{height - 12}' font-size='9'>{html.fmt(label)}</text>")
    return f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}'>{''.join(parts)}</svg>"


def render_prediction_drift(drift: PredictionDrift) -> str:
    labels = [f"≤{e:.2f}" for e in drift.bin_edges] + ["rest"]
    series = {"test set": drift.reference_shares}
    if drift.current_shares:
        series["served"] = drift.current_shares
    return (html.cards({"model version": drift.model_version, "served": drift.rows, "PSI": drift.psi,
                        "KS statistic": drift.ks_statistic, "verdict": "DRIFT" if drift.drifted else "stable"})
            + f"<p>Mean probability {_num(drift.current_mean)} served vs {_num(drift.reference_mean)} on the test "
              f"set; predicted churn rate {_num(drift.current_positive_rate)} vs "
              f"{_num(drift.reference_positive_rate)} at threshold {_num(drift.threshold)}."
              + (f" {drift.other_version_rows:,} predictions of other versions were left out." if
                 drift.other_version_rows else "") + "</p>"
            + _bars("Probability distribution by test-set decile bins", labels, series)
            + "".join(f"<p class='bad'>{html.fmt(r)}</p>" for r in drift.reasons))


def render_performance(performance: LivePerformance) -> str:
    m = performance.metrics
    head = html.cards({"labelled": performance.labelled_rows, "of predictions": performance.window_rows,
                       "live F1": m.f1 if m else "-", "gate F1": performance.gate_f1,
                       "live ROC-AUC": (m.roc_auc if m and m.roc_auc is not None else "-"),
                       "gate ROC-AUC": performance.gate_roc_auc})
    if m is None:
        return head + f"<p>{html.fmt(performance.note)}</p>"
    rows = [["live (labelled window)", *(getattr(m, k) for k in METRIC_NAMES)]]
    if performance.expected:
        rows.append(["test set (training)", *(performance.expected.get(k, "-") for k in METRIC_NAMES)])
    daily = [[d.day, d.predictions, d.labelled, *((getattr(d.metrics, k) if d.metrics else "-") for k in METRIC_NAMES)]
             for d in performance.daily]
    verdict = ("".join(f"<p class='bad'>{html.fmt(r)}</p>" for r in performance.reasons)
               if performance.below_gate else f"<p>{html.fmt(performance.note or 'At or above the gate.')}</p>")
    return (head + verdict
            + html.table(["", "accuracy", "precision", "recall", "F1", "ROC-AUC"], rows)
            + html.heading("Per day")
            + html.table(["day", "predictions", "labelled", "accuracy", "precision", "recall", "F1", "ROC-AUC"], daily)
            + f"<p class='muted'>Joined by request id: {performance.matched_by_request:,}; by customer key: "
              f"{performance.matched_by_customer:,}. Predictions of other model versions left out: "
              f"{performance.other_version_rows:,}.</p>")


def render_estimate(estimate: LabelFreeEstimate | None, performance: LivePerformance) -> str:
    """Expected metrics from the probabilities alone, beside the realised ones once labels are in."""
    if estimate is None or estimate.metrics is None:
        return f"<p>{html.fmt(estimate.note if estimate else 'No estimate in this report.')}</p>"
    e, m = estimate.metrics, performance.metrics
    rows = [["estimated (no labels)", e.precision, e.recall, e.f1, f"[{e.f1_low:.3f}, {e.f1_high:.3f}]", e.rows]]
    if m is not None:
        rows.append(["realised (labelled part)", m.precision, m.recall, m.f1, "", performance.labelled_rows])
    return (html.table(["", "precision", "recall", "F1", "F1 95 % interval", "rows"], rows)
            + f"<p class='muted'>Confidence-based estimation (as NannyML's CBPE): the served probabilities, "
              f"calibrated on this version's {estimate.calibration_rows:,} test-set predictions (isotonic), give "
              "the expected confusion matrix. It holds while the relation between features and churn holds; "
              "the realised figures are the check.</p>")


def render_decision(decision: MonitoringDecision) -> str:
    good = decision.action == "none"
    return (html.cards({"action": decision.action.upper(), "drift share": decision.drift_share,
                        "drift alerts": decision.alert_count, "window rows": decision.window_rows,
                        "live F1": decision.live_f1 if decision.live_f1 is not None else "-",
                        "Evidently drift share": decision.evidently_drift_share
                        if decision.evidently_drift_share is not None else "-"})
            + f"<p class='{'ok' if good else 'bad'}'>{html.fmt(decision.message)}</p>"
            + ("<ul>" + "".join(f"<li>{html.fmt(r)}</li>" for r in decision.reasons) + "</ul>"
               if decision.reasons else "")
            + (html.table(["schema issue"], [[i] for i in decision.schema_issues]) if decision.schema_issues else "")
            + f"<p class='muted'>Rules: retrain above drift share {decision.rules.drift_share}, at "
              f"{decision.rules.max_alerts} drift alerts, or under the performance gate; drift rules need "
              f"{decision.rules.min_window_rows} predictions. retrain_on_drift: "
              f"{html.fmt(decision.retrain_on_drift)}.</p>")


def render_report(report: MonitoringReport) -> str:
    d = report.decision
    evidently = report.evidently
    return html.page(
        f"Monitoring: {d.model_name} v{d.model_version} · {d.window}",
        render_decision(d),
        html.heading("Inference log"), render_log_summary(report.log),
        html.heading("Schema check"), render_schema_check(report.schema_check),
        html.heading("Data drift (churnops monitor, all rows)"), render_data_drift(report.data_drift),
        html.heading("Data drift (Evidently)"),
        f"<p>Drift share {_num(evidently.drift_share)}; drifted columns "
        f"{html.fmt(', '.join(evidently.drifted_columns) or 'none')} on {evidently.rows:,} rows. "
        f"{html.fmt(evidently.note)} The full report is the data_drift_report artifact.</p>",
        html.heading("Prediction drift"), render_prediction_drift(report.prediction_drift),
        html.heading("Live performance"), render_performance(report.performance),
        html.heading("Estimated performance (no labels needed)"), render_estimate(report.estimate, report.performance),
        html.heading("Trends across monitoring runs"), render_trends(report.trends),
    )


def render_alert(delivery: AlertDelivery) -> str:
    if not delivery.raised:
        return html.page("Alert", "<p class='ok'>No alert was raised.</p>")
    return html.page("Alert", html.cards({"channels": ", ".join(delivery.channels),
                                          "webhook": delivery.webhook_status or "not configured"}),
                     f"<p>Alert log: {html.fmt(delivery.alert_log)}</p>")


# --- terminal ------------------------------------------------------------------------------

def format_console(report: MonitoringReport) -> str:
    d, log, drift = report.decision, report.log, report.data_drift
    lines = [f"Monitoring {d.model_name} v{d.model_version}: {log.describe()}"]
    if d.window_rows == 0:
        lines.append(f"  {d.message}")
        return "\n".join(lines)
    lines.append(f"  ACTION: {d.action.upper()} - {d.message}")
    lines += [f"    - {r}" for r in d.reasons]
    lines.append("")
    lines.append(f"  Data drift: {len(drift.drifted_features)} of {len(drift.features)} features drifted "
                 f"(share {drift.drift_share:.2f}); Evidently: share {_num(report.evidently.drift_share, 2)}, "
                 f"{', '.join(report.evidently.drifted_columns) or 'none'}")
    for f in drift.features:
        if f.drifted:
            lines.append(f"    {f.feature:<22} {f.headline():<40} {'; '.join(f.reasons)}")
    for name, why in drift.unchecked.items():
        lines.append(f"    {name:<22} not checked: {why}")
    p = report.prediction_drift
    lines.append(f"  Prediction drift: {'DRIFT' if p.drifted else 'stable'} (PSI {_num(p.psi)}, mean "
                 f"{_num(p.current_mean)} vs {_num(p.reference_mean)} on the test set, {p.rows:,} predictions "
                 f"of v{p.model_version})")
    perf = report.performance
    if perf.metrics is None:
        lines.append(f"  Live performance: {perf.note}")
    else:
        m = perf.metrics
        verdict = "BELOW GATE" if perf.below_gate else ("ok" if perf.judged else "too few labels to judge")
        lines.append(f"  Live performance on {perf.labelled_rows:,} labelled predictions of v{perf.model_version}: "
                     f"F1 {m.f1:.3f} (gate "
                     f"{perf.gate_f1:.3f}), ROC-AUC {_num(m.roc_auc)} (gate {perf.gate_roc_auc:.3f}), accuracy "
                     f"{m.accuracy:.3f}, precision {m.precision:.3f}, recall {m.recall:.3f}: {verdict}")
    if report.schema_check.blocking_issues:
        lines.append("  Schema mismatch between the inference log and the model:")
        lines += [f"    - {i.describe()}" for i in report.schema_check.blocking_issues]
    return "\n".join(lines)
