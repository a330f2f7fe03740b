import json
from pathlib import Path

import pytest

from churnops.modeling.evaluation import Curve, EvaluationReport, Metrics
from churnops.modeling.promotion import Champion, GateConfig, decide
from churnops.platform.run_config import ConfigError, default_config, load_config, with_overrides
from churnops.reporting.summary import format_console, format_markdown, training_summary, write_json


def params(config: dict) -> dict:
    return config["steps"]["load_dataset"]["parameters"]


def test_overrides_change_only_what_is_asked():
    base = load_config(default_config("training"))
    resolved = with_overrides(base, data="telco", rows=500, seed=3, no_cache=True)
    assert params(resolved) | {} == params(base) | {"dataset": "telco", "data_path": None, "rows": 500, "seed": 3}
    assert resolved["enable_cache"] is False and "enable_cache" not in base
    assert resolved["steps"]["train_model"] == base["steps"]["train_model"]


def test_data_file_needs_a_schema(tmp_path: Path):
    data = tmp_path / "mine.csv"
    data.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="needs --schema"):
        with_overrides({}, data=str(data))
    schema = tmp_path / "mine.yaml"
    schema.write_text("name: mine\n")
    resolved = with_overrides({}, data=str(data), schema=schema)
    assert params(resolved) == {"dataset": str(schema.resolve()), "data_path": str(data.resolve())}


@pytest.mark.parametrize(("data", "message"), [
    ("nope", "unknown data source 'nope'"),
    ("/no/such/file.parquet", "data file not found"),
    ("/no/such/schema.yaml", "dataset schema not found"),
])
def test_bad_data_sources_are_one_line_errors(data, message):
    with pytest.raises(ConfigError, match=message):
        with_overrides({}, data=data)


def _metrics(f1: float) -> Metrics:
    return Metrics(accuracy=0.8, precision=0.6, recall=0.6, f1=f1, roc_auc=0.85, pr_auc=0.6, brier=0.15,
                   threshold=0.4, confusion_matrix=[[50, 10], [10, 30]])


def test_summary_is_flat_json_with_self_explaining_keys(tmp_path: Path):
    decision = decide("churn_classifier", "7", _metrics(0.63), 0.29, GateConfig(),
                      Champion(version="6", metrics=_metrics(0.61)))
    evaluation = EvaluationReport(model_name="logistic_regression", test_rows=100, positive_rate=0.4,
                                  metrics=_metrics(0.63), baselines={"stratified": _metrics(0.29)},
                                  roc_curve=Curve(x=[0, 1], y=[0, 1]), pr_curve=Curve(x=[0, 1], y=[1, 0]))
    summary = training_summary(decision, evaluation, {"dataset": "synthetic", "rows": 500, "data_hash": "ab" * 32},
                               {"run_name": "r", "mlflow_hint": "m", "dashboard_hint": "d"})
    path = tmp_path / "out" / "summary.json"
    write_json(summary, path)
    loaded = json.loads(path.read_text())
    assert {"model_version": "7", "stage": "production", "gate_passed": True, "f1": 0.63, "roc_auc": 0.85,
            "previous_production_version": "6"}.items() <= loaded.items()
    assert all(not isinstance(v, dict | list) for v in loaded.values())
    assert "PROMOTED" in format_console(summary)
    markdown = format_markdown(summary)
    assert "promoted to production" in markdown and "| F1 | 0.6300 | 0.2900 | 0.6100 |" in markdown
