from datetime import UTC, datetime
from typing import Annotated, Any

from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages

from churnops.modeling.governance import PRODUCTION_SINCE_KEY
from churnops.monitoring.live_comparison import LiveComparison, RolloutDecision, RolloutRules, decide_rollout
from churnops.platform.deployment import GateRefused, authorize, production_version, promotion_lock
from materializers.monitoring import RolloutDecisionMaterializer


def _evidence(comparison: LiveComparison, decision: RolloutDecision, at: str) -> dict[str, Any]:
    """What both versions get recorded: the decision, the figures it rests on, when."""
    return {"action": decision.action, "at": at, "reasons": decision.reasons,
            "rollout_id": decision.rollout_id, "labelled_pairs": comparison.labelled_pairs,
            "production_version": decision.production_version, "challenger_version": decision.challenger_version,
            "differences": {m: {"estimate": i.estimate, "low": i.low, "high": i.high}
                            for m, i in comparison.differences.items()}}


# Never cached: a cached promotion would promote nothing.
@step(enable_cache=False, output_materializers={"rollout_decision": RolloutDecisionMaterializer})
def promote_on_evidence(
    live_comparison: LiveComparison, rules: dict[str, Any] | None = None,
) -> Annotated[RolloutDecision, "rollout_decision"]:
    """Act on the live comparison (``decide_rollout``): promote the challenger through the same gate
    as every promotion (``authorize``, under the promotion lock), or roll it back (archived; reason and
    time on both versions, as a manual rollback records them), or wait. The service is switched by the
    monitoring command afterwards (steps do not start servers)."""
    decision = decide_rollout(live_comparison, RolloutRules.model_validate(rules or {}))
    if decision.action not in ("promote", "rollback"):
        return decision
    model_name = get_step_context().model.name
    client = Client()
    at = datetime.now(UTC).isoformat(timespec="seconds")
    evidence = _evidence(live_comparison, decision, at)
    with promotion_lock(model_name):
        production = production_version(model_name)
        challenger = client.get_model_version(model_name, int(decision.challenger_version or 0))
        if production is None or str(production.number) != decision.production_version:
            return decision.model_copy(update={"outcome": "production changed during the rollout; nothing done"})
        if decision.action == "promote":
            try:
                clearance = authorize(challenger, "promote on evidence", replaces=production)
            except GateRefused as refusal:
                return decision.model_copy(update={"outcome": f"the gate refused the promotion: {refusal}"})
            challenger.set_stage(ModelStages.PRODUCTION, force=True)
            if client.get_model_version(model_name, production.id).stage == ModelStages.PRODUCTION:
                production.set_stage(ModelStages.ARCHIVED, force=True)
            log_metadata(model_version_id=challenger.id, metadata={
                "live_evidence": evidence, PRODUCTION_SINCE_KEY: at, "verdict_live": "promoted on evidence"})
            log_metadata(model_version_id=production.id, metadata={
                "live_evidence": evidence, "replaced_by_version": str(challenger.number)})
            clearance.record()
            outcome = f"version {challenger.number} is production; version {production.number} archived"
        else:
            challenger.set_stage(ModelStages.ARCHIVED, force=True)
            why = "; ".join(decision.reasons)
            mode = live_comparison.rollout.mode if live_comparison.rollout else "live"
            log_metadata(model_version_id=challenger.id, metadata={
                "live_evidence": evidence, "rollback_at": at, "rollback_role": "replaced",
                "rollback_reason": f"automatic rollback of the {mode} challenger: {why}"})
            log_metadata(model_version_id=production.id, metadata={
                "live_evidence": evidence, "rollback_at": at, "rollback_role": "kept",
                "rollback_reason": f"automatic rollback of challenger version {challenger.number}: {why}; "
                                   "production unchanged"})
            outcome = f"challenger version {challenger.number} archived; version {production.number} stays production"
    return decision.model_copy(update={"applied": True, "outcome": outcome})
