"""The deployment gate and the champion/challenger decision, as pure functions.

Gate (the lab's rule, extended): F1 >= gate_f1, F1 > best baseline F1, ROC-AUC >= gate_roc_auc,
and, when configured, no slice of customers whose groups differ by more than ``fairness.max_gap``
on ``fairness.metric`` (groups below ``min_support`` skipped and named).
Champion/challenger: a candidate that passes the gate becomes production only if it is not
worse than the current production version, re-scored on the same test set, by more than
``tolerance`` on ``champion_metric``; by default "not worse" is judged on the lower bound of the
paired bootstrap interval of (candidate - production), not on the point difference. It must also
not be worse in the same sense than the *floor*, a reference that does not move with each
promotion (the best of the last K production versions, or a pinned version), so a run of
retrains cannot walk quality down one tolerance at a time. Otherwise it is staged; a gate
failure is rejected.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from churnops.modeling.comparison import ComparisonConfig, Interval
from churnops.modeling.evaluation import Metrics
from churnops.modeling.fairness import FairnessRule, GroupReport, slice_gaps

Stage = Literal["production", "staging", "none"]
# held: it passed and won, but the gate kept it out of production (its input contract differs
# from production's); rejected: it failed the absolute gate; challenger: it passed and won offline,
# and is staged to prove itself on live traffic first (shadow or canary, then promotion on evidence).
Verdict = Literal["promoted", "staged", "rejected", "held", "challenger"]
# Where a winning candidate goes: production at once, or staging as the challenger of a live rollout.
TargetStage = Literal["production", "staging"]


class FloorConfig(BaseModel):
    """The reference that does not move with each promotion."""

    model_config = ConfigDict(extra="forbid")

    # best_of_last_k: the best (re-scored on this test set) of the last k versions that were
    # production; pinned: one chosen version; none: compare with production only.
    mode: Literal["best_of_last_k", "pinned", "none"] = "best_of_last_k"
    k: int = Field(5, ge=1, le=100)
    version: int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _pinned_names_a_version(self) -> FloorConfig:
        if self.mode == "pinned" and self.version is None:
            raise ValueError("floor mode 'pinned' needs a version: floor: {mode: pinned, version: N}")
        return self


class GateConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    f1: float = Field(0.55, ge=0, le=1)
    roc_auc: float = Field(0.75, ge=0, le=1)
    tolerance: float = Field(0.01, ge=0, le=1)
    champion_metric: Literal["f1", "roc_auc", "pr_auc"] = "f1"
    comparison: ComparisonConfig = Field(default_factory=ComparisonConfig)
    floor: FloorConfig = Field(default_factory=FloorConfig)
    fairness: FairnessRule | None = None


class GateCheck(BaseModel):
    rule: str
    passed: bool
    observed: float
    required: str
    # What failed, in words (e.g. the slice, the groups and the gap), when the numbers alone do not say.
    detail: str | None = None


class Champion(BaseModel):
    """A reference version (production, or the floor) as it scores on this run's test set."""

    version: str
    metrics: Metrics | None = None
    # Why it could not be re-scored (e.g. trained on another dataset schema).
    incomparable_reason: str | None = None
    # Paired bootstrap intervals of (candidate - this version) per metric, on this test set.
    differences: dict[str, Interval] = Field(default_factory=dict)


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
    floor: Champion | None = None
    # Things the decision skipped or could not judge (e.g. groups below the minimum support).
    notes: list[str] = Field(default_factory=list)
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


def staged_as_challenger(decision: PromotionDecision) -> PromotionDecision:
    """A winner kept in staging to prove itself on live traffic (``target_stage: staging``)."""
    return decision.model_copy(update={
        "stage": "staging", "verdict": "challenger",
        "reason": f"{decision.reason}; staged as the challenger of a live rollout (target_stage: staging): "
                  "production is unchanged until it wins on live traffic (promote_on_evidence)"})


def gate_checks(candidate: Metrics, baseline_f1: float, gate: GateConfig) -> list[GateCheck]:
    return [
        GateCheck(rule="f1_min", passed=candidate.f1 >= gate.f1, observed=candidate.f1, required=f">= {gate.f1}"),
        GateCheck(rule="f1_beats_baseline", passed=candidate.f1 > baseline_f1, observed=candidate.f1,
                  required=f"> {baseline_f1:.4f} (best DummyClassifier)"),
        GateCheck(rule="roc_auc_min", passed=candidate.roc_auc >= gate.roc_auc, observed=candidate.roc_auc,
                  required=f">= {gate.roc_auc}"),
    ]


def fairness_check(groups: GroupReport, rule: FairnessRule) -> tuple[GateCheck, list[str]]:
    """The group rule as a gate check (the worst slice's gap), and notes on what it skipped."""
    gaps = slice_gaps(groups, rule)
    breaching = [g for g in gaps if g.breaches(rule)]
    worst = max((g.gap for g in gaps if g.gap is not None), default=0.0)
    notes = [g.describe(rule) for g in gaps if g.skipped or g.undefined or g.gap is None]
    check = GateCheck(rule="group_gap", passed=not breaching, observed=worst,
                      required=f"<= {rule.max_gap} ({rule.metric} between groups of >= {rule.min_support} rows)",
                      detail="; ".join(g.describe(rule) for g in breaching) or None)
    return check, notes


def _compare(candidate: Metrics, reference: Champion, role: str, gate: GateConfig) -> tuple[bool, str]:
    """Whether the candidate is not worse than ``reference`` by more than the tolerance, and why."""
    assert reference.metrics is not None
    metric, tolerance = gate.champion_metric, gate.tolerance
    ours, theirs = getattr(candidate, metric), getattr(reference.metrics, metric)
    text = f"{metric} {ours:.4f} vs {role} v{reference.version} {theirs:.4f} on this test set"
    interval = reference.differences.get(metric)
    if gate.comparison.rule == "lower_bound_above_minus_tolerance" and interval is not None:
        won = interval.low >= -tolerance
        return won, (f"{text}, difference {interval.describe()} ({interval.confidence:.0%} paired bootstrap, "
                     f"{interval.resamples} resamples): lower bound {'>=' if won else '<'} -{tolerance}")
    return ours >= theirs - tolerance, f"{text} (tolerance {tolerance})"


def decide(
    model_name: str, model_version: str, candidate: Metrics, baseline_f1: float,
    gate: GateConfig, champion: Champion | None, floor: Champion | None = None,
    groups: GroupReport | None = None,
) -> PromotionDecision:
    """The verdict. ``floor`` is the non-moving reference (None: no floor, or none found);
    ``groups`` the candidate's per-group metrics for the fairness rule."""
    checks = gate_checks(candidate, baseline_f1, gate)
    notes: list[str] = []
    if gate.fairness is not None:
        if groups is None:
            notes.append("fairness rule not applied: the dataset schema declares no slices")
        else:
            check, skipped = fairness_check(groups, gate.fairness)
            checks.append(check)
            notes.extend(skipped)
    failed = [c for c in checks if not c.passed]
    common = dict(model_name=model_name, model_version=model_version, checks=checks, gate=gate,
                  candidate=candidate, baseline_f1=baseline_f1, champion=champion, floor=floor)
    if failed:
        reasons = "; ".join(f"{c.rule}: {c.detail or f'{c.observed:.4f} not {c.required}'}" for c in failed)
        return PromotionDecision(stage="none", verdict="rejected", gate_passed=False,
                                 reason=f"gate failed ({reasons})", notes=notes, **common)
    references: list[tuple[str, Champion]] = []
    if champion is not None and champion.metrics is not None:
        references.append(("production", champion))
    elif champion is not None:
        notes.append(f"production version {champion.version} not comparable ({champion.incomparable_reason})")
    if floor is not None and floor.metrics is not None and (champion is None or floor.version != champion.version):
        references.append(("floor", floor))
    elif floor is not None and floor.metrics is None:
        notes.append(f"floor version {floor.version} not comparable ({floor.incomparable_reason})")
    if not references:
        why = "no production version yet" if champion is None else notes[-1]
        return PromotionDecision(stage="production", verdict="promoted", gate_passed=True,
                                 reason=f"passed the gate; {why}", notes=notes, **common)
    outcomes = [_compare(candidate, reference, role, gate) for role, reference in references]
    comparisons = "; ".join(text for _, text in outcomes)
    if all(won for won, _ in outcomes):
        return PromotionDecision(stage="production", verdict="promoted", gate_passed=True,
                                 reason=f"passed the gate; {comparisons}", notes=notes, **common)
    return PromotionDecision(stage="staging", verdict="staged", gate_passed=True,
                             reason=f"passed the gate but lost: {comparisons}", notes=notes, **common)
