"""``python run.py --pipeline monitoring``: watch the production model, act on what is found.

1. Check that a production version with its training artifacts exists, and that the window
   holds predictions (an empty window is a message, not a failure).
2. Run the ``churn_monitoring`` pipeline: it reads the window, measures drift and live
   performance, decides (nothing / alert / retrain), records the figures on the run and on
   the model version, and sends the alert.
3. Continuous training lives here, after the pipeline: when the decision is ``retrain``
   (``retrain_on_drift: true``), the retraining table is built (labelled production rows plus
   a sample of the production version's training rows) and the ordinary training pipeline
   runs on it, through the same gate and champion/challenger comparison.
"""

from __future__ import annotations

import argparse
import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from churnops.commands.retention import resolve_retention_days
from churnops.core.errors import UserError
from churnops.core.settings import PROJECT_ROOT, StatePaths
from churnops.data.schema import DatasetSchema
from churnops.monitoring.decision import DecisionRules
from churnops.monitoring.drift import DriftThresholds
from churnops.monitoring.evidently_reports import ReportSettings
from churnops.monitoring.inference_log import WindowSpec, window_has_rows
from churnops.monitoring.live_comparison import RolloutRules
from churnops.monitoring.performance import PerformanceGate
from churnops.monitoring.report import MonitoringReport, format_console, render_report
from churnops.monitoring.retraining import RetrainingData, RetrainingSettings
from churnops.platform.run_config import ConfigError, default_config, load_config, write_resolved

REQUIRED_ARTIFACTS = ("dataset_schema", "reference_profile", "test_predictions", "train_set")
SECTIONS: dict[str, type[BaseModel]] = {"thresholds": DriftThresholds, "rules": DecisionRules,
                                        "gate": PerformanceGate, "report": ReportSettings,
                                        "rollout": RolloutRules}
TRAIN_FIRST = "python run.py --pipeline training"
Section = TypeVar("Section", bound=BaseModel)


def monitoring_dir(paths: StatePaths) -> Path:
    return paths.home / "monitoring"


def inference_log_dir(paths: StatePaths) -> Path:
    """Where the service writes its log (configs/serving.yaml or its environment override)."""
    from churnops.serving.config import load_serving_config

    return load_serving_config().inference_log.resolved_directory(paths)


def _validated(model: type[Section], data: dict[str, Any] | None, where: str) -> Section:
    """``data`` as ``model``, or a one-line UserError naming each bad key under ``where``."""
    try:
        return model.model_validate(data or {})
    except ValidationError as error:
        problems = "; ".join(f"{where}.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise UserError(f"monitoring config: {problems}") from error


def resolve_config(config: dict[str, Any], paths: StatePaths, *, window_hours: float | None = None,
                   last: int | None = None, no_cache: bool = False) -> tuple[dict[str, Any], RetrainingSettings]:
    """Split off the ``retraining`` section, apply the window overrides and the state paths."""
    resolved = copy.deepcopy(config)
    retraining = _validated(RetrainingSettings, resolved.pop("retraining", None), "retraining")
    params = resolved.setdefault("parameters", {})
    if window_hours is not None:
        params["window_hours"], params["last"] = window_hours, None
    elif last is not None:
        params["window_hours"], params["last"] = None, last
    try:
        WindowSpec(hours=params.get("window_hours"), last=params.get("last"))
    except ValueError as error:
        raise UserError(f"monitoring window: {error} (set parameters.window_hours or parameters.last)") from error
    # Check every section here, so a typo is one line now rather than a failed step later.
    for section, model in SECTIONS.items():
        _validated(model, params.get(section), f"parameters.{section}")
    params["log_dir"] = str(Path(params.get("log_dir") or inference_log_dir(paths)).expanduser())
    params["feedback_path"] = str(Path(params.get("feedback_path") or paths.feedback_log).expanduser())
    params["alert_log"] = str(Path(params.get("alert_log") or monitoring_dir(paths) / "alerts.jsonl").expanduser())
    params["retention_days"] = resolve_retention_days(params.get("retention_days"))
    if no_cache:
        resolved["enable_cache"] = False
    return resolved, retraining


def require_production(model_name: str) -> Any:
    """The production version, with every artifact monitoring needs, or a clear UserError."""
    from zenml.client import Client
    from zenml.enums import ModelStages

    try:
        version = Client().get_model_version(model_name, ModelStages.PRODUCTION)
    except KeyError:
        raise UserError(f"no production version of model '{model_name}' to monitor: run `{TRAIN_FIRST}` first "
                        "(a version that passes the gate is promoted to production)") from None
    missing = [name for name in REQUIRED_ARTIFACTS if version.get_artifact(name) is None]
    if missing:
        raise UserError(f"production version {version.number} of '{model_name}' has no {', '.join(missing)} "
                        f"artifact (missing reference data): retrain with `{TRAIN_FIRST}`, which records them")
    return version


def _step_output(run: Any, step: str, name: str) -> Any:
    outputs = run.steps[step].outputs[name]
    return (outputs[0] if isinstance(outputs, list) else outputs).load()


def export_reports(run: Any, report: MonitoringReport, folder: Path) -> dict[str, str]:
    """Copy the HTML reports of ``run`` (``report``: its monitoring report) to ``folder`` for a
    browser without the dashboard."""
    folder.mkdir(parents=True, exist_ok=True)
    drift = _step_output(run, "build_evidently_reports", "data_drift_report")
    summary = _step_output(run, "build_evidently_reports", "data_summary_report")
    files = {"monitoring_report": render_report(report), "data_drift_report": drift.html,
             "data_summary_report": summary.html}
    written = {}
    for name, page in files.items():
        path = folder / f"{name}.html"
        path.write_text(page)
        written[name] = str(path)
    return written


def labelled_production_rows(log_dir: Path, feedback_path: Path, schema: DatasetSchema,
                             settings: RetrainingSettings) -> Any:
    from churnops.monitoring.feedback import read_feedback
    from churnops.monitoring.retraining import production_training_rows
    from churnops.monitoring.window import scan_window, window_labelled_rows

    # Streamed: only the labelled rows of the last production_days are held in memory.
    manifest, *_ = scan_window(log_dir, WindowSpec(hours=settings.production_days * 24), schema, sample_rows=1)
    labelled = window_labelled_rows(manifest, read_feedback(feedback_path), schema)
    return production_training_rows(labelled, schema, settings.max_production_rows)


def build_retraining_data(model_version: Any, params: dict[str, Any], settings: RetrainingSettings,
                          paths: StatePaths) -> RetrainingData:
    """Labelled production rows plus the production version's training rows, written for training."""
    import pandas as pd

    from churnops.monitoring.retraining import write_training_table

    schema: DatasetSchema = model_version.get_artifact("dataset_schema").load()
    reference = pd.concat([model_version.get_artifact("train_set").load(),
                           model_version.get_artifact("test_set").load()], ignore_index=True)
    production = labelled_production_rows(Path(params["log_dir"]), Path(params["feedback_path"]), schema, settings)
    folder = paths.retraining_dir / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    return write_training_table(reference, production, schema, settings, folder)


def retrain(model_version: Any, params: dict[str, Any], settings: RetrainingSettings,
            paths: StatePaths) -> dict[str, Any]:
    """Run the training pipeline on fresh data; return what happened (flat)."""
    from churnops.commands.training import run_training
    from churnops.data.validation import DataValidationError

    data = build_retraining_data(model_version, params, settings, paths)
    print(f"\nRetraining on {data.rows:,} rows: {data.production_rows:,} labelled production rows + "
          f"{data.reference_rows:,} rows of version {model_version.number}'s training data ({data.data_path})")
    outcome: dict[str, Any] = {"retrain_triggered": True, "retraining_rows": data.rows,
                               "retraining_production_rows": data.production_rows,
                               "retraining_data": data.data_path}
    try:
        summary = run_training(PROJECT_ROOT / settings.training_config, paths, data=data.data_path,
                               schema=Path(data.schema_path),
                               target_stage="staging" if settings.deploy_challenger != "off" else None)
    except DataValidationError as error:
        print(f"\n{error}\n\nThe retraining data failed validation: nothing was trained or promoted.")
        return {**outcome, "retrained_version": None, "retrained_verdict": "validation_failed"}
    from churnops.reporting.summary import format_console as training_console

    print("\n" + training_console(summary))
    outcome.update({"retrained_version": summary["model_version"], "retrained_verdict": summary["verdict"],
                    "retrained_stage": summary["stage"], "retrained_f1": summary["f1"],
                    "retraining_run": summary["run_name"]})
    # Passed the gate (won offline, or lost on a test set still mostly of the old world): live traffic decides.
    if settings.deploy_challenger != "off" and summary["verdict"] in ("challenger", "staged"):
        outcome.update(deploy_challenger(str(summary["model_version"]), settings, paths))
    return outcome


def deploy_challenger(version: str, settings: RetrainingSettings, paths: StatePaths) -> dict[str, Any]:
    """The closed loop: serve a retrained winner beside production (shadow or canary) in the running
    local deployment; without one, say how to start the rollout."""
    from churnops.platform import deployment

    mode = settings.deploy_challenger
    command = (f"python run.py --pipeline deploy --serve --shadow {version}" if mode == "shadow"
               else f"python run.py --pipeline deploy --serve --canary {settings.canary_percent:g} "
                    f"--challenger {version}")
    if deployment.running_deployment(paths) is None:
        print(f"\n  Version {version} is staged as the challenger; no local deployment is running. "
              f"Start the rollout with: {command}")
        return {"challenger_version": version, "challenger_deployed": False, "challenger_command": command}
    try:
        challenger = deployment.get_version(deployment.MODEL_NAME, version)
        record = deployment.start_rollout(paths, challenger, mode,
                                          percent=settings.canary_percent if mode == "canary" else None)
    except deployment.DeploymentError as error:  # the gate's refusal included: production keeps serving alone
        print(f"\n  Version {version} is staged but was not deployed as the challenger: {error}")
        return {"challenger_version": version, "challenger_deployed": False, "challenger_error": str(error)}
    share = f" ({record.canary_percent:g} % of customers)" if mode == "canary" else ""
    print(f"\n  Challenger v{version} deployed in {mode}{share} beside production v{record.model_version} at "
          f"{record.url}; promote_on_evidence decides once labelled traffic comes back "
          "(python run.py --pipeline monitoring).")
    return {"challenger_version": version, "challenger_deployed": True, "rollout_mode": mode,
            "rollout_id": record.rollout_id}


def live_rollout(paths: StatePaths) -> dict[str, Any] | None:
    """The running deployment's challenger, as the monitoring pipeline's ``live_rollout``."""
    from churnops.platform.deployment import current_rollout

    record = current_rollout(paths)
    if record is None:
        return None
    return {"production_version": record.model_version, "challenger_version": record.challenger_version,
            "rollout_id": record.rollout_id, "mode": record.rollout_mode,
            "started_at": record.rollout_started_at or record.started_at, "canary_percent": record.canary_percent}


def apply_rollout_decision(run: Any, paths: StatePaths) -> dict[str, Any]:
    """Print the live comparison and the decision; after a promotion or rollback, serve production alone."""
    from churnops.monitoring.live_comparison import format_console as rollout_console
    from churnops.platform import deployment

    comparison = _step_output(run, "compare_live_versions", "live_comparison")
    decision = _step_output(run, "promote_on_evidence", "rollout_decision")
    figures: dict[str, Any] = decision.key_figures()
    for metric, interval in comparison.differences.items():
        figures[f"live_{metric}_difference"] = interval.estimate
        figures[f"live_{metric}_difference_low"] = interval.low
        figures[f"live_{metric}_difference_high"] = interval.high
    figures["live_labelled_pairs"] = comparison.labelled_pairs
    if decision.action == "none":
        return figures
    print("\n" + rollout_console(comparison, decision))
    if decision.applied:
        try:
            record = deployment.end_rollout(paths)
        except deployment.DeploymentError as error:
            print(f"  The service could not be switched: {error}")
            return {**figures, "rollout_service_switched": False}
        if record is not None:
            print(f"  The service at {record.url} now serves version {record.model_version} alone (pid {record.pid}).")
        figures["rollout_service_switched"] = record is not None
    return figures


def run_monitoring(config_path: Path, paths: StatePaths, *, window_hours: float | None = None,
                   last: int | None = None, no_cache: bool = False) -> dict[str, Any]:
    """The whole command: checks, pipeline, console report, retraining. Returns the flat summary."""
    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise UserError(str(error)) from error
    resolved, retraining = resolve_config(config, paths, window_hours=window_hours, last=last, no_cache=no_cache)
    params = resolved["parameters"]
    model_name = resolved.get("model", {}).get("name", "churn_classifier")
    version = require_production(model_name)
    params["live_rollout"] = live_rollout(paths)
    window = WindowSpec(hours=params.get("window_hours"), last=params.get("last"))
    if not window_has_rows(Path(params["log_dir"]), window):
        # No pipeline run, but retention still applies.
        from churnops.monitoring.retention import enforce_retention

        retention = enforce_retention(Path(params["log_dir"]), Path(params["feedback_path"]), params["retention_days"])
        if retention.enabled:
            print(retention.describe())
        message = (f"empty window: no predictions logged in the {window.describe()} under {params['log_dir']}; "
                   "nothing to monitor. Send traffic first (python run.py --pipeline simulate --requests 500) "
                   "or widen the window (--window-hours H, --last N).")
        print(f"Monitoring {model_name} v{version.number}: {message}")
        return {"model_name": model_name, "model_version": str(version.number), "window": window.describe(),
                "window_rows": 0, "drift_share": None, "drifted_features": [], "alert_count": 0,
                "action": "none", "message": message, "run_name": None}

    from pipelines.monitoring import monitoring_pipeline

    run = monitoring_pipeline.with_options(config_path=str(write_resolved(resolved, "monitoring", paths)))()
    if run is None:
        # A `schedule:` in the config: the orchestrator runs it later; retraining stays with run.py (cron).
        print(f"Monitoring of {model_name} scheduled on the active stack's orchestrator.")
        return {"model_name": model_name, "scheduled": True}
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    report: MonitoringReport = _step_output(run, "decide_action", "monitoring_report")
    delivery = _step_output(run, "send_alert", "alert_delivery")
    retention = _step_output(run, "enforce_retention", "retention_summary")
    print("\n" + format_console(report))
    if retention.enabled:
        print(f"\n  {retention.describe()}")
    if delivery.raised:
        where = ", ".join(delivery.channels)
        print(f"\n  Alert sent ({where}); alert log {delivery.alert_log}"
              + (f"; webhook {delivery.webhook_status}" if delivery.webhook_url else ""))
    reports = export_reports(run, report, monitoring_dir(paths) / "reports" / run.name)
    print(f"\n  Reports: {reports['monitoring_report']}\n           {reports['data_drift_report']}\n"
          f"           {reports['data_summary_report']}\n  ZenML    run {run.name} (make dashboard to browse)")
    summary: dict[str, Any] = {"model_name": model_name, "model_version": report.decision.model_version,
                               **report.decision.key_figures(), "reasons": report.decision.reasons,
                               "run_name": run.name, "run_id": str(run.id), "alert_channels": delivery.channels,
                               "reports": reports, "retrain_triggered": False, "trend_runs": len(report.trends),
                               "retention_days": retention.retention_days,
                               "retention_partitions_removed": retention.partitions_removed,
                               "retention_feedback_records_removed": retention.feedback_records_removed}
    summary.update(apply_rollout_decision(run, paths))
    rollout_running = params["live_rollout"] is not None and summary.get("rollout_action") in ("wait", "none")
    if report.decision.action == "retrain" and rollout_running:
        print(f"\n  Retraining is not started while challenger v{params['live_rollout']['challenger_version']} "
              "is being judged on live traffic; the rollout decides first.")
    elif report.decision.action == "retrain":
        outcome = retrain(version, params, retraining, paths)
        summary.update(outcome)
        from zenml import log_metadata

        log_metadata(metadata={k: v for k, v in outcome.items() if v is not None}, run_id_name_or_prefix=run.id)
    elif report.decision.retrain_recommended:
        print("\n  Retraining is recommended but not configured: set parameters.retrain_on_drift: true in "
              "configs/monitoring.yaml, or run `python run.py --pipeline training` yourself.")
    return summary


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    config = args.config or default_config("monitoring")
    summary = run_monitoring(config, paths, window_hours=args.window_hours, last=args.last, no_cache=args.no_cache)
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
        print(f"\nSummary written to {args.summary_json}")
    return 0
