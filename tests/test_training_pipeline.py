"""The training pipeline end to end, as a user runs it, in an isolated state folder."""

import json
from pathlib import Path

import mlflow
import pytest
import yaml

from churnops.core.errors import ExitCode
from churnops.core.settings import PROJECT_ROOT, StatePaths
from tests.support import model_versions, run_cli

pytestmark = pytest.mark.slow

FAST = PROJECT_ROOT / "configs" / "training-fast.yaml"
CONTRACT_METADATA = {"decision_threshold", "accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier",
                     "baseline_f1", "gate_f1", "gate_roc_auc", "gate_passed", "verdict", "reason", "dataset",
                     "data_source", "data_hash", "rows", "estimator", "git_commit", "library_versions", "trained_at",
                     "value_threshold", "targeting"}
LINKED_ARTIFACTS = {"raw_dataset", "dataset_schema", "clean_dataset", "validation_report", "reference_profile",
                    "train_set", "test_set", "churn_classifier", "search_summary", "evaluation_report",
                    "test_predictions", "promotion_decision", "model_card"}


def variant(tmp_path: Path, name: str, **changes) -> Path:
    """configs/training-fast.yaml with parameters changed per step."""
    config = yaml.safe_load(FAST.read_text())
    for step, parameters in changes.items():
        config["steps"][step]["parameters"].update(parameters)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def train(paths, tmp_path: Path, config: Path, name: str, *options: str) -> tuple[int, dict, str]:
    summary_path = tmp_path / f"{name}.json"
    result = run_cli(paths, "--pipeline", "training", "--config", str(config), "--summary-json", str(summary_path),
                     "--report-md", str(tmp_path / f"{name}.md"), *options)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return result.returncode, summary, result.stdout + result.stderr


def test_training_twice(fresh_home, tmp_path):
    # 1. First run: promoted, nothing to beat.
    code, first, output = train(fresh_home, tmp_path, FAST, "first")
    assert code == 0, output[-3000:]
    assert (first["model_version"], first["stage"], first["verdict"], first["gate_passed"]) == (
        "1", "production", "promoted", True)
    assert first["f1"] > first["baseline_f1"] and first["roc_auc"] > 0.75
    assert "PROMOTED" in output and "MLflow" in output
    assert "promoted to production" in (tmp_path / "first.md").read_text()
    # Value-based targeting: the model's list against everyone / no one / random, in both summaries.
    assert first["net_gain_model"] > first["net_gain_random"] and first["net_gain_no_one"] == 0
    assert "net gain" in output and "| contact everyone |" in (tmp_path / "first.md").read_text()

    # 2. Same data and code again: the challenger ties the champion, wins within tolerance.
    code, second, output = train(fresh_home, tmp_path, FAST, "second")
    assert code == 0, output[-3000:]
    assert (second["model_version"], second["stage"], second["previous_production_version"]) == (
        "2", "production", "1")
    assert second["previous_production_f1"] == pytest.approx(second["f1"])

    versions = model_versions(fresh_home)
    assert {v["number"]: v["stage"] for v in versions} == {1: "archived", 2: "production"}
    assert versions[1]["metadata"]["data_hash"] == versions[0]["metadata"]["data_hash"]
    targeting = versions[0]["metadata"]["targeting"]
    assert targeting["value"]["column"] == "monthly_charges" and targeting["decision"] == "value"
    assert 0 < versions[0]["metadata"]["value_threshold"] < 1
    assert_recorded_and_tracked(fresh_home, versions, trained=2)


def test_a_loser_then_bad_data(trained_home, tmp_path):
    # trained_home: version 1, trained by training-fast.yaml, is in production (tests/conftest.py).
    # 3. A weaker estimator passes a lenient gate but loses to production: staged.
    weak = variant(tmp_path, "weak", train_model={"training": {
        "cv_folds": 3, "candidates": {"stump": {"estimator": "sklearn.tree.DecisionTreeClassifier",
                                                 "params": {"max_depth": 1}}}}},
        promote_model={"gate": {"f1": 0.2, "roc_auc": 0.55, "tolerance": 0.01, "champion_metric": "f1"}})
    # --fail-on-reject: a CI job that wants every non-promotion to fail gets exit 5.
    code, third, output = train(trained_home, tmp_path, weak, "third", "--fail-on-reject")
    assert code == ExitCode.NOT_PROMOTED, output[-3000:]
    assert (third["stage"], third["verdict"]) == ("staging", "staged"), third["reason"]
    # It lost on evidence: the lower bound of the paired bootstrap interval of its F1 minus production's
    # is below -tolerance.
    assert third["vs_production_f1_diff_low"] < -0.01 and "lower bound < -0.01" in third["reason"]
    assert third["f1_ci_low"] < third["f1"] < third["f1_ci_high"]

    # 4. Defective data fails validation, names columns and rules, and changes nothing.
    bad = variant(tmp_path, "bad", load_dataset={"defects": {"missing_rate": 0.3, "unknown_category_rate": 0.05}})
    code, _, output = train(trained_home, tmp_path, bad, "bad")
    assert code == ExitCode.INVALID_DATA
    assert "column 'age': rule 'max_missing_rate'" in output
    assert "column 'contract_type': rule 'allowed_categories'" in output
    assert "production model is unchanged" in output

    versions = model_versions(trained_home)
    stages = {v["number"]: v["stage"] for v in versions}
    assert stages == {1: "production", 2: "staging", 3: None}
    assert versions[2]["metadata"]["verdict"] == "invalid_data"
    assert_recorded_and_tracked(trained_home, versions[:2], trained=2)


def assert_recorded_and_tracked(paths: StatePaths, versions: list[dict], trained: int) -> None:
    """The contract metadata and linked artifacts of each trained version, one MLflow run per
    successful training (``trained``) and the HTML reports of each."""
    for version in versions:
        assert version["metadata"].keys() >= CONTRACT_METADATA
        assert set(version["artifacts"]) >= LINKED_ARTIFACTS

    # MLflow: one run per successful training, with params, metrics, tags and the model.
    client = mlflow.MlflowClient(tracking_uri=paths.mlflow_tracking_uri)
    experiment = client.get_experiment_by_name("churn_training")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == trained
    for run in runs:
        assert {"test_f1", "test_roc_auc", "decision_threshold", "value_threshold",
                "test_net_gain_model", "test_net_gain_random"} <= run.data.metrics.keys()
        assert {"cv_folds", "chosen_candidate"} <= run.data.params.keys()
        assert run.data.tags["dataset"] == "synthetic" and len(run.data.tags["train_data_hash"]) == 64
    assert client.search_logged_models([experiment.experiment_id])
    assert not (PROJECT_ROOT / "mlruns").exists()

    # HTML visualizations for the dashboard, stored with the artifacts.
    reports = list((paths.artifact_store).rglob("report.html"))
    assert len(reports) >= 6 * trained
    assert any("ROC curve" in r.read_text() for r in reports)
