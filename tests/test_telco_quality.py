"""The shipped training config on the public Telco data meets the published bar."""

import pytest
from sklearn.model_selection import train_test_split

from churnops.data.schema import load_schema
from churnops.data.sources import load_raw
from churnops.data.validation import validate_and_clean
from churnops.modeling.evaluation import baseline_metrics, evaluate
from churnops.modeling.training import TrainingSpec, search_candidates
from churnops.platform.run_config import default_config, load_config

pytestmark = pytest.mark.slow


def test_telco_model_reaches_roc_auc_084_and_f1_060():
    config = load_config(default_config("training"))
    spec = TrainingSpec.model_validate(config["steps"]["train_model"]["parameters"]["training"])
    split = config["steps"]["split_dataset"]["parameters"]
    schema = load_schema("telco")
    frame, _ = validate_and_clean(load_raw(schema)[0], schema)
    train, test = train_test_split(frame, test_size=split["test_size"], random_state=split["random_state"],
                                   stratify=frame["Churn"])
    features, target = schema.feature_names, schema.target.column
    pipeline, summary = search_candidates(train[features], train[target], schema, spec)
    report = evaluate(summary.chosen, test[target].to_numpy(), pipeline.predict_proba(test[features])[:, 1],
                      summary.threshold, baseline_metrics(train[features], train[target], test[features],
                                                          test[target], 42))
    print(f"telco: {summary.chosen} ROC-AUC {report.metrics.roc_auc:.4f} F1 {report.metrics.f1:.4f} "
          f"PR-AUC {report.metrics.pr_auc:.4f} threshold {summary.threshold:.3f}")
    assert len(test) == 1409
    assert report.metrics.roc_auc >= 0.84
    assert report.metrics.f1 >= 0.60
    assert report.metrics.f1 > report.best_baseline_f1
