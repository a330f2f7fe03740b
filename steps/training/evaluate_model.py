from typing import Annotated

import mlflow
import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import log_metadata, step

from churnops.data.schema import DatasetSchema
from churnops.modeling.evaluation import EvaluationReport, baseline_metrics, evaluate
from churnops.modeling.training import SearchSummary
from materializers import EvaluationReportMaterializer


@step(experiment_tracker=True, output_materializers={"evaluation_report": EvaluationReportMaterializer})
def evaluate_model(
    churn_classifier: Pipeline,
    search_summary: SearchSummary,
    train_set: pd.DataFrame,
    test_set: pd.DataFrame,
    dataset_schema: DatasetSchema,
    random_state: int = 42,
) -> tuple[Annotated[EvaluationReport, "evaluation_report"], Annotated[pd.DataFrame, "test_predictions"]]:
    """Score the held-out test set at the stored threshold, next to DummyClassifier baselines."""
    features, target = dataset_schema.feature_names, dataset_schema.target.column
    probabilities = churn_classifier.predict_proba(test_set[features])[:, 1]
    baselines = baseline_metrics(train_set[features], train_set[target], test_set[features], test_set[target],
                                 random_state)
    report = evaluate(search_summary.chosen, test_set[target].to_numpy(), probabilities,
                      search_summary.threshold, baselines)

    m = report.metrics
    scores = {"accuracy": m.accuracy, "precision": m.precision, "recall": m.recall, "f1": m.f1,
              "roc_auc": m.roc_auc, "pr_auc": m.pr_auc, "brier": m.brier, "baseline_f1": report.best_baseline_f1}
    mlflow.log_metrics({f"test_{k}": v for k, v in scores.items()})
    log_metadata(metadata={**scores, "test_rows": report.test_rows}, infer_model=True)
    predictions = pd.DataFrame({"actual": test_set[target].to_numpy(), "probability": probabilities})
    return report, predictions
