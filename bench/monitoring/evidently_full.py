"""Baseline: the naive monitor. Read the whole log into pandas and run Evidently's drift and
summary presets on every row (no sampling), saving both HTML reports.

    python bench/monitoring/evidently_full.py LOG_DIR REFERENCE_PARQUET OUT_DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pyarrow.dataset as pads

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from churnops.data.schema import load_schema


def main() -> None:
    log_dir, reference_path, out = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    schema = load_schema("synthetic")
    columns = schema.feature_names
    current = pads.dataset(log_dir, format="ipc", partitioning="hive").to_table(columns=columns).to_pandas()
    reference = pd.read_parquet(reference_path, columns=columns)
    definition = DataDefinition(numerical_columns=schema.numeric_names, categorical_columns=schema.categorical_names)
    current_data = Dataset.from_pandas(current, data_definition=definition)
    reference_data = Dataset.from_pandas(reference, data_definition=definition)
    out.mkdir(parents=True, exist_ok=True)
    drift = Report([DataDriftPreset(num_method="wasserstein", cat_method="jensenshannon")], include_tests=True)
    drift.run(current_data=current_data, reference_data=reference_data).save_html(str(out / "drift.html"))
    summary = Report([DataSummaryPreset()])
    summary.run(current_data=current_data, reference_data=reference_data).save_html(str(out / "summary.html"))
    print(f"evidently on {len(current)} rows")


if __name__ == "__main__":
    main()
