"""churnops command line: pick a pipeline and a config, apply overrides, run.

    python run.py --pipeline training [--config PATH] [--data synthetic|telco|PATH] [--rows N]
    python run.py --pipeline deploy [--version N] [--serve | --stop] [--force --reason TEXT]
    python run.py --pipeline deploy --serve --shadow VERSION | --canary PERCENT [--challenger VERSION]
    python run.py --pipeline deploy --k8s-manifests DIR [--version N] [--image IMAGE] [--replicas N]
    python run.py --pipeline rollback [--to VERSION] [--reason TEXT] [--force]
    python run.py --pipeline monitoring [--window-hours H | --last N]
    python run.py --pipeline simulate --requests N [--drift none|low|high] [--feedback] [--loop]
    python run.py --pipeline batch_inference [--input FILE|DIR] [--schema PATH] [--version N] [--output DIR]
    python run.py --models | --feedback FILE | --stack NAME
    python run.py --prune-logs [--retention-days N] | --forget-customer ID [ID ...]

Run ``python run.py --help`` for every option.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from churnops.core.errors import UserError
from churnops.core.errors import describe as describe_exit_codes

PIPELINES = ("training", "deploy", "rollback", "monitoring", "simulate", "batch_inference")


def existing_file(value: str) -> Path:
    path = Path(value).expanduser()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"file not found: {value}")
    return path


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return number


def positive_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value}") from None
    if number <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {value}")
    return number


def canary_percent(value: str) -> float:
    number = positive_float(value)
    if number >= 100:
        raise argparse.ArgumentTypeError(f"a canary share is below 100 (promotion makes it all traffic): {value}")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="run.py", description="churnops: train, serve and monitor a churn model on ZenML.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="State lives in $CHURNOPS_HOME (default: .churnops/ in the project).\n\nExit codes:\n"
               + describe_exit_codes(),
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument("--pipeline", choices=PIPELINES, help="pipeline or action to run (default: training)")
    action.add_argument("--models", action="store_true", help="list model versions with stage, metrics and Bento tag")
    action.add_argument("--model-card", nargs="?", const="production", metavar="VERSION",
                        help="print the model card (Markdown) of VERSION (default: the production version)")
    action.add_argument("--prune-logs", action="store_true",
                        help="delete inference-log days and feedback older than the retention period")
    action.add_argument("--forget-customer", nargs="+", metavar="ID",
                        help="erase every inference-log, feedback and retraining record of these customer ids "
                             "(audited in $CHURNOPS_HOME/audit/erasure.jsonl, counts only)")
    parser.add_argument("--feedback", nargs="?", const=True, metavar="FILE",
                        help="alone: ingest a CSV of actual outcomes (columns: id, outcome); "
                             "with --pipeline simulate and no FILE: also write outcome labels")

    general = parser.add_argument_group("general")
    general.add_argument("--config", type=existing_file, metavar="PATH",
                         help="pipeline config YAML (default: configs/<pipeline>.yaml)")
    general.add_argument("--stack", metavar="NAME",
                         help="register (idempotently) and activate configs/stacks/NAME.yaml first")
    general.add_argument("--no-cache", action="store_true", help="disable step caching for this run")
    general.add_argument("--summary-json", type=Path, metavar="PATH", help="write the run summary as flat JSON")

    training = parser.add_argument_group("training")
    training.add_argument("--data", metavar="SOURCE",
                          help="synthetic | telco | a dataset schema YAML | a CSV/Parquet file (with --schema)")
    training.add_argument("--schema", type=existing_file, metavar="PATH",
                          help="dataset schema YAML describing the table given as --data PATH")
    training.add_argument("--rows", type=positive_int, metavar="N", help="rows of synthetic data")
    training.add_argument("--seed", type=int, metavar="N", help="seed of synthetic data")
    training.add_argument("--report-md", type=Path, metavar="PATH", help="write a Markdown metrics report")
    training.add_argument("--fail-on-reject", action="store_true",
                          help="exit 5 whenever the candidate is not promoted (also when it only lost the "
                               "champion comparison)")

    deploy = parser.add_argument_group("deploy / rollback")
    deploy.add_argument("--version", metavar="N", help="model version to deploy (default: production)")
    deploy.add_argument("--to", metavar="VERSION", help="version to roll back to (default: the previous production)")
    deploy.add_argument("--reason", metavar="TEXT",
                        help="why: recorded on both versions of a rollback, and on the version a --force overrides")
    deploy.add_argument("--force", action="store_true",
                        help="override the gate's refusal (training, deploy, rollback); needs --reason TEXT, "
                             "recorded on the version with who and when")
    serving = deploy.add_mutually_exclusive_group()
    serving.add_argument("--serve", action="store_true", help="start the service in the background")
    serving.add_argument("--stop", action="store_true", help="stop the running local deployment")
    rollout = deploy.add_mutually_exclusive_group()
    rollout.add_argument("--shadow", metavar="VERSION",
                         help="with --serve: serve production and let VERSION score every request off the response "
                              "path (both logged; monitoring compares them and promotes on evidence)")
    rollout.add_argument("--canary", type=canary_percent, metavar="PERCENT",
                         help="with --serve: VERSION of --challenger answers PERCENT %% of customers (stable by "
                              "pseudonymised id), production the rest; both score every request")
    deploy.add_argument("--challenger", metavar="VERSION",
                        help="with --canary: the challenger (default: the version in shadow now, else the newest "
                             "staging version)")
    deploy.add_argument("--host", default="127.0.0.1", help="host to serve on (default: 127.0.0.1)")
    deploy.add_argument("--port", type=positive_int, default=3000, help="port to serve on (default: 3000)")
    deploy.add_argument("--k8s-manifests", type=Path, metavar="DIR",
                        help="write Kubernetes manifests for the version's Bento into DIR instead of serving "
                             "(options: configs/kubernetes.yaml or --config PATH; docs/kubernetes.md)")
    deploy.add_argument("--image", metavar="IMAGE",
                        help="with --k8s-manifests: the container image (default: the bento tag, as "
                             "`bentoml containerize` names it)")
    deploy.add_argument("--replicas", type=positive_int, metavar="N",
                        help="with --k8s-manifests: pods that always run (the autoscaler's minimum)")

    monitoring = parser.add_argument_group("monitoring / simulate")
    window = monitoring.add_mutually_exclusive_group()
    window.add_argument("--window-hours", type=positive_float, metavar="H", help="monitor the last H hours of traffic")
    window.add_argument("--last", type=positive_int, metavar="N", help="monitor the last N predictions")
    monitoring.add_argument("--requests", type=positive_int, metavar="N", help="requests to simulate")
    monitoring.add_argument("--drift", choices=("none", "low", "high"), default="none",
                            help="drift of simulated traffic")
    monitoring.add_argument("--url", metavar="URL", help="service URL (default: the recorded local deployment)")
    monitoring.add_argument("--loop", action="store_true",
                            help="with --pipeline simulate: the closed loop, stage by stage: traffic with outcomes, "
                                 "monitoring -> retraining -> challenger beside production, more traffic, "
                                 "promotion on live evidence or rollback (loop: in configs/simulate.yaml)")

    batch = parser.add_argument_group("batch inference (--version N, --schema PATH also apply)")
    batch.add_argument("--input", type=Path, metavar="FILE|DIR",
                       help="customers to score: a CSV/Parquet file or a folder of parts (default: synthetic)")
    batch.add_argument("--output", type=Path, metavar="DIR",
                       help="where the retention list goes (default: $CHURNOPS_HOME/batch/<run name>/)")

    retention = parser.add_argument_group("retention / erasure")
    retention.add_argument("--retention-days", type=positive_int, metavar="N",
                           help="with --prune-logs: keep N days (default: retention.retention_days of "
                                "configs/serving.yaml)")
    return parser


def dispatch(args: argparse.Namespace) -> int:
    from churnops.core.settings import configure_environment

    paths = configure_environment()
    # Heavy imports only after the environment points every library at the state folder.
    from churnops import commands

    if args.retention_days is not None and not args.prune_logs:
        raise UserError("--retention-days only goes with --prune-logs")
    if (args.shadow or args.canary is not None) and not (args.pipeline == "deploy" and args.serve):
        raise UserError("--shadow and --canary go with --pipeline deploy --serve")
    if args.challenger is not None and args.canary is None:
        raise UserError("--challenger goes with --canary PERCENT (--shadow names its version itself)")
    if args.k8s_manifests is not None and args.pipeline != "deploy":
        raise UserError("--k8s-manifests DIR goes with --pipeline deploy")
    if (args.image is not None or args.replicas is not None) and args.k8s_manifests is None:
        raise UserError("--image and --replicas only go with --pipeline deploy --k8s-manifests DIR")
    if args.models:
        return commands.run_models(args, paths)
    if args.model_card is not None:
        from churnops.commands import model_card

        return model_card.run(args, paths)
    if args.prune_logs:
        return commands.run_prune_logs(args, paths)
    if args.forget_customer:
        return commands.run_forget_customer(args, paths)
    if isinstance(args.feedback, str) and args.pipeline is None:
        return commands.run_feedback(Path(args.feedback), args, paths)
    if args.loop and args.pipeline != "simulate":
        raise UserError("--loop goes with --pipeline simulate")
    if args.loop and args.url:
        raise UserError("--loop drives the local deployment; it does not take --url")
    if args.feedback is not None and args.pipeline != "simulate":
        raise UserError("--feedback without FILE only goes with --pipeline simulate")
    return commands.run_pipeline(args.pipeline or "training", args, paths)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.force and not (args.reason and args.reason.strip()):
        parser.error("--force needs --reason TEXT: why the gate is overridden (recorded on the version)")
    try:
        return dispatch(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return error.code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
