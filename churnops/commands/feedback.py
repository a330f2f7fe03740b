"""``python run.py --feedback FILE``: ingest actual outcomes (CSV of ``id, outcome``).

An ``id`` that is a request id in the inference log joins that prediction; any other id is a
customer id, pseudonymised with the deployment's salt (as the service does) so it joins that
customer's predictions. A file with any bad row is refused as a whole, naming the rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from churnops.core.errors import UserError
from churnops.core.settings import StatePaths
from churnops.monitoring.feedback import FeedbackError, FeedbackIngest, append_feedback, parse_feedback_csv
from churnops.monitoring.inference_log import logged_request_ids


def ingest(path: Path, paths: StatePaths) -> FeedbackIngest:
    from churnops.commands.monitoring import inference_log_dir
    from churnops.serving.pseudonym import customer_keys_function

    try:
        records, by_request, by_customer = parse_feedback_csv(
            path, logged_request_ids(inference_log_dir(paths)), customer_keys_function(paths))
    except FeedbackError as error:
        raise UserError(str(error)) from error
    total = append_feedback(paths.feedback_log, records)
    return FeedbackIngest(file=str(path), rows=len(records), by_request_id=by_request, by_customer_id=by_customer,
                          positives=int(records["outcome"].sum()), log_path=str(paths.feedback_log),
                          total_in_log=total)


def run(path: Path, args: argparse.Namespace, paths: StatePaths) -> int:
    result = ingest(path, paths)
    print(f"Ingested {result.rows:,} outcomes from {result.file} ({result.positives:,} churned): "
          f"{result.by_request_id:,} by request id, {result.by_customer_id:,} by customer id.\n"
          f"Feedback log {result.log_path} now holds {result.total_in_log:,} outcomes; "
          "`python run.py --pipeline monitoring` scores live performance on them.")
    return 0
