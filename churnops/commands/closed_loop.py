"""``python run.py --pipeline simulate --loop --requests N --drift high``: the closed loop, stage by stage.

1. **Serve**: the running local deployment, or production started on ``loop.host:loop.port``.
2. **Traffic**: N simulated customers (``--drift``) with their outcomes in the feedback log.
3. **Monitor**: the monitoring pipeline on that traffic; drift → retraining → the gate → a winner
   staged as the challenger and deployed beside production (``retraining.deploy_challenger``).
4. **Evidence**: N more customers with outcomes, now scored by both versions.
5. **Decide**: the monitoring pipeline again; ``promote_on_evidence`` promotes the challenger,
   rolls it back, or waits for more labels.

Every stage is the ordinary command underneath (simulate, monitoring, deploy), so what the loop
prints is what a team running them by hand (or from a scheduler) would see.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field

from churnops.core.errors import ExitCode, UserError
from churnops.core.settings import PROJECT_ROOT, StatePaths
from churnops.monitoring.simulator import SimulatorSettings
from churnops.platform.run_config import ConfigError, default_config, load_config


class LoopSettings(BaseModel):
    """The ``loop:`` section of configs/simulate.yaml."""

    model_config = ConfigDict(extra="forbid")

    monitoring_config: str = Field("configs/monitoring.yaml", description="project-relative or absolute")
    # How the retrained winner is served beside production; overrides retraining.deploy_challenger.
    deploy_challenger: str = Field("shadow", pattern="^(shadow|canary)$")
    canary_percent: float = Field(10.0, gt=0, lt=100)
    host: str = "127.0.0.1"
    port: int = Field(3000, ge=1, le=65535, description="where production is served if nothing runs yet")
    log_wait_seconds: float = Field(60.0, gt=0, description="how long to wait for the service's log to be written")


def stage(number: int, title: str) -> None:
    print(f"\n=== [{number}/5] {title}", flush=True)


def monitoring_config_for(settings: LoopSettings, paths: StatePaths, *, retrain: bool, name: str) -> Path:
    """The monitoring config with the loop's switches: retraining on drift, and how a winner is served."""
    source = Path(settings.monitoring_config)
    source = source if source.is_absolute() else PROJECT_ROOT / source
    try:
        config = copy.deepcopy(load_config(source))
    except ConfigError as error:
        raise UserError(str(error)) from error
    config.setdefault("parameters", {})["retrain_on_drift"] = retrain
    retraining = config.setdefault("retraining", {})
    retraining["deploy_challenger"] = settings.deploy_challenger
    retraining["canary_percent"] = settings.canary_percent
    folder = paths.home / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"loop-{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def ensure_serving(paths: StatePaths, settings: LoopSettings) -> Any:
    """The running deployment, or production started (through the gate) if none runs."""
    from churnops.platform import deployment

    record = deployment.running_deployment(paths)
    if record is not None:
        print(f"Production v{record.model_version} is serving at {record.url}.")
        return record
    try:
        version = deployment.get_version(deployment.MODEL_NAME, None)
        deployment.authorize(version, "deploy")
        packaged = deployment.package_version(version)
        record = deployment.start_service(paths, packaged.bento_tag, packaged.model_version, settings.host,
                                          settings.port)
    except deployment.GateRefused as refusal:
        raise UserError(str(refusal), ExitCode.GATE_REFUSED) from None
    except deployment.DeploymentError as error:
        raise UserError(str(error)) from None
    print(f"Started production v{record.model_version} at {record.url} (pid {record.pid}; "
          "stop it with python run.py --pipeline deploy --stop).")
    return record


def wait_for_log(log_dir: Path, expected_ids: int, timeout: float) -> int:
    """Wait until ``expected_ids`` distinct request ids are in the inference log (the service
    writes it every few seconds), then one more flush period for the shadow writer; returns the count."""
    from churnops.monitoring.inference_log import logged_request_ids
    from churnops.serving.config import load_serving_config

    flush = load_serving_config().inference_log.flush_seconds
    deadline = time.monotonic() + timeout
    count = len(logged_request_ids(log_dir))
    while count < expected_ids and time.monotonic() < deadline:
        time.sleep(0.5)
        count = len(logged_request_ids(log_dir))
    if count < expected_ids:
        raise UserError(f"the inference log {log_dir} holds {count:,} request ids after {timeout:.0f} s, "
                        f"expected {expected_ids:,}: is the service writing its log? (configs/serving.yaml)")
    time.sleep(flush + 0.5)
    return count


def send(paths: StatePaths, requests: int, drift: str, simulator: SimulatorSettings, url: str,
         log_dir: Path, settings: LoopSettings) -> dict[str, Any]:
    from churnops.commands.simulate import simulate
    from churnops.monitoring.inference_log import logged_request_ids
    from churnops.monitoring.simulator import TrafficResult

    before = len(logged_request_ids(log_dir))
    summary = simulate(paths, requests, drift, url=url, feedback=True, settings=simulator)
    # Seeded runs: the next stage gets other customers (a challenger is never judged on the rows it trained on).
    if simulator.seed is not None:
        simulator.seed += 1
    result = TrafficResult.model_validate(summary)
    print(f"Sent {requests:,} customers (drift: {drift}): {result.describe()}; "
          f"{summary['labels_written']:,} outcomes written to the feedback log.")
    if result.served == 0:
        raise UserError(f"no request was served by {url}: {result.errors}")
    wait_for_log(log_dir, before + result.served, settings.log_wait_seconds)
    return summary


def run_loop(paths: StatePaths, requests: int, drift: str, simulator: SimulatorSettings,
             settings: LoopSettings) -> dict[str, Any]:
    """The five stages; returns what each one found (flat, for --summary-json)."""
    from churnops.commands.monitoring import inference_log_dir, run_monitoring

    log_dir = inference_log_dir(paths)
    loop: dict[str, Any] = {"drift": drift, "requests_per_stage": requests,
                            "deploy_challenger": settings.deploy_challenger}

    stage(1, "Serve production")
    record = ensure_serving(paths, settings)
    loop["production_version"] = record.model_version

    stage(2, f"Traffic: {requests:,} customers, drift {drift}, with their outcomes")
    loop["traffic"] = send(paths, requests, drift, simulator, record.url, log_dir, settings)

    stage(3, "Monitor: drift and live performance -> retrain -> gate -> challenger beside production")
    watched = monitoring_config_for(settings, paths, retrain=True, name="retrain")
    # The last N predictions: the answers' log holds one row per request (shadow scores live apart), and a
    # time window would start when the command did, not when the pipeline's step reads the log.
    first = run_monitoring(watched, paths, last=requests)
    loop["monitoring"] = _monitoring_figures(first)
    challenger = first.get("challenger_version") if first.get("challenger_deployed") else None
    loop["retrained_version"], loop["retrained_verdict"] = first.get("retrained_version"), first.get(
        "retrained_verdict")
    if first.get("action") != "retrain":
        print(f"\nMonitoring decided '{first.get('action')}': no retraining, so the loop ends here "
              "(send drifted traffic to see it all: --drift high).")
        return {**loop, "outcome": "no_retraining"}
    if challenger is None:
        print(f"\nThe retrained version {first.get('retrained_version')} is {first.get('retrained_verdict')}: "
              "it did not become a live challenger, so production stays as it is and the loop ends here.")
        return {**loop, "outcome": f"retrained_{first.get('retrained_verdict')}"}
    loop["challenger_version"] = challenger

    stage(4, f"Evidence: {requests:,} more customers, scored by production and challenger v{challenger}")
    loop["evidence_traffic"] = send(paths, requests, drift, simulator, record.url, log_dir, settings)

    stage(5, "Decide on live evidence (promote_on_evidence)")
    judged = monitoring_config_for(settings, paths, retrain=False, name="evidence")
    second = run_monitoring(judged, paths, last=requests)
    loop["evidence_monitoring"] = _monitoring_figures(second)
    action = second.get("rollout_action") or "none"
    loop["outcome"] = {"promote": "promoted", "rollback": "rolled_back"}.get(action, action)
    loop["rollout_reasons"] = second.get("rollout_reasons")
    words = {"promote": f"challenger v{challenger} PROMOTED to production on live evidence",
             "rollback": f"challenger v{challenger} ROLLED BACK: production stays as it was",
             "wait": f"not enough live evidence yet: challenger v{challenger} keeps running beside production "
                     "(send more traffic, then python run.py --pipeline monitoring)"}
    print(f"\nLoop outcome: {words.get(action, action)}.")
    return loop


def _monitoring_figures(summary: dict[str, Any]) -> dict[str, Any]:
    keys = ("action", "model_version", "drift_share", "live_f1", "estimated_f1", "retrained_version",
            "retrained_verdict", "challenger_version", "challenger_deployed", "rollout_action",
            "rollout_reasons", "live_f1_difference", "run_name")
    return {key: summary.get(key) for key in keys if key in summary}


def load_all_settings(path: Path) -> tuple[SimulatorSettings, LoopSettings]:
    """The traffic settings and the ``loop:`` section of a simulate config."""
    from churnops.commands.simulate import load_settings

    try:
        _rest, loop = split_settings(load_config(path))
    except ConfigError as error:
        raise UserError(str(error)) from error
    return load_settings(path), loop


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    """``python run.py --pipeline simulate --loop --requests N [--drift LEVEL]``."""
    if args.requests is None:
        raise UserError("--pipeline simulate --loop needs --requests N (customers per traffic stage)")
    traffic, loop = load_all_settings(args.config or default_config("simulate"))
    summary = run_loop(paths, args.requests, args.drift, traffic, loop)
    if args.summary_json:
        args.summary_json.parent.mkdir(parents=True, exist_ok=True)
        args.summary_json.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 0


def split_settings(config: dict[str, Any]) -> tuple[dict[str, Any], LoopSettings]:
    """configs/simulate.yaml without its ``loop:`` section, and that section validated."""
    rest = dict(config)
    try:
        return rest, LoopSettings.model_validate(rest.pop("loop", None) or {})
    except ValueError as error:
        raise UserError(f"simulate config, loop: {error}") from error
