"""``python run.py --pipeline batch_inference [--input FILE|DIR] [--schema YAML] [--version N] [--output DIR]``.

1. Resolve the model version (production, or ``--version N``) and put it through the gate, like
   serving (``churnops.platform.deployment.authorize``): a refusal exits 4, nothing written.
2. Read its thresholds (``decision_threshold``, ``value_threshold``) and targeting from its run
   metadata; check the input's files and columns before any pipeline starts (exit 3 on bad input).
3. Run the ``churn_batch_inference`` pipeline on that exact version; print where the list is.
"""

from __future__ import annotations

import argparse
import copy
import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from churnops.core.errors import ExitCode, UserError
from churnops.core.settings import StatePaths
from churnops.platform.run_config import ConfigError, default_config, load_config, write_resolved

PIPELINE = "batch_inference"
DECISIONS = ("f1", "value", "budget")


def batch_root(paths: StatePaths) -> Path:
    return paths.home / "batch"


def resolve_targeting(config: dict[str, Any] | None, recorded: Any, decision: str | None) -> dict[str, Any]:
    """The targeting block: the config's, else what training recorded on the version; ``decision``
    (the config's top-level ``decision``) wins over the block's own."""
    from churnops.modeling.targeting import TargetingConfig

    block = config if config is not None else recorded
    if not isinstance(block, dict):
        raise UserError("no targeting configuration: the model version records none (train it again, or set "
                        "parameters.targeting in configs/batch_inference.yaml)")
    block = {**block, **({"decision": decision} if decision else {})}
    try:
        return TargetingConfig.model_validate(block).model_dump(mode="json")
    except ValidationError as error:
        problems = "; ".join(f"targeting.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise UserError(f"batch inference config: {problems}") from None


def resolve_config(config: dict[str, Any], version: Any, paths: StatePaths, *, input_path: Path | None,
                   schema_path: Path | None, output: Path | None, staging: Path,
                   no_cache: bool = False) -> dict[str, Any]:
    """The run config for ZenML: the exact version, its thresholds, targeting and the paths."""
    from churnops.batch.drift import DriftPolicy

    resolved = copy.deepcopy(config)
    resolved["model"] = {**resolved.get("model", {}), "version": int(version.number)}
    params = resolved.setdefault("parameters", {})
    decision = params.pop("decision", None)
    if decision is not None and decision not in DECISIONS:
        raise UserError(f"batch inference config: decision must be one of {', '.join(DECISIONS)}, got '{decision}'")
    if params.get("on_invalid", "fail") not in ("fail", "skip"):
        raise UserError(f"batch inference config: on_invalid must be fail or skip, got '{params['on_invalid']}'")
    try:
        DriftPolicy.model_validate(params.get("drift") or {})
    except ValidationError as error:
        problems = "; ".join(f"drift.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise UserError(f"batch inference config: {problems}") from None
    metadata = dict(version.run_metadata)
    targeting = resolve_targeting(params.pop("targeting", None), metadata.get("targeting"), decision)
    value_threshold = metadata.get("value_threshold")
    if targeting["decision"] == "value" and not isinstance(value_threshold, int | float):
        raise UserError(f"model version {version.number} has no value_threshold (it was trained without a "
                        "targeting block): use decision: f1 or budget, or train a new version")
    params.update({
        "targeting": targeting, "f1_threshold": float(metadata["decision_threshold"]),
        "value_threshold": float(value_threshold) if isinstance(value_threshold, int | float) else None,
        "input_path": str(input_path.resolve()) if input_path else None,
        "schema_path": str(schema_path.resolve()) if schema_path else None,
        "output_dir": str(output.resolve()) if output else None,
        "output_root": str(batch_root(paths)), "staging_dir": str(staging),
    })
    if no_cache:
        resolved["enable_cache"] = False
    return resolved


def precheck_input(version: Any, input_path: Path | None, schema_path: Path | None, output: Path | None) -> None:
    """Bad input and an occupied output folder fail here, before any pipeline starts."""
    if output is not None and output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise UserError(f"--output {output} already exists and is not an empty folder: choose another")
    if input_path is None:
        return
    from churnops.batch.inputs import open_batch, schema_for_batch

    schema = version.get_artifact("dataset_schema")
    if schema is None:
        raise UserError(f"model version {version.number} has no dataset_schema artifact: retrain it")
    open_batch(input_path, schema_for_batch(schema.load(), schema_path))


def _step_output(run: Any, step: str, name: str) -> Any:
    outputs = run.steps[step].outputs[name]
    return (outputs[0] if isinstance(outputs, list) else outputs).load()


def run_batch(config_path: Path, paths: StatePaths, *, version: str | None = None, input_path: Path | None = None,
              schema_path: Path | None = None, output: Path | None = None, no_cache: bool = False) -> Any:
    """The whole command; returns the run's ``BatchSummary``. Raises ``BatchDataError`` on bad input."""
    from churnops.platform import deployment

    try:
        config = load_config(config_path)
    except ConfigError as error:
        raise UserError(str(error)) from error
    model_name = config.get("model", {}).get("name", deployment.MODEL_NAME)
    configured = config.get("model", {}).get("version", "production")
    wanted = version or (None if str(configured) == "production" else str(configured))
    try:
        model_version = deployment.get_version(model_name, wanted)
        deployment.authorize(model_version, PIPELINE)
    except deployment.GateRefused as refusal:
        raise UserError(str(refusal), ExitCode.GATE_REFUSED) from None
    except deployment.DeploymentError as error:
        raise UserError(str(error)) from None
    precheck_input(model_version, input_path, schema_path, output)
    staging = batch_root(paths) / ".staging" / uuid.uuid4().hex[:12]
    resolved = resolve_config(config, model_version, paths, input_path=input_path, schema_path=schema_path,
                              output=output, staging=staging, no_cache=no_cache)
    from pipelines.batch_inference import batch_inference_pipeline

    try:
        run = batch_inference_pipeline.with_options(config_path=str(write_resolved(resolved, PIPELINE, paths)))()
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    from zenml.client import Client

    run = Client().get_pipeline_run(run.id)
    return run, _step_output(run, "score_batch", "batch_summary")


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    from churnops.batch.errors import BatchDataError

    config = args.config or default_config(PIPELINE)
    try:
        pipeline_run, summary = run_batch(config, paths, version=args.version, input_path=args.input,
                                          schema_path=args.schema, output=args.output, no_cache=args.no_cache)
    except BatchDataError as error:
        print(f"\n{error}\n\nNothing was written.")
        return ExitCode.INVALID_DATA
    listing = summary.retention_list
    print("\n" + summary.console())
    print(f"\n  ZenML    run {pipeline_run.name}: artifact 'retention_list' of {summary.model_name} "
          f"v{summary.model_version} (Client().get_artifact_version('retention_list').load().to_pandas())")
    print(f"\nRetention list ({listing.rows:,} customers, {listing.contacts:,} to contact): {listing.path}")
    print(f"  Parquet  {Path(listing.path) / 'parquet'}  ({len(listing.parquet_files)} part(s), sorted by rank)")
    if listing.csv_file:
        print(f"  CSV      {listing.csv_file}")
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps({**summary.key_figures(), "run_name": pipeline_run.name,
                                                 "csv_file": listing.csv_file}, indent=2, default=str) + "\n")
        print(f"\nSummary written to {args.summary_json}")
    return 0
