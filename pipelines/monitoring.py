from typing import Any

from zenml import get_pipeline_context, pipeline

from steps.monitoring import (
    build_evidently_reports,
    compare_live_versions,
    decide_action,
    detect_feature_drift,
    detect_output_drift,
    enforce_retention,
    estimate_live_performance,
    load_feedback,
    load_inference_window,
    load_monitoring_history,
    score_live_performance,
    send_alert,
)
from steps.promotion.promote_on_evidence import promote_on_evidence


@pipeline(name="churn_monitoring")
def monitoring_pipeline(
    log_dir: str,
    feedback_path: str,
    alert_log: str,
    window_hours: float | None = 24.0,
    last: int | None = None,
    thresholds: dict[str, Any] | None = None,
    gate: dict[str, Any] | None = None,
    rules: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
    retrain_on_drift: bool = False,
    webhook_url: str | None = None,
    retention_days: int | None = None,
    rollout: dict[str, Any] | None = None,
    live_rollout: dict[str, Any] | None = None,
) -> None:
    """Window of served predictions vs the production version's training data → decision → alert.

    The model version (production, through the Model Control Plane) and every parameter come
    from configs/monitoring.yaml; retraining, when decided, is started by the caller. Records older
    than ``retention_days`` are removed first, so nothing past its retention period is read. With a
    challenger served beside production (``live_rollout``, from the deployment), the two are compared
    on live traffic and the challenger is promoted or rolled back by the ``rollout`` rules.
    """
    model = get_pipeline_context().model
    dataset_schema = model.get_artifact("dataset_schema")
    retention = enforce_retention(log_dir, feedback_path, retention_days)
    # The window is a manifest of log files (and a sample for Evidently): the rows stay in the log
    # and each step streams the files it needs.
    window, window_sample, log_read_summary, schema_check = load_inference_window(
        dataset_schema, log_dir, window_hours, last, report, after=retention)
    feedback = load_feedback(feedback_path, after=retention)
    data_drift = detect_feature_drift(window, model.get_artifact("reference_profile"), dataset_schema, schema_check,
                                      thresholds)
    prediction_drift = detect_output_drift(window, model.get_artifact("test_predictions"), thresholds)
    live_performance = score_live_performance(window, feedback, gate)
    estimated_performance = estimate_live_performance(window, model.get_artifact("test_predictions"))
    monitoring_history = load_monitoring_history()
    data_drift_report, _data_summary_report = build_evidently_reports(window_sample, window,
                                                                      model.get_artifact("train_set"),
                                                                      dataset_schema, report)
    monitoring_decision, _monitoring_report = decide_action(log_read_summary, schema_check, data_drift,
                                                            prediction_drift, live_performance, data_drift_report,
                                                            estimated_performance, monitoring_history, rules,
                                                            retrain_on_drift)
    send_alert(monitoring_decision, alert_log, webhook_url)
    live_comparison = compare_live_versions(log_dir, feedback, live_rollout, rollout)
    promote_on_evidence(live_comparison, rollout)
