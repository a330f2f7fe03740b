from typing import Annotated, Any

import mlflow
import pandas as pd
from sklearn.pipeline import Pipeline
from zenml import log_metadata, step

from churnops.data.schema import DatasetSchema
from churnops.modeling.comparison import BootstrapConfig, metric_intervals
from churnops.modeling.evaluation import EvaluationReport, baseline_metrics, evaluate
from churnops.modeling.fairness import group_report
from churnops.modeling.targeting import customer_values, targeting_report, value_column
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
    intervals: dict[str, Any] | None = None,
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
    # Evidence: bootstrap intervals of every test metric and per-group metrics of the schema's slices.
    y_test = test_set[target].to_numpy()
    report.intervals = metric_intervals(y_test, probabilities, m.threshold, BootstrapConfig.model_validate(
        intervals or {}), estimates={name: getattr(m, name) for name in scores if name != "baseline_f1"})
    report.groups = group_report(test_set, y_test, probabilities, m.threshold, dataset_schema)
    bounds = {f"{name}_ci_{end}": getattr(i, end) for name, i in report.intervals.items() for end in ("low", "high")}
    mlflow.log_metrics({f"test_{k}": v for k, v in bounds.items()})
    if search_summary.targeting is not None and search_summary.value_threshold is not None:
        # The profit curve and policy comparison on the test set, at the thresholds tuned in training.
        targeting = search_summary.targeting
        report.targeting = t = targeting_report(
            test_set[target].to_numpy(), probabilities, customer_values(test_set, targeting, dataset_schema),
            targeting, value_column(targeting, dataset_schema), search_summary.threshold,
            search_summary.value_threshold)
        mlflow.log_metrics({"test_net_gain_model": t.model.net_gain, "test_net_gain_everyone": t.everyone.net_gain,
                            "test_net_gain_random": t.random.net_gain, "test_net_gain_best": t.best_net_gain,
                            "test_contacts_model": t.model.contacts})
    log_metadata(metadata={**scores, **bounds, "test_rows": report.test_rows}, infer_model=True)
    predictions = pd.DataFrame({"actual": test_set[target].to_numpy(), "probability": probabilities})
    return report, predictions
