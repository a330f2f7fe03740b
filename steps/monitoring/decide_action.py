from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step

from churnops.monitoring.decision import DecisionRules, MonitoringDecision, decide
from churnops.monitoring.drift import DataDriftResult, PredictionDrift
from churnops.monitoring.estimation import LabelFreeEstimate
from churnops.monitoring.evidently_reports import EvidentlyReport
from churnops.monitoring.inference_log import LogReadSummary, SchemaCheck
from churnops.monitoring.performance import LivePerformance
from churnops.monitoring.report import EvidentlySummary, MonitoringReport
from churnops.monitoring.trends import MonitoringHistory, TrendPoint, ordered
from materializers.monitoring import MonitoringDecisionMaterializer, MonitoringReportMaterializer
from steps.monitoring.model_facts import model_facts


@step(output_materializers={"monitoring_decision": MonitoringDecisionMaterializer,
                            "monitoring_report": MonitoringReportMaterializer})
def decide_action(
    log_read_summary: LogReadSummary, schema_check: SchemaCheck, data_drift: DataDriftResult,
    prediction_drift: PredictionDrift, live_performance: LivePerformance, data_drift_report: EvidentlyReport,
    estimated_performance: LabelFreeEstimate, monitoring_history: MonitoringHistory,
    rules: dict[str, Any] | None = None, retrain_on_drift: bool = False, trend_points: int = 30,
) -> tuple[Annotated[MonitoringDecision, "monitoring_decision"], Annotated[MonitoringReport, "monitoring_report"]]:
    """Nothing, alert or retrain; the key figures go on the run and on the model version.

    The report adds the label-free estimate beside the realised metrics, and the trend of this run
    and the previous ones (at most ``trend_points``).
    """
    facts = model_facts()
    estimate = estimated_performance.metrics
    decision = decide(facts.name, facts.version, log_read_summary, schema_check, data_drift, prediction_drift,
                      live_performance, DecisionRules.model_validate(rules or {}), retrain_on_drift,
                      data_drift_report.drift_share, data_drift_report.drifted_columns,
                      estimated_f1=estimate.f1 if estimate else None)
    trends = ordered([*monitoring_history.points, TrendPoint.of(decision)], trend_points)
    figures = {k: v for k, v in decision.key_figures().items() if v is not None}
    figures["trend_runs"] = len(trends)
    log_metadata(metadata=figures, run_id_name_or_prefix=get_step_context().pipeline_run.id)
    log_metadata(metadata={"monitoring": {**figures, "checked_at": decision.checked_at.isoformat()}},
                 infer_model=True)
    report = MonitoringReport(decision=decision, log=log_read_summary, schema_check=schema_check,
                              data_drift=data_drift, prediction_drift=prediction_drift,
                              performance=live_performance, evidently=EvidentlySummary.of(data_drift_report),
                              estimate=estimated_performance, trends=trends)
    return decision, report
