"""From monitoring figures to what the project does: nothing, alert, or retrain.

Retraining is warranted when the share of drifted features exceeds ``drift_share``, when the
drift alerts (drifted features plus drifted predictions) reach ``max_alerts``, or when live
performance is under the gate. Drift rules need ``min_window_rows`` predictions; a schema
mismatch between log and model alerts but does not retrain (a new model would not fix the
caller). The action is ``retrain`` only when ``retrain_on_drift`` is set, ``alert`` otherwise.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from churnops.monitoring.drift import DataDriftResult, PredictionDrift
from churnops.monitoring.inference_log import LogReadSummary, SchemaCheck
from churnops.monitoring.performance import LivePerformance

Action = Literal["none", "alert", "retrain"]


class DecisionRules(BaseModel):
    model_config = ConfigDict(extra="forbid")

    drift_share: float = Field(0.3, ge=0, le=1, description="retrain above this share of drifted features")
    max_alerts: int = Field(3, ge=1, description="retrain at this many drift alerts")
    min_window_rows: int = Field(200, ge=1, description="predictions needed before drift rules apply")


class MonitoringDecision(BaseModel):
    model_name: str
    model_version: str
    checked_at: datetime
    window: str
    window_rows: int
    drift_share: float
    drifted_features: list[str]
    alert_count: int
    prediction_drift: bool
    labelled_rows: int
    performance_judged: bool
    performance_below_gate: bool
    live_f1: float | None = None
    live_roc_auc: float | None = None
    # Label-free estimate (churnops.monitoring.estimation) and the share predicted to churn.
    estimated_f1: float | None = None
    prediction_rate: float | None = None
    schema_issues: list[str] = Field(default_factory=list)
    malformed_records: int = 0
    skipped_files: int = 0
    evidently_drift_share: float | None = None
    evidently_drifted_columns: list[str] = Field(default_factory=list)
    retrain_recommended: bool
    retrain_on_drift: bool
    alert: bool
    action: Action
    reasons: list[str] = Field(default_factory=list)
    message: str
    rules: DecisionRules

    def key_figures(self) -> dict[str, Any]:
        """Flat figures for run / model-version metadata and ``--summary-json``."""
        return {
            "window": self.window,
            "window_rows": self.window_rows,
            "drift_share": self.drift_share,
            "drifted_features": self.drifted_features,
            "alert_count": self.alert_count,
            "prediction_drift": self.prediction_drift,
            "labelled_rows": self.labelled_rows,
            "live_f1": self.live_f1,
            "live_roc_auc": self.live_roc_auc,
            "estimated_f1": self.estimated_f1,
            "prediction_rate": self.prediction_rate,
            "performance_below_gate": self.performance_below_gate,
            "schema_issues": len(self.schema_issues),
            "malformed_records": self.malformed_records,
            "evidently_drift_share": self.evidently_drift_share,
            "action": self.action,
            "retrain_recommended": self.retrain_recommended,
            "message": self.message,
        }


def alert_headline(alert_count: int, max_alerts: int) -> str:
    """The lab's one-liner."""
    if alert_count == 0:
        return "no drift alerts"
    noun = "drift alert" if alert_count == 1 else "drift alerts"
    if alert_count >= max_alerts:
        return f"{alert_count} {noun}: analysis and retraining recommended"
    return f"{alert_count} {noun}: keep watching"


def decide(model_name: str, model_version: str, log: LogReadSummary, schema_check: SchemaCheck,
           data_drift: DataDriftResult, prediction_drift: PredictionDrift, performance: LivePerformance,
           rules: DecisionRules, retrain_on_drift: bool, evidently_drift_share: float | None = None,
           evidently_drifted_columns: list[str] | None = None, now: datetime | None = None,
           estimated_f1: float | None = None) -> MonitoringDecision:
    reasons: list[str] = []
    window_rows = log.rows_in_window
    alert_count = len(data_drift.drifted_features) + int(prediction_drift.drifted)
    retrain = False
    enough_rows = window_rows >= rules.min_window_rows
    if window_rows == 0:
        message = f"empty window: no predictions logged in the {log.window}; nothing to monitor"
    else:
        message = alert_headline(alert_count, rules.max_alerts)
        if not enough_rows and alert_count:
            reasons.append(f"window too small for a drift verdict ({window_rows} < {rules.min_window_rows} "
                           "predictions): drift figures are indicative only")
        if enough_rows and data_drift.drift_share > rules.drift_share:
            retrain = True
            reasons.append(f"drift share {data_drift.drift_share:.2f} > {rules.drift_share:.2f} "
                           f"({', '.join(data_drift.drifted_features)})")
        if enough_rows and alert_count >= rules.max_alerts:
            retrain = True
            reasons.append(f"{alert_count} drift alerts >= {rules.max_alerts}")
        if enough_rows and prediction_drift.drifted:
            reasons.extend(prediction_drift.reasons)
    if performance.below_gate:
        retrain = True
        reasons.extend(performance.reasons)
    elif performance.note and window_rows:
        reasons.append(f"live performance: {performance.note}")
    schema_issues = [i.describe() for i in schema_check.blocking_issues]
    if schema_issues:
        reasons.append(f"inference log does not match the model's schema in {len(schema_issues)} column(s)")
    alert = retrain or bool(schema_issues)
    action: Action = "retrain" if retrain and retrain_on_drift else "alert" if alert else "none"
    if window_rows and action == "retrain":
        message += "; retraining triggered"
    elif window_rows and retrain:
        message += "; retraining recommended (retrain_on_drift is off)"
    elif window_rows and schema_issues:
        message += "; schema mismatch"
    metrics = performance.metrics
    return MonitoringDecision(
        model_name=model_name, model_version=model_version, checked_at=now or datetime.now(UTC),
        window=log.window, window_rows=window_rows, drift_share=data_drift.drift_share,
        drifted_features=data_drift.drifted_features, alert_count=alert_count,
        prediction_drift=prediction_drift.drifted, labelled_rows=performance.labelled_rows,
        performance_judged=performance.judged, performance_below_gate=performance.below_gate,
        live_f1=metrics.f1 if metrics else None, live_roc_auc=metrics.roc_auc if metrics else None,
        estimated_f1=estimated_f1, prediction_rate=prediction_drift.current_positive_rate,
        schema_issues=schema_issues, malformed_records=log.rows_malformed, skipped_files=log.files_skipped,
        evidently_drift_share=evidently_drift_share, evidently_drifted_columns=evidently_drifted_columns or [],
        retrain_recommended=retrain, retrain_on_drift=retrain_on_drift, alert=alert, action=action,
        reasons=reasons, message=message, rules=rules,
    )
