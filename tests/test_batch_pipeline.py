"""The batch inference pipeline end to end, as a user runs it after `make run`.

One trained store (``trained_home``: ``run.py --pipeline training --config configs/training-fast.yaml``,
shared by the test session), then real ``run.py --pipeline batch_inference`` processes: the default
synthetic batch, the retention list's files and artifact, and bad input (exit 3, nothing written).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from churnops.core.settings import PROJECT_ROOT, StatePaths, environment
from churnops.data.schema import load_schema
from churnops.data.synthetic import SyntheticSpec, generate_customers
from tests.support import run_cli

pytestmark = pytest.mark.slow

COLUMNS = ["rank", "customer_id", "churn_probability", "contact", "expected_net_gain", "reason_1", "reason_2",
           "reason_3", "reason_1_contribution", "reason_2_contribution", "reason_3_contribution"]

_LOAD_ARTIFACT = """
import json
from zenml.client import Client
from zenml.enums import ModelStages
version = Client().get_model_version("churn_classifier", ModelStages.PRODUCTION)
artifact = version.get_artifact("retention_list")
listing = artifact.load()
frame = listing.to_pandas()
summary = version.get_artifact("batch_summary")
print("JSON:" + json.dumps({"version": version.number, "rows": len(frame), "columns": list(frame.columns),
                            "path": listing.path, "type": str(artifact.type),
                            "summary_visualizations": [str(v.type) for v in summary.visualizations or []]}))
"""


def _query(paths: StatePaths) -> dict:
    result = subprocess.run([sys.executable, "-c", _LOAD_ARTIFACT], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            env={**os.environ, **environment(paths)}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(next(line for line in result.stdout.splitlines() if line.startswith("JSON:"))[5:])


def test_batch_inference_writes_a_ranked_explained_list_linked_to_the_production_version(
        trained_home: StatePaths, tmp_path: Path) -> None:
    summary_file = tmp_path / "summary.json"
    result = run_cli(trained_home, "--pipeline", "batch_inference", "--summary-json", str(summary_file))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    summary = json.loads(summary_file.read_text())
    listing = Path(summary["list_path"])
    assert f"Retention list (10,000 customers, {summary['contacts']:,} to contact): {listing}" in result.stdout
    assert listing.parent == trained_home.home / "batch" and listing.name == summary["run_name"]
    frame = pd.read_parquet(listing / "parquet")
    csv = pd.read_csv(listing / "retention_list.csv", keep_default_na=False)
    assert list(frame.columns) == COLUMNS and list(csv.columns) == COLUMNS and len(frame) == len(csv) == 10_000
    assert frame["rank"].tolist() == list(range(1, 10_001)) and frame["customer_id"].is_unique
    assert frame["contact"].sum() == summary["contacts"] > 0 and summary["decision"] == "value"
    assert frame.loc[frame["contact"], "reason_1"].str.contains(" = ").all()
    assert summary["drift_verdict"] == "none" and summary["model_version"] == "1"

    linked = _query(trained_home)
    assert linked["version"] == 1 and linked["rows"] == 10_000 and linked["columns"] == COLUMNS
    assert linked["path"] == str(listing) and "DataArtifact" in linked["type"]
    assert linked["summary_visualizations"] == ["html"]
    assert not any((trained_home.home / "batch" / ".staging").iterdir())  # staging cleaned up


def test_bad_input_exits_3_naming_file_and_column_and_writes_nothing(trained_home: StatePaths,
                                                                     tmp_path: Path) -> None:
    schema = load_schema("synthetic")
    frame = generate_customers(SyntheticSpec(rows=1000, seed=11)).drop(columns=[schema.target.column])
    missing = tmp_path / "no_tenure.csv"
    frame.drop(columns=["tenure_months"]).to_csv(missing, index=False)
    output = tmp_path / "list"
    result = run_cli(trained_home, "--pipeline", "batch_inference", "--input", str(missing), "--output", str(output))
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"{missing}: column 'tenure_months': required column is missing" in result.stdout
    assert "Nothing was written." in result.stdout and not output.exists()

    # Wrong values fail inside the pipeline's validate step: same exit code, nothing at --output.
    wrong = tmp_path / "wrong_type.csv"
    frame.assign(monthly_charges=["about fifty"] * 1000).to_csv(wrong, index=False)
    result = run_cli(trained_home, "--pipeline", "batch_inference", "--input", str(wrong), "--output", str(output))
    assert result.returncode == 3, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"Data validation failed for {wrong} (rows 1-1,000)" in result.stdout
    assert "column 'monthly_charges': rule 'numeric_type' violated" in result.stdout
    assert not output.exists() and not list(output.parent.glob(".list*"))
    assert not [p for p in (trained_home.home / "batch").iterdir() if not p.name.startswith(".")]
