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

from churnops.data.schema import DatasetSchema
from churnops.data.sources import content_hash
from churnops.modeling.training import SearchSummary, TrainingSpec, search_candidates
from materializers import SearchSummaryMaterializer

# What the logged MLflow model needs; stating it skips MLflow's slow requirement inference.
MLFLOW_MODEL_REQUIREMENTS = ["scikit-learn==1.9.1", "pandas==2.3.3", "numpy==2.4.6"]


@step(experiment_tracker=True, output_materializers={"search_summary": SearchSummaryMaterializer})
def train_model(
    train_set: pd.DataFrame, dataset_schema: DatasetSchema, training: dict[str, Any]
) -> tuple[
    Annotated[Pipeline, ArtifactConfig(name="churn_classifier", artifact_type=ArtifactType.MODEL)],
    Annotated[SearchSummary, "search_summary"],
]:
    """Search the configured candidates with stratified CV and fit the best one.

    Returns one sklearn Pipeline (preprocessing + estimator) fitted on the training split,
    and the search summary with the decision threshold tuned on out-of-fold predictions.
    """
    spec = TrainingSpec.model_validate(training)
    features, target = train_set[dataset_schema.feature_names], train_set[dataset_schema.target.column]
    pipeline, summary = search_candidates(features, target, dataset_schema, spec)
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

    metadata = {"decision_threshold": summary.threshold, "estimator": chosen.name,
                "cv_score": chosen.cv_score, "selection_metric": spec.selection_metric,
                "trained_at": datetime.now(UTC).isoformat(timespec="seconds")}
    log_metadata(metadata=metadata, artifact_name="churn_classifier", infer_artifact=True)
    log_metadata(metadata=metadata, infer_model=True)
    return pipeline, summary
