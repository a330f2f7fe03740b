"""``python run.py --pipeline training``: run the training pipeline and summarise it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from churnops.core.errors import MEANINGS, ExitCode, UserError
from churnops.core.settings import StatePaths
from churnops.platform.run_config import ConfigError, default_config, load_config, with_overrides, write_resolved
from churnops.reporting.summary import format_console, format_markdown, training_summary, write_json


def run_training(config_path: Path, paths: StatePaths, *, data: str | None = None, schema: Path | None = None,
                 rows: int | None = None, seed: int | None = None, no_cache: bool = False,
                 force_reason: str | None = None, target_stage: str | None = None) -> dict[str, Any]:
    """Run the training pipeline with overrides; return the flat summary.

    Raises ``churnops.data.validation.DataValidationError`` when the data fails validation.
    """
    try:
        config = with_overrides(load_config(config_path), data=data, schema=schema, rows=rows, seed=seed,
                                no_cache=no_cache, force_reason=force_reason, target_stage=target_stage)
    except ConfigError as error:
        raise UserError(str(error)) from error
    resolved = write_resolved(config, "training", paths)

    from pipelines.training import training_pipeline

    run = training_pipeline.with_options(config_path=str(resolved))()
    return summarise_run(run.id)


def _step_output(run: Any, step: str, name: str) -> Any:
    return run.steps[step].outputs[name][0].load()


def summarise_run(run_id: Any) -> dict[str, Any]:
    from zenml.client import Client

    client = Client()
    run = client.get_pipeline_run(run_id)
    decision = _step_output(run, "promote_model", "promotion_decision")
    evaluation = _step_output(run, "evaluate_model", "evaluation_report")
    version = client.get_model_version(decision.model_name, decision.model_version)
    tracker = client.active_stack.experiment_tracker
    mlflow_uri = tracker.get_tracking_uri() if tracker is not None else ""
    return training_summary(decision, evaluation, dict(version.run_metadata), {
        "run_name": run.name,
        "run_id": str(run.id),
        "stack": client.active_stack_model.name,
        "mlflow_tracking_uri": mlflow_uri,
        "mlflow_hint": mlflow_uri if mlflow_uri.startswith("http")
        else f"make mlflow-ui, then http://127.0.0.1:5000 (backend {mlflow_uri})",
        "dashboard_hint": _dashboard_hint(client, run.id),
    })


def _dashboard_hint(client: Any, run_id: Any) -> str:
    from zenml.enums import StoreType

    store = client.zen_store
    if store.type == StoreType.REST:
        return f"{store.url}/projects/default/runs/{run_id}"
    return "make dashboard (starts the local ZenML server; runs appear under Pipelines)"


def exit_code(summary: dict[str, Any], fail_on_reject: bool = False) -> ExitCode:
    """What a CI job sees (churnops.core.errors): 0 promoted, staged by the champion comparison or
    staged as a live challenger,
    4 the absolute gate rejected the candidate, 5 not promoted for any other reason (held back
    by its input contract; staged, with ``fail_on_reject``)."""
    verdict = summary["verdict"]
    if verdict == "promoted":
        return ExitCode.OK
    if verdict == "rejected":
        return ExitCode.GATE_REFUSED
    if verdict == "held" or fail_on_reject:
        return ExitCode.NOT_PROMOTED
    return ExitCode.OK


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.data.validation import DataValidationError

    config = args.config or default_config("training")
    try:
        summary = run_training(config, paths, data=args.data, schema=args.schema, rows=args.rows, seed=args.seed,
                               no_cache=args.no_cache, force_reason=args.reason if args.force else None)
    except DataValidationError as error:
        print(f"\n{error}\n\nNothing was trained or promoted; the production model is unchanged.")
        return ExitCode.INVALID_DATA
    print("\n" + format_console(summary))
    if args.summary_json:
        write_json(summary, args.summary_json)
        print(f"\nSummary written to {args.summary_json}")
    if args.report_md:
        args.report_md.parent.mkdir(parents=True, exist_ok=True)
        args.report_md.write_text(format_markdown(summary))
        print(f"Markdown report written to {args.report_md}")
    code = exit_code(summary, args.fail_on_reject)
    if code != ExitCode.OK:
        print(f"\nExit code {int(code)}: {MEANINGS[code]}")
    return code
