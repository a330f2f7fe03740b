from datetime import UTC, datetime
from typing import Annotated, Any

import mlflow
import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import get_step_context, log_metadata, step
from zenml.client import Client
from zenml.enums import ModelStages
from zenml.models import ModelVersionResponse

from churnops.data.schema import DatasetSchema
from churnops.modeling.comparison import Interval, Scored, paired_differences
from churnops.modeling.evaluation import EvaluationReport, compute_metrics
from churnops.modeling.governance import (
    ARTIFACT_HASHES_KEY,
    CONTRACT_DIGEST_KEY,
    CONTRACT_KEY,
    FAILED_RULES_KEY,
    PRODUCTION_SINCE_KEY,
    contract_digest,
    input_contract,
)
from churnops.modeling.governance import was_production as served_as_production
from churnops.modeling.promotion import (
    Champion,
    FloorConfig,
    GateConfig,
    PromotionDecision,
    TargetStage,
    decide,
    held_back,
    staged_as_challenger,
)
from churnops.platform.deployment import (
    GateRefused,
    artifact_hashes,
    authorize,
    list_versions,
    production_version,
    promotion_lock,
)
from churnops.reporting.provenance import git_commit, library_versions
from materializers import PromotionDecisionMaterializer


def _rescore(
    production: ModelVersionResponse, test_set: pd.DataFrame, schema: DatasetSchema,
) -> tuple[Champion, Scored | None]:
    """Score a reference version on this run's test set, at its own stored threshold."""
    version = str(production.number)
    its_schema = production.get_artifact("dataset_schema")
    classifier = production.get_model_artifact("churn_classifier")
    if its_schema is None or classifier is None:
        return Champion(version=version, incomparable_reason="its model or schema artifact is missing"), None
    their_features = its_schema.load().feature_names
    missing = sorted(set(their_features) - set(test_set.columns))
    if missing:
        return Champion(version=version,
                        incomparable_reason=f"it expects features this data lacks: {missing[:5]}"), None
    model: Pipeline = classifier.load()
    threshold = float(production.run_metadata.get("decision_threshold", 0.5))
    probabilities = model.predict_proba(test_set[their_features])[:, 1]
    metrics = compute_metrics(test_set[schema.target.column].to_numpy(), probabilities, threshold)
    return Champion(version=version, metrics=metrics), Scored(probabilities, threshold)


def was_production(version: ModelVersionResponse) -> bool:
    """Whether a version served as production and was not rolled back away from: the rule rollback
    uses too (``churnops.modeling.governance.was_production``)."""
    return served_as_production(version.run_metadata, getattr(version.stage, "value", version.stage))


def floor_versions(model_name: str, floor: FloorConfig, candidate_number: int) -> list[ModelVersionResponse]:
    """The versions the floor is chosen from: the last k that were production, or the pinned one."""
    if floor.mode == "none":
        return []
    versions = [v for v in list_versions(model_name) if v.number != candidate_number]
    if floor.mode == "pinned":
        pinned = [v for v in versions if v.number == floor.version]
        if not pinned:
            raise ValueError(f"gate.floor pins version {floor.version} of '{model_name}', which does not exist "
                             f"(versions: {[v.number for v in versions]}); see `python run.py --models`")
        return pinned
    served = sorted((v for v in versions if was_production(v)), key=lambda v: v.number)
    return served[-floor.k:]


def _choose_floor(
    scored: list[tuple[Champion, Scored | None]], metric: str,
) -> tuple[Champion, Scored | None] | None:
    """The best re-scored version on ``metric``; the first incomparable one when none could be scored."""
    comparable = [pair for pair in scored if pair[0].metrics is not None]
    if comparable:
        return max(comparable, key=lambda pair: getattr(pair[0].metrics, metric))
    return scored[0] if scored else None


def _with_differences(
    references: dict[str, tuple[Champion, Scored | None]], candidate: Scored, y_true: Any, gate: GateConfig,
) -> dict[str, Champion]:
    """Attach the paired bootstrap intervals of (candidate - reference) to each comparable reference."""
    by_version = {champion.version: scored for champion, scored in references.values() if scored is not None}
    metrics = tuple(dict.fromkeys((gate.champion_metric, "roc_auc")))
    differences = paired_differences(y_true, candidate, by_version, gate.comparison, metrics) if by_version else {}
    return {role: champion.model_copy(update={"differences": differences.get(champion.version, {})})
            for role, (champion, _) in references.items()}


def _comparison_figures(references: dict[str, Champion]) -> dict[str, float]:
    """Flat ``vs_<role>_<metric>_diff[_low|_high]`` figures for MLflow and the model version."""
    figures: dict[str, float] = {}
    production = references.get("production")
    for role, champion in references.items():
        if role == "floor" and production is not None and champion.version == production.version:
            continue  # the floor is production itself: one comparison, logged once
        for metric, interval in champion.differences.items():
            key = f"vs_{role}_{metric}_diff"
            figures |= {key: float(interval.estimate or 0.0), f"{key}_low": interval.low,
                        f"{key}_high": interval.high}
    return figures


def _interval_record(intervals: dict[str, Interval]) -> dict[str, dict[str, float | None]]:
    return {metric: {"estimate": i.estimate, "low": i.low, "high": i.high} for metric, i in intervals.items()}


# Never cached: a cached promotion would promote nothing.
@step(enable_cache=False, experiment_tracker=True,
      output_materializers={"promotion_decision": PromotionDecisionMaterializer})
def promote_model(
    evaluation_report: EvaluationReport,
    test_set: pd.DataFrame,
    dataset_schema: DatasetSchema,
    test_predictions: pd.DataFrame,
    gate: dict[str, Any],
    force: bool = False,
    force_reason: str | None = None,
    target_stage: TargetStage = "production",
) -> Annotated[PromotionDecision, "promotion_decision"]:
    """Apply the gate and the champion/challenger rule; set the stage of this model version.

    Passing (absolute gate and group rule) and not worse than production nor than the floor
    (each re-scored on this test set; "not worse" judged on the paired bootstrap interval of the
    difference, ``gate.comparison``) by more than the tolerance: production, through the same
    gate check as every other path (an input
    contract that differs from production's holds it back as staging unless ``force``), and
    the old production version is archived. Passing but worse: staging. Failing the gate: no
    stage. The verdict, failed rules, intervals, artifact hashes and input contract are recorded
    on the model version (the intervals also in MLflow); the whole decision runs under the
    model's promotion lock. ``target_stage: staging`` (the closed loop) keeps a winner in staging as
    the challenger of a live rollout while there is a production version to prove itself against.
    """
    model = get_step_context().model
    contract = input_contract(dataset_schema)
    gate_config = GateConfig.model_validate(gate)
    candidate = Scored(test_predictions["probability"].to_numpy(), evaluation_report.metrics.threshold)
    with promotion_lock(model.name):
        production = production_version(model.name)
        is_other = production is not None and production.id != model.id
        references: dict[str, tuple[Champion, Scored | None]] = {}
        if is_other:
            references["production"] = _rescore(production, test_set, dataset_schema)
        # The floor: re-scored on this test set like the champion (production is not scored twice).
        floor_pool = [references["production"] if "production" in references and v.id == production.id
                      else _rescore(v, test_set, dataset_schema)
                      for v in floor_versions(model.name, gate_config.floor, model.number)]
        chosen_floor = _choose_floor(floor_pool, gate_config.champion_metric)
        if chosen_floor is not None:
            references["floor"] = chosen_floor
        compared = _with_differences(references, candidate, test_predictions["actual"].to_numpy(), gate_config)
        champion, floor = compared.get("production"), compared.get("floor")
        decision = decide(model.name, str(model.number), evaluation_report.metrics,
                          evaluation_report.best_baseline_f1, gate_config, champion, floor,
                          evaluation_report.groups)
        if target_stage == "staging" and decision.promoted and is_other:
            decision = staged_as_challenger(decision)
        figures = _comparison_figures(compared)
        if figures:
            mlflow.log_metrics(figures)
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
            "comparison_rule": decision.gate.comparison.rule,
            "floor_version": floor.version if floor else "none",
            "floor_f1_on_this_test_set": floor.metrics.f1 if floor and floor.metrics else -1.0,
            "comparison_intervals": {role: _interval_record(c.differences) for role, c in compared.items()},
            "test_intervals": _interval_record(evaluation_report.intervals),
            "decision_notes": decision.notes,
            **figures,
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
            log_metadata(model_version_id=version.id,
                         metadata={PRODUCTION_SINCE_KEY: datetime.now(UTC).isoformat(timespec="seconds")})
        elif decision.stage == "staging":
            model.set_stage(ModelStages.STAGING, force=True)
        if clearance is not None and clearance.record() is not None:
            decision = decision.model_copy(update={"overridden_rules": [v.rule for v in clearance.overridden]})
    return decision
