"""``python run.py --prune-logs`` and ``python run.py --forget-customer ID [ID ...]``.

Both work on the files under the state folder (no ZenML): the inference log where the service
writes it, the feedback log and the monitoring pipeline's retraining tables, located as the
monitoring pipeline locates them (configs/monitoring.yaml, else configs/serving.yaml).

An erasure is recorded in ``$CHURNOPS_HOME/audit/erasure.jsonl``: when, by which OS user, how
many customers and how many records of each log. Neither the ids nor their pseudonyms are
written: a pseudonym is a stable identifier that anyone with the salt can test an id against,
so keeping it would keep a trace of exactly the person who asked to be forgotten. Which
customer a request was about belongs to the ticket of the request, not to this state folder.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from churnops.core.errors import UserError
from churnops.core.settings import StatePaths
from churnops.monitoring.retention import ErasureSummary, enforce_retention, forget_customers
from churnops.platform.run_config import ConfigError, default_config, load_config
from churnops.serving.config import RetentionOptions, ServingConfig, load_serving_config

SET_RETENTION = ("set retention.retention_days in configs/serving.yaml (or parameters.retention_days in "
                 "configs/monitoring.yaml), or pass --retention-days N")


def resolve_retention_days(configured: Any, serving: ServingConfig | None = None) -> int | None:
    """``configured`` (the monitoring config's ``parameters.retention_days``) if set, else the
    serving config's ``retention.retention_days`` (the log's own setting); None keeps everything."""
    if configured is None:
        return (serving or load_serving_config()).retention.retention_days
    try:
        return RetentionOptions(retention_days=configured).retention_days
    except ValidationError as error:
        problem = error.errors()[0]["msg"]
        raise UserError(f"monitoring config: parameters.retention_days: {problem} (got {configured!r})") from None


def monitoring_parameters(config_path: Path | None) -> dict[str, Any]:
    try:
        config = load_config(config_path or default_config("monitoring"))
    except ConfigError as error:
        raise UserError(str(error)) from error
    params = config.get("parameters") or {}
    return {**params, "production_days": (config.get("retraining") or {}).get("production_days", 30)}


def log_locations(params: dict[str, Any], serving: ServingConfig, paths: StatePaths) -> tuple[Path, Path]:
    """The inference log folder and the feedback log, as the monitoring pipeline resolves them."""
    log_dir = Path(params.get("log_dir") or serving.inference_log.resolved_directory(paths)).expanduser()
    feedback = Path(params.get("feedback_path") or paths.feedback_log).expanduser()
    return log_dir, feedback


def prune(args: argparse.Namespace, paths: StatePaths) -> int:
    serving = load_serving_config()
    params = monitoring_parameters(args.config)
    days = args.retention_days or resolve_retention_days(params.get("retention_days"), serving)
    if days is None:
        raise UserError(f"no retention period configured, nothing was pruned: {SET_RETENTION}")
    log_dir, feedback = log_locations(params, serving, paths)
    summary = enforce_retention(log_dir, feedback, days)
    print(summary.describe())
    print(f"Inference log {log_dir}; feedback log {feedback}")
    if days < float(params["production_days"]):
        print(f"Note: retraining takes labelled production rows from the last {params['production_days']} days "
              f"(retraining.production_days); a retention of {days} days leaves it fewer.")
    if summary.problems:
        raise UserError(f"retention incomplete: {'; '.join(summary.problems[:5])}")
    return 0


def _running_service_flush_seconds(paths: StatePaths, serving: ServingConfig) -> float | None:
    """The flush interval of a live local deployment (its record's pid runs), else None."""
    try:
        pid = int(json.loads(paths.deployment_file.read_text())["pid"])
        os.kill(pid, 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return serving.inference_log.flush_seconds


def salt_available(paths: StatePaths, serving: ServingConfig) -> bool:
    options = serving.pseudonymisation
    return bool(os.environ.get(options.salt_env)) or (paths.home / options.salt_file).is_file()


def operator() -> str:
    """The OS user running the command (recorded as who erased)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name and no passwd entry (some containers)
        return f"uid {os.getuid()}"


def append_audit(path: Path, entry: dict[str, Any]) -> None:
    """One JSON line, appended in a single write (concurrent appends do not interleave)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, (json.dumps(entry, sort_keys=True) + "\n").encode())
    finally:
        os.close(fd)


def describe_erasure(summary: ErasureSummary) -> list[str]:
    log = summary.inference_log
    lines = [
        f"Forgot {summary.customers} customer id(s): {summary.records_removed:,} records removed.",
        f"  Inference log {summary.log_dir}: {log.records_removed + log.late_records_removed:,} records "
        f"({log.late_records_removed:,} written during the erasure); {log.files_rewritten} files rewritten, "
        f"{log.files_removed} removed (nothing else in them), {log.files_examined} examined",
        f"  Feedback log {summary.feedback_path}: {summary.feedback_records_removed:,} records",
        f"  Retraining tables: {summary.retraining_records_removed:,} rows from {summary.retraining_tables_rewritten} "
        "table(s)" + (f"; {summary.retraining_tables_unmatchable} table(s) without an id column could not be "
                      "searched" if summary.retraining_tables_unmatchable else ""),
    ]
    if log.unreadable_files:
        lines.append(f"  INCOMPLETE: {len(log.unreadable_files)} log file(s) could not be read and may still hold "
                     "their records: " + "; ".join(log.unreadable_files[:5]))
    if log.unfinished_files_skipped:
        lines.append(f"  INCOMPLETE: {log.unfinished_files_skipped} unfinished log file(s) (dot-names: being written "
                     "now, or left by a crash) were not examined: run again once the service has flushed, and "
                     "delete leftovers of a crash")
    return lines


def forget(args: argparse.Namespace, paths: StatePaths) -> int:
    ids = [str(i) for i in args.forget_customer]
    if any(not i.strip() for i in ids):
        raise UserError("--forget-customer: every customer id must be non-empty; nothing was erased")
    serving = load_serving_config()
    if not salt_available(paths, serving):
        options = serving.pseudonymisation
        raise UserError(f"the customer-id salt is not available (${options.salt_env} is unset and "
                        f"{paths.home / options.salt_file} does not exist), so the log's pseudonyms cannot be "
                        f"matched; set the salt the service uses and run again. Nothing was erased")
    from churnops.serving.pseudonym import customer_keys_function

    log_dir, feedback = log_locations(monitoring_parameters(args.config), serving, paths)
    flush_seconds = _running_service_flush_seconds(paths, serving)

    def settle() -> None:
        # Records of these customers scored just before now may still be in the service's buffer.
        if flush_seconds is not None:
            print(f"A local service is running: waiting {flush_seconds + 1:g} s for its next flush ...")
            time.sleep(flush_seconds + 1)

    summary = forget_customers(ids, customer_keys_function(paths), log_dir, feedback, paths.retraining_dir,
                               settle=settle)
    append_audit(paths.erasure_audit_log, summary.audit_entry(operator()))
    print("\n".join(describe_erasure(summary)))
    print(f"Audit entry appended to {paths.erasure_audit_log} (counts only: no id, no pseudonym).")
    if flush_seconds is None:
        print(f"If a service elsewhere writes to this log, it holds up to {serving.inference_log.flush_seconds:g} s "
              "of records in memory: run this command again after that long to catch any it wrote since.")
    print("Not covered: copies in the ZenML artifact store (monitoring windows, training sets of models "
          "retrained on production rows) and the original training data.")
    return 0
