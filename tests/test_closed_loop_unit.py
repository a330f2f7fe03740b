"""The closed loop's pieces without a service: a winner staged as the challenger, the loop's settings
and the monitoring config it writes, the retraining switch, and the governance of the new verdict."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from churnops.commands.closed_loop import (
    LoopSettings,
    load_all_settings,
    monitoring_config_for,
    split_settings,
)
from churnops.commands.training import exit_code
from churnops.core.errors import ExitCode, UserError
from churnops.core.settings import PROJECT_ROOT, state_paths
from churnops.modeling.evaluation import Metrics
from churnops.modeling.governance import review_version
from churnops.modeling.promotion import Champion, GateConfig, decide, staged_as_challenger
from churnops.monitoring.retraining import RetrainingSettings
from churnops.platform.run_config import load_config, with_overrides
from churnops.reporting.summary import format_markdown

GATE = GateConfig(f1=0.55, roc_auc=0.75, tolerance=0.01, champion_metric="f1")


def metrics(f1: float) -> Metrics:
    return Metrics(accuracy=0.8, precision=0.6, recall=0.6, f1=f1, roc_auc=0.85, pr_auc=0.6, brier=0.15,
                   threshold=0.4, confusion_matrix=[[1, 1], [1, 1]])


def test_a_winner_is_staged_as_the_challenger_and_keeps_why_it_won():
    won = decide("churn", "4", metrics(0.66), 0.3, GATE, Champion(version="3", metrics=metrics(0.62)))
    assert won.promoted
    staged = staged_as_challenger(won)
    assert (staged.stage, staged.verdict, staged.gate_passed) == ("staging", "challenger", True)
    assert staged.reason.startswith(won.reason) and "promote_on_evidence" in staged.reason
    assert not staged.promoted


def test_the_challenger_verdict_is_an_evaluated_one_for_the_gate_and_exits_zero():
    passed = {"verdict": "challenger", "gate_passed": True, "gate_failed_rules": [],
              "artifact_sha256": {"churn_classifier": "a", "dataset_schema": "b"}}
    # The gate lets an evaluated, passing challenger be served (shadow, canary) and promoted on evidence.
    assert review_version(passed, {"churn_classifier": "a", "dataset_schema": "b"}, None) == []
    assert exit_code({"verdict": "challenger"}) == ExitCode.OK
    assert exit_code({"verdict": "challenger"}, fail_on_reject=True) == ExitCode.NOT_PROMOTED


def test_target_stage_reaches_the_promotion_step_only_when_asked():
    config = load_config(PROJECT_ROOT / "configs" / "training-fast.yaml")
    assert config["steps"]["promote_model"]["parameters"]["target_stage"] == "production"
    staged = with_overrides(config, target_stage="staging")
    assert staged["steps"]["promote_model"]["parameters"]["target_stage"] == "staging"
    assert with_overrides(config)["steps"]["promote_model"]["parameters"]["target_stage"] == "production"


def test_retraining_switch_is_validated_and_the_shipped_config_deploys_in_shadow():
    shipped = load_config(PROJECT_ROOT / "configs" / "monitoring.yaml")["retraining"]
    assert RetrainingSettings.model_validate(shipped).deploy_challenger == "shadow"
    assert RetrainingSettings().deploy_challenger == "off"  # without the key: a winner replaces production
    with pytest.raises(ValueError, match="deploy_challenger"):
        RetrainingSettings(deploy_challenger="blue-green")
    with pytest.raises(ValueError, match="canary_percent"):
        RetrainingSettings(canary_percent=100)


def test_loop_settings_come_from_the_simulate_config_without_disturbing_the_traffic_settings(tmp_path: Path):
    traffic, loop = load_all_settings(PROJECT_ROOT / "configs" / "simulate.yaml")
    assert loop.deploy_challenger == "shadow" and loop.monitoring_config == "configs/monitoring.yaml"
    assert traffic.endpoint == "/predict"
    rest, defaults = split_settings({"concurrency": 2})
    assert rest == {"concurrency": 2} and defaults == LoopSettings()
    with pytest.raises(UserError, match="loop"):
        split_settings({"loop": {"deploy_challenger": "everyone"}})
    bad = tmp_path / "simulate.yaml"
    bad.write_text(yaml.safe_dump({"loop": {"port": 0}}))
    with pytest.raises(UserError, match="port"):
        load_all_settings(bad)


def test_the_loop_turns_retraining_on_and_off_and_passes_its_rollout_mode(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("CHURNOPS_HOME", str(tmp_path / "home"))
    paths = state_paths()
    settings = LoopSettings(deploy_challenger="canary", canary_percent=25)
    retrain = yaml.safe_load(monitoring_config_for(settings, paths, retrain=True, name="a").read_text())
    judge = yaml.safe_load(monitoring_config_for(settings, paths, retrain=False, name="b").read_text())
    assert retrain["parameters"]["retrain_on_drift"] is True and judge["parameters"]["retrain_on_drift"] is False
    assert retrain["retraining"]["deploy_challenger"] == "canary" and retrain["retraining"]["canary_percent"] == 25
    # Everything else is the monitoring config as shipped.
    shipped = load_config(PROJECT_ROOT / "configs" / "monitoring.yaml")
    assert retrain["parameters"]["thresholds"] == shipped["parameters"]["thresholds"]


def test_the_markdown_report_names_the_challenger_verdict():
    summary = {"verdict": "challenger", "model_name": "churn_classifier", "model_version": "2",
               "previous_production_version": "1", "reason": "won offline; staged as the challenger",
               "data_hash": "abc", "dataset": "synthetic", "estimator": "LogisticRegression", "gate_f1": 0.55,
               "gate_roc_auc": 0.75, "gate_passed": True, "rows": 1000, "test_rows": 200, "threshold": 0.4,
               "run_name": "run", **dict.fromkeys(("f1", "roc_auc", "pr_auc", "accuracy", "precision", "recall",
                                                    "brier"), 0.5)}
    assert "challenger of a live rollout" in format_markdown(summary)


def test_a_live_challenger_with_a_bento_never_counts_as_an_earlier_production_version():
    from churnops.modeling.governance import was_production

    assert was_production({"verdict": "promoted"})
    assert was_production({"verdict": "staged", "production_since": "2026-12-03T10:00:00+00:00"})  # rolled back to
    assert was_production({}, stage="production")
    assert was_production({"verdict": "staged", "bento_tag": "churn_service:abc"})  # packaged before the key existed
    # Packaged to run in shadow or as a canary: a Bento, but never production.
    assert not was_production({"verdict": "challenger", "bento_tag": "churn_service:abc"})
    assert not was_production({"verdict": "staged", "bento_tag": "churn_service:abc", "rollout_role": "challenger"})
    assert not was_production({"verdict": "promoted", "rollback_role": "replaced"})
