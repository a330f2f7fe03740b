"""Write N logged predictions of the production model (contract format) and outcomes for some.

    python bench/monitoring/make_log.py ROWS LOG_DIR FEEDBACK_PATH [--drift SEVERITY] [--labelled SHARE]

Runs against $CHURNOPS_HOME (set by the caller). Customers come from churnops.data.synthetic with
mild drift by default; files hold 50,000 rows, as the service's writer flushes them. Rows are
made in blocks of ``--block`` customers (each block its own seed), so 10M rows fit in memory.
"""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from churnops.core.settings import configure_environment


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("rows", type=int)
    parser.add_argument("log_dir", type=Path)
    parser.add_argument("feedback_path", type=Path)
    parser.add_argument("--drift", type=float, default=0.5)
    parser.add_argument("--labelled", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--block", type=int, default=1_000_000)
    args = parser.parse_args()
    configure_environment()
    from zenml.client import Client
    from zenml.enums import ModelStages

    from churnops.data.synthetic import DriftSpec, SyntheticSpec, generate_customers
    from churnops.monitoring.feedback import feedback_records, write_feedback
    from churnops.monitoring.inference_log import write_partitioned

    version = Client().get_model_version("churn_classifier", ModelStages.PRODUCTION)
    model = version.get_model_artifact("churn_classifier").load()
    schema = version.get_artifact("dataset_schema").load()
    threshold = float(version.run_metadata["decision_threshold"])
    # Spread over the last 12 hours, so the window (24 h) spans one or two day partitions.
    end = datetime.now(UTC) - timedelta(minutes=1)
    seconds = np.linspace(0, 12 * 3600, args.rows)
    rng = np.random.default_rng(args.seed)
    outcomes: list[pd.DataFrame] = []
    files = 0
    for offset in range(0, args.rows, args.block):
        rows = min(args.block, args.rows - offset)
        customers = generate_customers(SyntheticSpec(rows=rows, seed=args.seed + offset // args.block,
                                                     drift=DriftSpec(severity=args.drift, concept=args.drift)))
        probabilities = model.predict_proba(customers[schema.feature_names])[:, 1]
        log = customers[schema.feature_names].copy()
        log["request_id"] = [f"bench-{args.seed}-{i}" for i in range(offset, offset + rows)]
        log["timestamp"] = pd.Timestamp(end - timedelta(hours=12)) + pd.to_timedelta(
            seconds[offset:offset + rows], unit="s")
        log["model_name"] = version.model.name
        log["model_version"] = str(version.number)
        log["customer_key"] = None
        log["probability"] = probabilities
        log["label"] = (probabilities >= threshold).astype(int)
        files += len(write_partitioned(log, args.log_dir, "bench", rows_per_file=50_000))
        labelled = rng.random(rows) < args.labelled
        outcomes.append(feedback_records(log["request_id"][labelled], [None] * int(labelled.sum()),
                                         customers["churned"][labelled]))
    feedback = pd.concat(outcomes, ignore_index=True)
    write_feedback(args.feedback_path, feedback)
    print(f"wrote {args.rows} rows in {files} files, {len(feedback)} outcomes")


if __name__ == "__main__":
    main()
