"""Helpers shared by tests: run the CLI or query ZenML in a separate, isolated process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pandas as pd

from churnops.core.settings import PROJECT_ROOT, StatePaths, environment
from churnops.data.schema import DatasetSchema, load_schema
from churnops.data.synthetic import DefectSpec, SyntheticSpec, generate_customers
from churnops.data.validation import validate_and_clean


def run_cli(paths: StatePaths, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    """Run ``python run.py ...`` as a user would, against the state folder ``paths``."""
    env = {**os.environ, **environment(paths)}
    return subprocess.run([sys.executable, str(PROJECT_ROOT / "run.py"), *args], cwd=PROJECT_ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


_MODEL_VERSIONS_SCRIPT = """
import json
from zenml.client import Client
out = []
for version in Client().list_model_versions(model="churn_classifier", size=100):
    out.append({"number": version.number, "stage": getattr(version.stage, "value", version.stage),
                "metadata": dict(version.run_metadata),
                "artifacts": sorted(version.data_artifact_ids) + sorted(version.model_artifact_ids)})
print("JSON:" + json.dumps(out, default=str))
"""


def model_versions(paths: StatePaths) -> list[dict[str, Any]]:
    """Model versions of ``churn_classifier`` in the ZenML store of ``paths``, oldest first."""
    env = {**os.environ, **environment(paths)}
    result = subprocess.run([sys.executable, "-c", _MODEL_VERSIONS_SCRIPT], cwd=PROJECT_ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    if result.returncode:
        raise RuntimeError(f"querying model versions failed:\n{result.stderr[-3000:]}")
    line = next(line for line in result.stdout.splitlines() if line.startswith("JSON:"))
    return sorted(json.loads(line[5:]), key=lambda v: v["number"])


def clean_customers(rows: int = 2000, seed: int = 7, **defects: Any) -> tuple[pd.DataFrame, DatasetSchema]:
    """A cleaned synthetic frame and its schema."""
    schema = load_schema("synthetic")
    frame = generate_customers(SyntheticSpec(rows=rows, seed=seed, defects=DefectSpec(**defects)))
    cleaned, _ = validate_and_clean(frame, schema)
    return cleaned, schema
