"""The model card, built from the real objects of a small training, and printed by the CLI."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from sklearn.model_selection import train_test_split
from zenml.enums import VisualizationType

import run
from churnops.commands.model_card import missing_card_reason
from churnops.core.settings import PROJECT_ROOT, StatePaths
from churnops.data.sources import content_hash
from churnops.modeling.comparison import Interval
from churnops.modeling.evaluation import EvaluationReport, baseline_metrics, evaluate
from churnops.modeling.explain import reasons_method_checked
from churnops.modeling.fairness import group_report
from churnops.modeling.promotion import GateConfig, decide
from churnops.modeling.targeting import TargetingConfig, customer_values, targeting_report, value_column
from churnops.modeling.training import CandidateSpec, TrainingSpec, search_candidates
from churnops.reporting.model_card import ModelCard, build_model_card, render_html, render_markdown
from churnops.reporting.provenance import git_commit, library_versions
from churnops.reporting.summary import format_console, format_markdown, training_summary
from materializers import EvaluationReportMaterializer, ModelCardMaterializer
from tests.support import clean_customers, run_cli

FAST = yaml.safe_load((PROJECT_ROOT / "configs" / "training-fast.yaml").read_text())
TARGETING = TargetingConfig.model_validate(FAST["steps"]["train_model"]["parameters"]["targeting"])


@pytest.fixture(scope="module")
def trained() -> dict[str, Any]:
    """A small training, evaluation and promotion decision, as the pipeline's steps make them."""
    frame, schema = clean_customers(rows=2000)
    train, test = train_test_split(frame, test_size=0.25, random_state=3, stratify=frame["churned"])
    features, target = schema.feature_names, schema.target.column
    spec = TrainingSpec(candidates={"logistic_regression": CandidateSpec(
        estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 2000})}, cv_folds=3)
    pipeline, search = search_candidates(train[features], train[target], schema, spec, TARGETING)
    probabilities = pipeline.predict_proba(test[features])[:, 1]
    evaluation = evaluate(search.chosen, test[target].to_numpy(), probabilities, search.threshold,
                          baseline_metrics(train[features], train[target], test[features], test[target], 42))
    evaluation.targeting = targeting_report(
        test[target].to_numpy(), probabilities, customer_values(test, TARGETING, schema), TARGETING,
        value_column(TARGETING, schema), search.threshold, search.value_threshold)
    decision = decide("churn_classifier", "3", evaluation.metrics, evaluation.best_baseline_f1,
                      GateConfig(f1=0.5, roc_auc=0.7), None)
    metadata = {"data_source": "synthetic (seed 7, 2000 rows)", "data_hash": content_hash(frame), "rows": len(frame),
                "reasons_method": reasons_method_checked(pipeline, schema, train[features].head(50)),
                "git_commit": git_commit(), "library_versions": library_versions(),
                "trained_at": datetime.now(UTC).isoformat(timespec="seconds")}
    card = build_model_card(evaluation, search, decision, schema, metadata)
    return {"schema": schema, "search": search, "evaluation": evaluation, "decision": decision,
            "metadata": metadata, "card": card, "test": test, "probabilities": probabilities}


def test_card_carries_the_training_facts(trained: dict[str, Any]) -> None:
    card: ModelCard = trained["card"]
    search, evaluation, schema = trained["search"], trained["evaluation"], trained["schema"]
    assert (card.model_version, card.verdict, card.estimator) == ("3", "promoted", "logistic_regression")
    assert card.data.data_hash == trained["metadata"]["data_hash"] and len(card.data.data_hash) == 64
    assert (card.data.rows, card.data.test_rows) == (2000, 500)
    assert [(f.name, f.type) for f in card.features][:2] == [("age", "int"), ("tenure_months", "int")]
    assert {f.name for f in card.features} == set(schema.feature_names)
    assert next(f for f in card.features if f.name == "contract_type").type == "categorical"
    assert card.metric_values == pytest.approx({name: getattr(evaluation.metrics, name) for name in card.metric_values})
    thresholds = {t.name: t.value for t in card.thresholds}
    assert thresholds == {"decision_threshold": search.threshold, "value_threshold": search.value_threshold}
    assert [c.rule for c in card.gate_checks] == [c.rule for c in trained["decision"].checks]
    assert card.reasons_method == trained["metadata"]["reasons_method"]
    assert any("synthetic" in note for note in card.limitations)


def test_value_threshold_is_tuned_and_the_model_beats_random(trained: dict[str, Any]) -> None:
    search, report = trained["search"], trained["evaluation"].targeting
    assert 0 < search.value_threshold < 1
    assert search.value_threshold_cv_net_gain > 0
    assert report.model.net_gain > report.random.net_gain > report.no_one.net_gain == 0
    assert report.best_net_gain == max(report.curve_net_gain) > 0
    assert report.model == report.policies["value"]  # the configured decision is `value`


def test_markdown_and_html_show_every_section(trained: dict[str, Any]) -> None:
    card: ModelCard = trained["card"]
    markdown = render_markdown(card)
    for heading in ("## Intended use", "## Data", "### Features (13)", "## Metrics", "## Thresholds",
                    "## Promotion gate", "## Reason codes", "## Value-based targeting", "## Known limitations",
                    "## Provenance"):
        assert heading in markdown, heading
    assert card.data.data_hash in markdown and "| contract_type | categorical | Month-to-month, One year" in markdown
    assert f"| decision_threshold | {card.decision_threshold:.4f} |" in markdown
    assert "| f1_min |" in markdown and "passed" in markdown
    assert f"Method: `{card.reasons_method}`" in markdown
    page = render_html(card)
    assert page.startswith("<!DOCTYPE html>") and "Promotion gate" in page and card.data.data_hash in page


def test_intervals_and_groups_appear_when_the_evaluation_has_them(trained: dict[str, Any]) -> None:
    evaluation: EvaluationReport = trained["evaluation"]
    assert "Metrics per group" not in render_markdown(trained["card"])  # none evaluated: no section
    test, schema = trained["test"], trained["schema"]
    groups = group_report(test, test[schema.target.column].to_numpy(), trained["probabilities"],
                          evaluation.metrics.threshold, schema)
    assert groups is not None
    richer = evaluation.model_copy(update={"groups": groups, "intervals": {
        "f1": Interval(low=0.61, high=0.69, resamples=1000, seed=42, estimate=evaluation.metrics.f1)}})
    card = build_model_card(richer, trained["search"], trained["decision"], schema, trained["metadata"])
    markdown = render_markdown(card)
    assert f"| F1 | {evaluation.metrics.f1:.4f} (0.6100 – 0.6900) |" in markdown
    assert "1000 resamples, seed 42" in markdown
    first = groups.slices[0]
    assert "## Metrics per group" in markdown and "| slice | group | support |" in markdown
    assert f"| {first.name} | {first.groups[0].group} | {first.groups[0].support} |" in markdown
    assert len(card.groups) == sum(len(s.groups) for s in groups.slices)


def test_summary_prints_the_policy_comparison(trained: dict[str, Any]) -> None:
    report = trained["evaluation"].targeting
    summary = training_summary(trained["decision"], trained["evaluation"], trained["metadata"],
                               {"run_name": "r", "mlflow_hint": "m", "dashboard_hint": "d"})
    assert summary["net_gain_model"] == report.model.net_gain and summary["net_gain_random"] == report.random.net_gain
    console = format_console(summary)
    assert re.search(r"net gain\s+[-\d,]+\s+[-\d,]+\s+0\s+[-\d,]+", console), console
    markdown = format_markdown(summary)
    assert f"| {report.model.net_gain:,.0f} | {report.everyone.net_gain:,.0f} | 0 |" in markdown


def test_materializers_save_the_card_and_the_profit_curve(session_paths: StatePaths, trained: dict[str, Any]) -> None:
    uri = session_paths.artifact_store / "materializer-tests" / "ModelCard"
    uri.mkdir(parents=True, exist_ok=True)
    materializer = ModelCardMaterializer(str(uri))
    materializer.save(trained["card"])
    assert materializer.load(ModelCard) == trained["card"]
    saved = materializer.save_visualizations(trained["card"])
    kinds = {Path(path).name: kind for path, kind in saved.items()}
    assert kinds == {"model_card.html": VisualizationType.HTML, "model_card.md": VisualizationType.MARKDOWN}
    assert Path(uri / "model_card.md").read_text() == render_markdown(trained["card"])
    assert materializer.extract_metadata(trained["card"])["decision_threshold"] == trained["card"].decision_threshold

    page = EvaluationReportMaterializer(str(uri)).render(trained["evaluation"])
    assert "Profit curve" in page and "contact everyone" in page
    assert np.isfinite(EvaluationReportMaterializer(str(uri)).extract_metadata(trained["evaluation"])["net_gain_model"])


def test_model_card_option_is_in_the_help_and_defaults_to_production() -> None:
    parser = run.build_parser()
    assert "--model-card [VERSION]" in parser.format_help()
    assert parser.parse_args(["--model-card"]).model_card == "production"
    assert parser.parse_args(["--model-card", "3"]).model_card == "3"


def test_a_version_without_a_card_says_why() -> None:
    assert "failed validation" in missing_card_reason({"verdict": "invalid_data"})
    assert "stopped before the promotion step" in missing_card_reason({})
    assert "before the training pipeline wrote model cards" in missing_card_reason({"verdict": "staged"})


@pytest.mark.slow
def test_cli_prints_the_production_card_consistent_with_the_bento(trained_store: StatePaths,
                                                                  trained_store_summary: dict[str, Any]) -> None:
    result = run_cli(trained_store, "--model-card")
    assert result.returncode == 0, result.stderr[-3000:]
    card = result.stdout
    assert card.startswith("# Model card: `churn_classifier` version 1")
    assert trained_store_summary["data_hash"] in card and "| value_threshold |" in card
    # The packaged model_card.json in the Bento carries the same identity figures.
    packaged = json.loads(next(trained_store.home.rglob("model_card.json")).read_text())
    assert f"| decision_threshold | {packaged['threshold']:.4f} |" in card
    assert f"| F1 | {packaged['metrics']['f1']:.4f}" in card and packaged["data_hash"] in card
