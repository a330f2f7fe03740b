from typing import Annotated, Any

import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.models import ModelVersionResponse

from churnops.data.schema import DatasetSchema
from churnops.modeling.evaluation import EvaluationReport, compute_metrics
from churnops.modeling.governance import (
    ARTIFACT_HASHES_KEY,
    CONTRACT_DIGEST_KEY,
    CONTRACT_KEY,
    FAILED_RULES_KEY,
    contract_digest,
    input_contract,
)
from churnops.modeling.promotion import Champion, GateConfig, PromotionDecision, decide, held_back
from churnops.platform.deployment import GateRefused, artifact_hashes, authorize, production_version, promotion_lock
from churnops.reporting.provenance import git_commit, library_versions
from materializers import PromotionDecisionMaterializer


def _rescore(production: ModelVersionResponse, test_set: pd.DataFrame, schema: DatasetSchema) -> Champion:
    """Score the production version on this run's test set, at its own stored threshold."""
    version = str(production.number)
    its_schema = production.get_artifact("dataset_schema")
    classifier = production.get_model_artifact("churn_classifier")
    if its_schema is None or classifier is None:
        return Champion(version=version, incomparable_reason="its model or schema artifact is missing")
    their_features = its_schema.load().feature_names
    missing = sorted(set(their_features) - set(test_set.columns))
    if missing:
        return Champion(version=version, incomparable_reason=f"it expects features this data lacks: {missing[:5]}")
    model: Pipeline = classifier.load()
    threshold = float(production.run_metadata.get("decision_threshold", 0.5))
    probabilities = model.predict_proba(test_set[their_features])[:, 1]
    return Champion(version=version,
                    metrics=compute_metrics(test_set[schema.target.column].to_numpy(), probabilities, threshold))


# Never cached: a cached promotion would promote nothing.
@step(enable_cache=False, output_materializers={"promotion_decision": PromotionDecisionMaterializer})
def promote_model(
    evaluation_report: EvaluationReport,
    test_set: pd.DataFrame,
    dataset_schema: DatasetSchema,
    gate: dict[str, Any],
    force: bool = False,
    force_reason: str | None = None,
) -> Annotated[PromotionDecision, "promotion_decision"]:
    """Apply the gate and the champion/challenger rule; set the stage of this model version.

    Passing and not worse than production (re-scored on this test set) by more than the
    tolerance: production, through the same gate check as every other path (an input
    contract that differs from production's holds it back as staging unless ``force``), and
    the old production version is archived. Passing but worse: staging. Failing the gate: no
    stage. The verdict, failed rules, artifact hashes and input contract are recorded on the
    model version; the whole decision runs under the model's promotion lock.
    """
    model = get_step_context().model
    contract = input_contract(dataset_schema)
    with promotion_lock(model.name):
        production = production_version(model.name)
        is_other = production is not None and production.id != model.id
        champion = _rescore(production, test_set, dataset_schema) if is_other else None
        decision = decide(model.name, str(model.number), evaluation_report.metrics,
                          evaluation_report.best_baseline_f1, GateConfig.model_validate(gate), champion)
        version = Client().get_model_version(model.name, model.id)
        hashes = artifact_hashes(version)
        log_metadata(model_version_id=version.id, metadata={
            "gate_passed": decision.gate_passed, "verdict": decision.verdict, "reason": decision.reason,
            FAILED_RULES_KEY: [c.rule for c in decision.checks if not c.passed],
            ARTIFACT_HASHES_KEY: hashes,
            CONTRACT_KEY: contract, CONTRACT_DIGEST_KEY: contract_digest(contract),
            "gate_f1": decision.gate.f1, "gate_roc_auc": decision.gate.roc_auc,
            "gate_tolerance": decision.gate.tolerance,
            "champion_version": champion.version if champion else "none",
            "champion_f1_on_this_test_set": champion.metrics.f1 if champion and champion.metrics else -1.0,
            "git_commit": git_commit(), "library_versions": library_versions(),
        })
        clearance = None
        if decision.stage == "production":
            try:
                # Re-read: the verdict checked is the one just stored on the version.
                clearance = authorize(Client().get_model_version(model.name, model.id), "training promotion",
                                      force=force, reason=force_reason, replaces=production if is_other else None,
                                      observed_hashes=hashes)
            except GateRefused as refusal:
                decision = held_back(decision, refusal.violations)
                log_metadata(model_version_id=version.id, metadata={"verdict": decision.verdict,
                                                                    "reason": decision.reason})
        if decision.stage == "production":
            model.set_stage(ModelStages.PRODUCTION, force=True)
        elif decision.stage == "staging":
            model.set_stage(ModelStages.STAGING, force=True)
        if clearance is not None and clearance.record() is not None:
            decision = decision.model_copy(update={"overridden_rules": [v.rule for v in clearance.overridden]})
    return decision
