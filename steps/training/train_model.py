from datetime import UTC, datetime
from typing import Annotated, Any

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline
from skops.io import dumps as skops_dumps
from skops.io import get_untrusted_types
from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType
from zenml.logger import get_logger

from churnops.data.schema import DatasetSchema
from churnops.data.sources import content_hash
from churnops.modeling.explain import reasons_method_checked
from churnops.modeling.targeting import TargetingConfig, value_column
from churnops.modeling.training import SearchSummary, TrainingSpec, search_candidates
from materializers import SearchSummaryMaterializer

logger = get_logger(__name__)

# What the logged MLflow model needs; stating it skips MLflow's slow requirement inference.
MLFLOW_MODEL_REQUIREMENTS = ["scikit-learn==1.9.1", "pandas==2.3.3", "numpy==2.4.6"]


@step(experiment_tracker=True, output_materializers={"search_summary": SearchSummaryMaterializer})
def train_model(
    train_set: pd.DataFrame, dataset_schema: DatasetSchema, training: dict[str, Any],
    targeting: dict[str, Any] | None = None,
) -> tuple[
    Annotated[Pipeline, ArtifactConfig(name="churn_classifier", artifact_type=ArtifactType.MODEL)],
    Annotated[SearchSummary, "search_summary"],
]:
    """Search the configured candidates with stratified CV and fit the best one.

    Returns one sklearn Pipeline (preprocessing + estimator) fitted on the training split,
    and the search summary with the decision thresholds (F1, and net gain when ``targeting`` is
    configured) tuned on out-of-fold predictions.
    """
    spec = TrainingSpec.model_validate(training)
    targeting_config = TargetingConfig.model_validate(targeting) if targeting is not None else None
    if targeting_config is not None and targeting_config.value.column is None and dataset_schema.value_column is None:
        # A user's schema without a value column still trains; it just gets no value threshold.
        logger.warning("Value-based targeting skipped: dataset schema '%s' declares no value_column and "
                       "targeting.value.column is not set.", dataset_schema.name)
        targeting_config = None
    if targeting_config is not None:
        value_column(targeting_config, dataset_schema)  # fail before the search, not after it
    features, target = train_set[dataset_schema.feature_names], train_set[dataset_schema.target.column]
    pipeline, summary = search_candidates(features, target, dataset_schema, spec, targeting_config)
    chosen = summary.chosen_result

    mlflow.set_tags({"dataset": dataset_schema.name, "train_data_hash": content_hash(train_set),
                     "estimator": chosen.name})
    mlflow.log_params({"cv_folds": spec.cv_folds, "selection_metric": spec.selection_metric,
                       "chosen_candidate": chosen.name, "train_rows": len(train_set),
                       **{f"best_{k}": v for k, v in chosen.best_params.items()}})
    mlflow.log_metrics({"decision_threshold": summary.threshold, "cv_f1_at_threshold": summary.threshold_cv_f1,
                        **{f"cv_{spec.selection_metric}_{c.name}": c.cv_score for c in summary.candidates}})
    example = features.head(5).astype({c: float for c in dataset_schema.numeric_names})
    # MLflow 3 serialises sklearn with skops, which refuses types it cannot vouch for (numpy
    # dtypes, tree node arrays). This model was built in this step, so its own types are trusted.
    trusted = get_untrusted_types(data=skops_dumps(pipeline))
    mlflow.sklearn.log_model(pipeline, name="churn_classifier", pip_requirements=MLFLOW_MODEL_REQUIREMENTS,
                             skops_trusted_types=trusted, signature=infer_signature(
                                 example, pipeline.predict_proba(example)[:, 1]))

    if summary.value_threshold is not None:
        mlflow.log_metrics({"value_threshold": summary.value_threshold,
                            "cv_net_gain_at_value_threshold": summary.value_threshold_cv_net_gain})
    metadata: dict[str, Any] = {
                "decision_threshold": summary.threshold, "estimator": chosen.name,
                "cv_score": chosen.cv_score, "selection_metric": spec.selection_metric,
                "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
                # How reason codes are computed for this version; building the explainer on a few
                # training rows checks its additivity now, not at the first batch or /predict?explain.
                "reasons_method": reasons_method_checked(pipeline, dataset_schema, features.head(50))}
    if summary.targeting is not None:
        metadata["value_threshold"] = summary.value_threshold
        # The config as training used it, its value column resolved: TargetingConfig.model_validate reads it back.
        resolved = summary.targeting.model_copy(update={"value": summary.targeting.value.model_copy(
            update={"column": summary.value_column})})
        metadata["targeting"] = resolved.model_dump(mode="json")
    log_metadata(metadata=metadata, artifact_name="churn_classifier", infer_artifact=True)
    log_metadata(metadata=metadata, infer_model=True)
    return pipeline, summary
