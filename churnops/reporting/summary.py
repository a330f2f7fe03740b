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
        **targeting_figures(evaluation),
        **evidence_figures(decision, evaluation),
        **run,
    }
    return summary


def evidence_figures(decision: PromotionDecision, evaluation: EvaluationReport) -> dict[str, Any]:
    """Bootstrap intervals of the candidate, paired differences against production and the floor,
    the group-gap check and the decision's notes, as flat keys."""
    figures: dict[str, Any] = {"comparison_rule": decision.gate.comparison.rule,
                               "tolerance": decision.gate.tolerance, "champion_metric": decision.gate.champion_metric,
                               "decision_notes": "; ".join(decision.notes)}
    for name, interval in evaluation.intervals.items():
        figures |= {f"{name}_ci_low": interval.low, f"{name}_ci_high": interval.high}
    if evaluation.intervals:
        first = next(iter(evaluation.intervals.values()))
        figures |= {"ci_confidence": first.confidence, "ci_resamples": first.resamples}
    floor = decision.floor
    figures["floor_version"] = floor.version if floor else None
    figures["floor_f1"] = floor.metrics.f1 if floor and floor.metrics else None
    for role, reference in (("production", decision.champion), ("floor", floor)):
        if role == "floor" and reference is not None and decision.champion is not None \
                and reference.version == decision.champion.version:
            continue  # the floor is production itself: compared once
        for metric, interval in (reference.differences.items() if reference else ()):
            key = f"vs_{role}_{metric}_diff"
            figures |= {key: interval.estimate, f"{key}_low": interval.low, f"{key}_high": interval.high}
    group_check = next((c for c in decision.checks if c.rule == "group_gap"), None)
    if group_check is not None and decision.gate.fairness is not None:
        figures |= {"group_gap": group_check.observed, "group_gap_max": decision.gate.fairness.max_gap,
                    "group_gap_metric": decision.gate.fairness.metric, "group_gap_passed": group_check.passed}
    return figures


def _signed(value: Any) -> str:
    return f"{value:+.4f}" if isinstance(value, float) else "-"


def _evidence_console(summary: dict[str, Any]) -> list[str]:
    lines = []
    if summary.get("f1_ci_low") is not None:
        label = f"{summary['ci_confidence']:.0%} CI"
        lines.append(f"  {label:<12}F1 [{summary['f1_ci_low']:.4f}, {summary['f1_ci_high']:.4f}]"
                     f"   ROC-AUC [{summary['roc_auc_ci_low']:.4f}, {summary['roc_auc_ci_high']:.4f}]"
                     f"   ({summary['ci_resamples']} bootstrap resamples)")
    metric = summary.get("champion_metric", "f1")
    for role, version in (("production", summary.get("previous_production_version")),
                          ("floor", summary.get("floor_version"))):
        key = f"vs_{role}_{metric}_diff"
        if summary.get(key) is None:
            continue
        roc = f"vs_{role}_roc_auc_diff"
        lines.append(f"  vs {role:<10} v{version}: {metric} {_signed(summary[key])} "
                     f"[{_signed(summary[f'{key}_low'])}, {_signed(summary[f'{key}_high'])}]"
                     + (f"   ROC-AUC {_signed(summary[roc])} [{_signed(summary[f'{roc}_low'])}, "
                        f"{_signed(summary[f'{roc}_high'])}]" if metric != "roc_auc" and roc in summary else ""))
    if any(line.startswith("  vs ") for line in lines):
        rule = ("lower bound of the paired interval >= " if summary["comparison_rule"].startswith("lower_bound")
                else "point difference >= ")
        lines.append(f"  rule        {rule}-{summary['tolerance']} against production and the floor")
    if summary.get("group_gap") is not None:
        lines.append(f"  groups      largest {summary['group_gap_metric']} gap {summary['group_gap']:.4f} "
                     f"(max {summary['group_gap_max']}): {'passed' if summary['group_gap_passed'] else 'FAILED'}")
    if summary.get("decision_notes"):
        lines.append(f"  notes       {summary['decision_notes']}")
    return lines


def _evidence_markdown(summary: dict[str, Any]) -> str:
    lines = _evidence_console(summary)
    if not lines:
        return ""
    return "Evidence:\n\n" + "\n".join(f"- {' '.join(line.split())}" for line in lines) + "\n\n"


def targeting_figures(evaluation: EvaluationReport) -> dict[str, Any]:
    """Test-set net gain of the model's contact list vs everyone, no one and random (same size)."""
    t = evaluation.targeting
    if t is None:
        return {}
    return {"targeting_decision": t.config.decision, "value_threshold": t.value_threshold,
            "contacts_model": t.model.contacts, "net_gain_model": t.model.net_gain,
            "net_gain_everyone": t.everyone.net_gain, "net_gain_no_one": t.no_one.net_gain,
            "net_gain_random": t.random.net_gain}


def _targeting_console(summary: dict[str, Any]) -> list[str]:
    if summary.get("net_gain_model") is None:
        return []
    return [
        f"  targeting   {summary['targeting_decision']} policy, value threshold {summary['value_threshold']:.4f}: "
        f"net gain on the test set",
        f"  {'':<12}{'model':>11}{'everyone':>11}{'no one':>11}{'random':>11}",
        f"  {'net gain':<12}{summary['net_gain_model']:>11,.0f}{summary['net_gain_everyone']:>11,.0f}"
        f"{summary['net_gain_no_one']:>11,.0f}{summary['net_gain_random']:>11,.0f}"
        f"   ({summary['contacts_model']} contacts; random: as many)",
    ]


def _targeting_markdown(summary: dict[str, Any]) -> str:
    if summary.get("net_gain_model") is None:
        return ""
    return (
        f"Value-based targeting (`{summary['targeting_decision']}` policy, value threshold "
        f"{summary['value_threshold']:.4f}), net gain on the test set:\n\n"
        f"| model ({summary['contacts_model']} contacts) | contact everyone | contact no one | "
        f"random ({summary['contacts_model']} contacts) |\n|---|---|---|---|\n"
        f"| {summary['net_gain_model']:,.0f} | {summary['net_gain_everyone']:,.0f} | "
        f"{summary['net_gain_no_one']:,.0f} | {summary['net_gain_random']:,.0f} |\n\n"
    )


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
        *_evidence_console(summary),
        *_targeting_console(summary),
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
               "held": "⏸️ held back (input contract differs from production)",
               "challenger": "🧪 staged as the challenger of a live rollout (won offline)"}[summary["verdict"]]
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
        f"{_evidence_markdown(summary)}"
        f"{_targeting_markdown(summary)}"
        f"Data: `{summary['dataset']}`, {summary['rows']} rows (test {summary['test_rows']}), "
        f"hash `{str(summary['data_hash'])[:12]}`. Estimator `{summary['estimator']}`, threshold "
        f"{num(summary['threshold'])}. Run `{summary['run_name']}`.\n"
    )


def write_json(summary: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary, indent=2, default=str) + "\n")
