"""``python run.py --pipeline deploy [--version N] [--serve | --stop] [--host H] [--port P]``.

Builds the Bento of the production (or given) model version and records its tag on the
version; ``--serve`` then runs it in the background (replacing a running local deployment),
``--stop`` stops the running one. The version goes through the gate first
(``churnops.platform.deployment.authorize``); a refusal exits 4 and changes nothing unless ``--force
--reason TEXT``.
"""

from __future__ import annotations

import argparse
from typing import Any

from churnops.core.errors import ExitCode, UserError
from churnops.core.settings import StatePaths


def run(args: argparse.Namespace, paths: StatePaths) -> int:
    if getattr(args, "k8s_manifests", None) is not None:
        from churnops.commands import manifests

        return manifests.run(args, paths)
    from churnops.platform import deployment

    if getattr(args, "shadow", None) or getattr(args, "canary", None) is not None:
        return run_rollout(args, paths)
    if args.stop:
        stopped = deployment.stop_service(paths)
        if stopped is None:
            print("No local deployment is running.")
        else:
            print(f"Stopped the service at {stopped.url} (model version {stopped.model_version}, pid {stopped.pid}).")
        return 0
    try:
        version = deployment.get_version(deployment.MODEL_NAME, args.version)
        clearance = deployment.authorize(version, "deploy", force=args.force, reason=args.reason)
        stage = deployment.stage_of(version)
        if stage != "production":
            print(f"Note: version {version.number} is {stage or 'not staged'}, not production.")
        print(f"Version {version.number} serves the input contract {deployment.describe_version_contract(version)}.")
        packaged = deployment.package_version(version)
        print(f"Model version {packaged.model_version} packaged: BentoML model {packaged.bento_model_tag}, "
              f"Bento {packaged.bento_tag} (recorded on the model version as bento_tag).")
        if not args.serve:
            _record_override(clearance)
            print(f"Serve it: python run.py --pipeline deploy --serve   (or: bentoml serve {packaged.bento_tag})")
            return 0
        replaced = deployment.stop_service(paths)
        if replaced is not None:
            print(f"Stopped the previous deployment (model version {replaced.model_version}) at {replaced.url}.")
        record = deployment.start_service(paths, packaged.bento_tag, packaged.model_version, args.host, args.port)
        _record_override(clearance)
    except deployment.GateRefused as refusal:
        raise UserError(str(refusal), ExitCode.GATE_REFUSED) from None
    except deployment.DeploymentError as error:
        raise UserError(str(error)) from None
    print(f"Serving model version {record.model_version} at {record.url} (pid {record.pid}).")
    from churnops.serving.config import load_serving_config

    docs = f"Swagger UI: {record.url}/   " if load_serving_config().docs.enabled else ""
    print(f"  {docs}model info: {record.url}/model_info   metrics: {record.url}/metrics")
    print(f"  Server log: {record.log_file}")
    print("  Stop it:    python run.py --pipeline deploy --stop")
    return 0


def _record_override(clearance: Any) -> None:
    if clearance.record() is not None:
        print(f"GATE OVERRIDDEN ({', '.join(v.rule for v in clearance.overridden)}): recorded on version "
              f"{clearance.version.number} (see `python run.py --models`).")


def run_rollout(args: argparse.Namespace, paths: StatePaths) -> int:
    """``--serve --shadow VERSION`` or ``--serve --canary PERCENT [--challenger VERSION]``."""
    from churnops.platform import deployment

    mode = "shadow" if args.shadow else "canary"
    try:
        challenger = deployment.get_version(deployment.MODEL_NAME, args.shadow or args.challenger
                                            or default_challenger(paths))
        record = deployment.start_rollout(paths, challenger, mode, args.canary, force=args.force, reason=args.reason,
                                          host=args.host, port=args.port)
    except deployment.GateRefused as refusal:
        raise UserError(str(refusal), ExitCode.GATE_REFUSED) from None
    except deployment.DeploymentError as error:
        raise UserError(str(error)) from None
    share = f", answering {record.canary_percent:g} % of customers" if mode == "canary" else \
        ", scoring every request off the response path"
    print(f"Serving production version {record.model_version} at {record.url} (pid {record.pid}) with challenger "
          f"version {record.challenger_version} in {mode}{share}.")
    print(f"  Rollout {record.rollout_id}: both versions score every request; the other model's scores go to "
          "<inference log>/_shadow/, per-version counts and latency to <inference log>/_rollout/.")
    print("  Judge it: send traffic with outcomes, then python run.py --pipeline monitoring "
          "(promote_on_evidence promotes it, rolls it back, or waits for more labels).")
    print("  Stop it:  python run.py --pipeline deploy --serve   (production alone)")
    return 0


def default_challenger(paths: StatePaths) -> str:
    """The version in shadow now, else the newest staging version."""
    from churnops.platform import deployment

    running = deployment.current_rollout(paths)
    if running is not None and running.challenger_version:
        return running.challenger_version
    staged = [v for v in deployment.list_versions() if deployment.stage_of(v) == "staging"]
    if not staged:
        raise UserError("no challenger: name one with --challenger VERSION (no version is in shadow or staging; "
                        "see `python run.py --models`)")
    return str(staged[-1].number)
