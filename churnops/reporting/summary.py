"""The end-of-run summary: a flat dict, printed, written as JSON or as Markdown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from churnops.modeling.evaluation import EvaluationReport
from churnops.modeling.promotion import PromotionDecision

METRICS = ("f1", "roc_auc", "pr_auc", "accuracy", "precision", "recall", "brier")


def training_summary(decision: PromotionDecision, evaluation: EvaluationReport,
                     model_metadata: dict[str, Any], run: dict[str, Any]) -> dict[str, Any]:
    m = evaluation.metrics
    champion = decision.champion.metrics if decision.champion else None
    summary: dict[str, Any] = {
        "model_name": decision.model_name,
        "model_version": decision.model_version,
        "stage": decision.stage,
        "verdict": decision.verdict,
        "gate_passed": decision.gate_passed,
        "reason": decision.reason,
        "overridden_rules": ",".join(decision.overridden_rules),
        **{name: getattr(m, name) for name in METRICS},
        "threshold": m.threshold,
        "baseline_f1": evaluation.best_baseline_f1,
        "gate_f1": decision.gate.f1,
        "gate_roc_auc": decision.gate.roc_auc,
        "previous_production_version": decision.champion.version if decision.champion else None,
        "previous_production_f1": champion.f1 if champion else None,
        "previous_production_roc_auc": champion.roc_auc if champion else None,
        "estimator": model_metadata.get("estimator"),
        "dataset": model_metadata.get("dataset"),
        "data_source": model_metadata.get("data_source"),
        "data_hash": model_metadata.get("data_hash"),
        "rows": model_metadata.get("rows"),
        "test_rows": evaluation.test_rows,
        **run,
    }
    return summary


def format_console(summary: dict[str, Any]) -> str:
    def num(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "-"

    lines = [
        f"Model {summary['model_name']} version {summary['model_version']}: {summary['verdict'].upper()} "
        f"(stage: {summary['stage']})",
        f"  reason      {summary['reason']}",
        *([f"  OVERRIDE    gate rules {summary['overridden_rules']} forced past (recorded on the version)"]
          if summary.get("overridden_rules") else []),
        f"  data        {summary['dataset']} · {summary['rows']} rows · {summary['data_source']}",
        f"  estimator   {summary['estimator']} at threshold {num(summary['threshold'])}",
        "",
        f"  {'':<12}{'candidate':>11}{'baseline':>11}{'production':>12}",
        f"  {'F1':<12}{num(summary['f1']):>11}{num(summary['baseline_f1']):>11}"
        f"{num(summary['previous_production_f1']):>12}",
        f"  {'ROC-AUC':<12}{num(summary['roc_auc']):>11}{'':>11}{num(summary['previous_production_roc_auc']):>12}",
        f"  {'PR-AUC':<12}{num(summary['pr_auc']):>11}",
        f"  gate: F1 >= {summary['gate_f1']}, F1 > baseline, ROC-AUC >= {summary['gate_roc_auc']}: "
        f"{'passed' if summary['gate_passed'] else 'FAILED'}",
        "",
        f"  run         {summary['run_name']}",
        f"  MLflow      {summary['mlflow_hint']}",
        f"  ZenML       {summary['dashboard_hint']}",
    ]
    return "\n".join(lines)


def format_markdown(summary: dict[str, Any]) -> str:
    """A metrics report for a pull-request comment."""
    def num(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else "–"

    verdict = {"promoted": "✅ promoted to production", "staged": "🟡 staged (lost to production)",
               "rejected": "❌ rejected by the gate",
               "held": "⏸️ held back (input contract differs from production)"}[summary["verdict"]]
    rows = "\n".join(
        f"| {label} | {num(summary[key])} | {num(summary.get(f'baseline_{key}'))} | "
        f"{num(summary.get(f'previous_production_{key}'))} |"
        for label, key in [("F1", "f1"), ("ROC-AUC", "roc_auc"), ("PR-AUC", "pr_auc"), ("Accuracy", "accuracy"),
                           ("Precision", "precision"), ("Recall", "recall"), ("Brier", "brier")]
    )
    production = summary["previous_production_version"]
    return (
        f"## Churn model `{summary['model_name']}` v{summary['model_version']}: {verdict}\n\n"
        f"{summary['reason']}\n\n"
        f"| metric | candidate | best baseline | production{f' v{production}' if production else ''} |\n"
        f"|---|---|---|---|\n{rows}\n\n"
        f"Gate: F1 ≥ {summary['gate_f1']}, F1 > baseline, ROC-AUC ≥ {summary['gate_roc_auc']} → "
        f"**{'passed' if summary['gate_passed'] else 'failed'}**.\n\n"
        f"Data: `{summary['dataset']}`, {summary['rows']} rows (test {summary['test_rows']}), "
        f"hash `{str(summary['data_hash'])[:12]}`. Estimator `{summary['estimator']}`, threshold "
        f"{num(summary['threshold'])}. Run `{summary['run_name']}`.\n"
    )


def write_json(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
