"""The deployment gate and the champion/challenger decision, as pure functions.

Gate (the lab's rule, extended): F1 >= gate_f1, F1 > best baseline F1, ROC-AUC >= gate_roc_auc.
Champion/challenger: a candidate that passes the gate becomes production only if it is not
worse than the current production version, re-scored on the same test set, by more than
``tolerance`` on ``champion_metric``. Otherwise it is staged; a gate failure is rejected.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from churnops.modeling.evaluation import Metrics

Stage = Literal["production", "staging", "none"]
# held: it passed and won, but the gate kept it out of production (its input contract differs
# from production's); rejected: it failed the absolute gate.
Verdict = Literal["promoted", "staged", "rejected", "held"]


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    f1: float = Field(0.55, ge=0, le=1)
    roc_auc: float = Field(0.75, ge=0, le=1)
    tolerance: float = Field(0.01, ge=0, le=1)
    champion_metric: Literal["f1", "roc_auc", "pr_auc"] = "f1"


class GateCheck(BaseModel):
    rule: str
    passed: bool
    observed: float
    required: str


class Champion(BaseModel):
    """The production version as it scores on this run's test set."""

    version: str
    metrics: Metrics | None = None
    # Why it could not be re-scored (e.g. trained on another dataset schema).
    incomparable_reason: str | None = None


class PromotionDecision(BaseModel):
    model_name: str
    model_version: str
    stage: Stage
    verdict: Verdict
    gate_passed: bool
    reason: str
    checks: list[GateCheck]
    gate: GateConfig
    candidate: Metrics
    baseline_f1: float
    champion: Champion | None = None
    # Gate rules a forced promotion overrode (``--force --reason``), recorded on the version.
    overridden_rules: list[str] = Field(default_factory=list)

    @property
    def promoted(self) -> bool:
        return self.stage == "production"


def held_back(decision: PromotionDecision, violations: list[Any]) -> PromotionDecision:
    """A winning candidate the gate keeps out of production: staged, with the broken rules."""
    reasons = "; ".join(f"{v.rule}: {v.message}" for v in violations)
    return decision.model_copy(update={
        "stage": "staging", "verdict": "held",
        "reason": f"held back from production ({reasons}); production is unchanged. To promote it anyway: "
                  "python run.py --pipeline rollback --to "
                  f"{decision.model_version} --force --reason TEXT, or train with --force --reason TEXT"})


def gate_checks(candidate: Metrics, baseline_f1: float, gate: GateConfig) -> list[GateCheck]:
    return [
        GateCheck(rule="f1_min", passed=candidate.f1 >= gate.f1, observed=candidate.f1, required=f">= {gate.f1}"),
        GateCheck(rule="f1_beats_baseline", passed=candidate.f1 > baseline_f1, observed=candidate.f1,
                  required=f"> {baseline_f1:.4f} (best DummyClassifier)"),
        GateCheck(rule="roc_auc_min", passed=candidate.roc_auc >= gate.roc_auc, observed=candidate.roc_auc,
                  required=f">= {gate.roc_auc}"),
    ]


def decide(
    model_name: str, model_version: str, candidate: Metrics, baseline_f1: float,
    gate: GateConfig, champion: Champion | None,
) -> PromotionDecision:
    checks = gate_checks(candidate, baseline_f1, gate)
    failed = [c for c in checks if not c.passed]
    common = dict(model_name=model_name, model_version=model_version, checks=checks, gate=gate,
                  candidate=candidate, baseline_f1=baseline_f1, champion=champion)
    if failed:
        reasons = "; ".join(f"{c.rule}: {c.observed:.4f} not {c.required}" for c in failed)
        return PromotionDecision(stage="none", verdict="rejected", gate_passed=False,
                                 reason=f"gate failed ({reasons})", **common)
    if champion is None:
        return PromotionDecision(stage="production", verdict="promoted", gate_passed=True,
                                 reason="passed the gate; no production version yet", **common)
    if champion.metrics is None:
        return PromotionDecision(
            stage="production", verdict="promoted", gate_passed=True,
            reason=f"passed the gate; production version {champion.version} not comparable "
                   f"({champion.incomparable_reason})", **common)
    metric = gate.champion_metric
    ours, theirs = getattr(candidate, metric), getattr(champion.metrics, metric)
    comparison = f"{metric} {ours:.4f} vs production v{champion.version} {theirs:.4f} on this test set"
    if ours >= theirs - gate.tolerance:
        return PromotionDecision(stage="production", verdict="promoted", gate_passed=True,
                                 reason=f"passed the gate; {comparison} (tolerance {gate.tolerance})", **common)
    return PromotionDecision(stage="staging", verdict="staged", gate_passed=True,
                             reason=f"passed the gate but lost: {comparison} (tolerance {gate.tolerance})", **common)
