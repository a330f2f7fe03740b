"""``python run.py --pipeline simulate --requests N [--drift none|low|high] [--feedback] [--url URL] [--loop]``.

Sends N synthetic customers to the running service (by default the local deployment that
``deploy --serve`` recorded), optionally drifted, and with ``--feedback`` writes their actual
outcomes to the feedback log, keyed by the request ids the simulator sent. ``--loop`` walks the
closed loop stage by stage instead (churnops/commands/closed_loop.py).
"""

from __future__ import annotations

import argparse
import json
import secrets
from pathlib import Path
from typing import Any

import requests
from pydantic import ValidationError

from churnops.core.errors import UserError
from churnops.core.settings import StatePaths
from churnops.data.schema import DATASETS_DIR, DatasetSchema, load_schema
from churnops.data.synthetic import SyntheticSpec, generate_customers
from churnops.monitoring.simulator import (
    SimulatorSettings,
    TrafficResult,
    labelled_subset,
    new_request_ids,
    request_payloads,
    send_traffic,
)
from churnops.platform.deployment import read_record
from churnops.platform.run_config import ConfigError, default_config, load_config

DEPLOY_FIRST = "python run.py --pipeline deploy --serve"


def deployed_url(paths: StatePaths) -> str:
    record = read_record(paths)
    if record is None:
        raise UserError(f"no running local deployment is recorded ({paths.deployment_file}): start one with "
                        f"`{DEPLOY_FIRST}`, or pass --url of a running service")
    return record.url


def served_model(url: str, timeout: float) -> dict[str, Any]:
    """The service's /model_info, or a UserError saying it is not reachable."""
    try:
        response = requests.get(url.rstrip("/") + "/model_info", timeout=timeout)
        response.raise_for_status()
        return response.json()
    except (requests.RequestException, ValueError) as error:
        raise UserError(f"the service at {url} does not answer /model_info ({type(error).__name__}: {error}); "
                        f"is it running? Start it with `{DEPLOY_FIRST}`") from error


def simulated_schema(info: dict[str, Any]) -> DatasetSchema:
    """The dataset schema of the served model, if the simulator can generate its customers."""
    dataset = str(info.get("dataset", ""))
    schema = load_schema(dataset) if (DATASETS_DIR / f"{dataset}.yaml").is_file() else None
    if schema is None or schema.source.kind != "synthetic":
        raise UserError(f"the served model (v{info.get('model_version')}) was trained on dataset '{dataset}'; "
                        "the simulator generates customers of the synthetic dataset only")
    expected = set(info.get("features", {}))
    if expected and expected != set(schema.feature_names):
        raise UserError(f"the service expects features {sorted(expected)}, the simulator generates "
                        f"{sorted(schema.feature_names)}")
    return schema


def load_settings(path: Path) -> SimulatorSettings:
    """The traffic settings of a simulate config (its ``loop:`` section is the closed loop's)."""
    try:
        traffic = {key: value for key, value in load_config(path).items() if key != "loop"}
        return SimulatorSettings.model_validate(traffic)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise UserError(f"{path}: {problems}") from error
    except ConfigError as error:
        raise UserError(str(error)) from error


def simulate(paths: StatePaths, requests_count: int, drift: str, *, url: str | None = None,
             feedback: bool = False, settings: SimulatorSettings | None = None) -> dict[str, Any]:
    settings = settings or SimulatorSettings()
    if drift not in settings.drift_levels:
        raise UserError(f"unknown drift level '{drift}': use one of {sorted(settings.drift_levels)}")
    url = url or deployed_url(paths)
    info = served_model(url, settings.timeout_seconds)
    schema = simulated_schema(info)
    seed = settings.seed if settings.seed is not None else secrets.randbelow(10_000)
    # Customers with ids unique to the seed, and the outcome each will have (``churned``).
    customers = generate_customers(SyntheticSpec(rows=requests_count, seed=seed, drift=settings.drift_levels[drift]))
    request_ids = new_request_ids(len(customers))
    result, served = send_traffic(url, request_payloads(customers, schema, request_ids), settings)
    summary: dict[str, Any] = {**result.model_dump(), "drift": drift, "seed": seed,
                               "served_model_version": info.get("model_version"), "labels_written": 0}
    if feedback and served.any():
        summary.update(write_labels(paths, customers, request_ids, served, settings, seed, schema))
    return summary


def write_labels(paths: StatePaths, customers: Any, request_ids: list[str], served: Any,
                 settings: SimulatorSettings, seed: int, schema: DatasetSchema) -> dict[str, Any]:
    from churnops.monitoring.feedback import append_feedback, feedback_records
    from churnops.serving.pseudonym import customer_keys_function

    chosen = labelled_subset(served, settings.label_share, seed)
    customer_keys = customer_keys_function(paths)
    ids = customers[schema.id_column] if schema.id_column else None
    labelled_ids = [r for r, keep in zip(request_ids, chosen, strict=True) if keep]
    keys = customer_keys(ids[chosen].tolist()) if ids is not None else [None] * len(labelled_ids)
    total = append_feedback(paths.feedback_log,
                            feedback_records(labelled_ids, keys, customers[schema.target.column][chosen]))
    return {"labels_written": len(labelled_ids), "feedback_log": str(paths.feedback_log), "feedback_total": total}


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    if args.requests is None:
        raise UserError("--pipeline simulate needs --requests N (how many customers to send)")
    settings = load_settings(args.config or default_config("simulate"))
    summary = simulate(paths, args.requests, args.drift, url=args.url, feedback=args.feedback is True,
                       settings=settings)
    result = TrafficResult.model_validate(summary)
    print(f"Simulated traffic (drift: {args.drift}, seed {summary['seed']}) against model "
          f"v{summary['served_model_version']}: {result.describe()}")
    if summary["labels_written"]:
        print(f"Wrote {summary['labels_written']:,} outcomes to the feedback log {summary['feedback_log']} "
              f"({summary['feedback_total']:,} in total).")
    print("The service writes its inference log every few seconds; then run `python run.py --pipeline monitoring`.")
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    if result.served == 0:
        raise UserError(f"no request was served by {result.url}: {result.errors}")
    return 0
