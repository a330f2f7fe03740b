"""Monitoring logic on real data and a real model, without ZenML: fast."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnops.data.profile import build_reference_profile
from churnops.data.schema import load_schema
from churnops.data.synthetic import DriftSpec, SyntheticSpec, generate_customers
from churnops.data.validation import validate_and_clean
from churnops.modeling.training import CandidateSpec, best_f1_threshold, build_pipeline
from churnops.monitoring.alerts import dispatch_alert
from churnops.monitoring.decision import DecisionRules, decide
from churnops.monitoring.drift import DriftThresholds, detect_data_drift, detect_prediction_drift
from churnops.monitoring.evidently_reports import ReportSettings, build_reports
from churnops.monitoring.feedback import (
    FeedbackError,
    append_feedback,
    feedback_records,
    join_outcomes,
    parse_feedback_csv,
    read_feedback,
)
from churnops.monitoring.inference_log import WindowSpec, conform_features, read_window, write_partitioned
from churnops.monitoring.performance import evaluate_live_performance
from churnops.monitoring.retraining import RetrainingSettings, production_training_rows, write_training_table

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
DRIFTED = ["age", "payment_method"]  # independent of every other generated feature


@pytest.fixture(scope="module")
def schema():
    return load_schema("synthetic")


@pytest.fixture(scope="module")
def trained(schema):
    """A real model on clean synthetic data, its reference profile and its test-set probabilities."""
    clean, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=4000, seed=1)), schema)
    train, test = clean.iloc[:3000], clean.iloc[3000:]
    candidate = CandidateSpec(estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 2000})
    model = build_pipeline(schema, candidate, random_state=0).fit(train[schema.feature_names], train["churned"])
    test_probabilities = model.predict_proba(test[schema.feature_names])[:, 1]
    threshold, _ = best_f1_threshold(test["churned"].to_numpy(), test_probabilities)
    return {"model": model, "profile": build_reference_profile(clean, schema), "train": train,
            "test_probabilities": test_probabilities, "threshold": threshold}


def served_log(customers: pd.DataFrame, trained: dict, schema, start: datetime = NOW - timedelta(hours=6),
               version: str = "1") -> pd.DataFrame:
    """What the service would log for ``customers``, spread over the hours after ``start``."""
    probabilities = trained["model"].predict_proba(customers[schema.feature_names])[:, 1]
    log = customers[schema.feature_names].copy()
    log["request_id"] = [f"req-{version}-{start:%H%M}-{i}" for i in range(len(customers))]
    log["timestamp"] = pd.Timestamp(start) + pd.to_timedelta(np.linspace(0, 5 * 3600, len(customers)), unit="s")
    log["model_name"] = "churn_classifier"
    log["model_version"] = version
    log["customer_key"] = [f"key-{c}" for c in customers["customer_id"]]
    log["probability"] = probabilities
    log["label"] = (probabilities >= trained["threshold"]).astype(int)
    return log


def monitor(log_dir: Path, trained: dict, schema, feedback: pd.DataFrame | None = None,
            rules: DecisionRules | None = None, retrain_on_drift: bool = False):
    frame, summary = read_window(log_dir, WindowSpec(hours=24), now=NOW)
    frame, check = conform_features(frame, schema)
    thresholds = DriftThresholds()
    data_drift = detect_data_drift(frame, trained["profile"], schema, thresholds, check.missing_features)
    prediction = detect_prediction_drift(frame, trained["test_probabilities"], "1", trained["threshold"], thresholds)
    joined = join_outcomes(frame, feedback if feedback is not None else read_feedback(log_dir / "none.parquet"))
    performance = evaluate_live_performance(joined, trained["threshold"], gate_f1=0.5, gate_roc_auc=0.7,
                                            min_labelled=100, model_version="1")
    decision = decide("churn_classifier", "1", summary, check, data_drift, prediction, performance,
                      rules or DecisionRules(), retrain_on_drift)
    return frame, summary, check, data_drift, prediction, performance, decision


def test_no_drift_no_alert(tmp_path, trained, schema):
    write_partitioned(served_log(generate_customers(SyntheticSpec(rows=3000, seed=7)), trained, schema),
                      tmp_path, "svc")
    *_, data_drift, prediction, _, decision = monitor(tmp_path, trained, schema)
    assert data_drift.rows == 3000
    assert data_drift.drifted_features == []
    assert not prediction.drifted
    assert decision.alert_count == 0 and not decision.alert and decision.action == "none"
    assert decision.message == "no drift alerts"


def test_drift_in_two_features_flags_exactly_those(tmp_path, trained, schema):
    customers = generate_customers(SyntheticSpec(rows=3000, seed=8, drift=DriftSpec(severity=1.0, features=DRIFTED)))
    write_partitioned(served_log(customers, trained, schema), tmp_path, "svc")
    frame, *_, data_drift, _, _, decision = monitor(tmp_path, trained, schema)
    assert sorted(data_drift.drifted_features) == sorted(DRIFTED)
    assert data_drift.feature("age").z_score > 0.3 and data_drift.feature("age").psi > 0.2
    assert data_drift.feature("payment_method").shifted_category == "Electronic check"
    assert decision.alert_count >= 2

    drift_report, summary_report = build_reports(frame, trained["train"], schema, ReportSettings())
    assert sorted(drift_report.drifted_columns) == sorted(DRIFTED)
    assert drift_report.drift_share == pytest.approx(2 / len(schema.feature_names))
    assert not drift_report.sampled and drift_report.current_rows == 3000
    for report in (drift_report, summary_report):
        assert len(report.html) > 100_000 and "<html" in report.html.lower()
        assert report.snapshot["metrics"]


def test_evidently_report_samples_above_limit_and_says_so(trained, schema):
    customers = generate_customers(SyntheticSpec(rows=2500, seed=9))
    drift_report, summary_report = build_reports(customers, trained["train"], schema, ReportSettings(max_rows=1000))
    assert drift_report.sampled and drift_report.current_rows == 1000 and drift_report.window_rows == 2500
    for report in (drift_report, summary_report):
        assert "1,000 of 2,500 window rows" in report.html
        assert "used every row" in report.html


def test_heavy_drift_decision_alerts_and_retrains_only_when_configured(tmp_path, trained, schema):
    customers = generate_customers(SyntheticSpec(rows=3000, seed=10, drift=DriftSpec(severity=1.5)))
    write_partitioned(served_log(customers, trained, schema), tmp_path, "svc")
    *_, off = monitor(tmp_path, trained, schema, retrain_on_drift=False)
    *_, on = monitor(tmp_path, trained, schema, retrain_on_drift=True)
    assert off.retrain_recommended and off.alert and off.action == "alert"
    assert "analysis and retraining recommended" in off.message
    assert on.action == "retrain"
    assert off.drift_share > 0.3


def test_performance_drop_in_feedback_alerts(tmp_path, trained, schema):
    # Concept drift: customers look the same, but churn for other reasons.
    customers = generate_customers(SyntheticSpec(rows=3000, seed=11, drift=DriftSpec(concept=3.0)))
    log = served_log(customers, trained, schema)
    write_partitioned(log, tmp_path, "svc")
    feedback = feedback_records(log["request_id"], [None] * len(log), customers["churned"])
    *_, performance, decision = monitor(tmp_path, trained, schema, feedback=feedback)
    assert performance.labelled_rows == 3000 and performance.matched_by_request == 3000
    assert performance.below_gate, performance.metrics
    assert decision.performance_below_gate and decision.alert and decision.retrain_recommended
    assert decision.drifted_features == []  # inputs did not move: only the feedback shows it

    # The same traffic with its true (undrifted) outcomes passes.
    healthy = generate_customers(SyntheticSpec(rows=3000, seed=11))
    assert (healthy[schema.feature_names].to_numpy() == customers[schema.feature_names].to_numpy()).all()
    feedback_ok = feedback_records(log["request_id"], [None] * len(log), healthy["churned"])
    *_, performance_ok, decision_ok = monitor(tmp_path, trained, schema, feedback=feedback_ok)
    assert not performance_ok.below_gate and performance_ok.metrics.f1 > 0.5
    assert not decision_ok.alert


def test_live_performance_scores_only_the_monitored_version(tmp_path, trained, schema):
    customers = generate_customers(SyntheticSpec(rows=600, seed=17))
    current = served_log(customers.iloc[:400], trained, schema, version="1")
    # An older version that served badly before a redeploy: its labels are all wrong.
    older = served_log(customers.iloc[400:], trained, schema, start=NOW - timedelta(hours=12), version="0")
    older["label"] = 1 - customers["churned"].iloc[400:].to_numpy()
    write_partitioned(pd.concat([older, current]), tmp_path, "svc")
    outcomes = pd.concat([customers["churned"].iloc[400:], customers["churned"].iloc[:400]])
    feedback = feedback_records(pd.concat([older, current])["request_id"], [None] * 600, outcomes)
    *_, performance, _ = monitor(tmp_path, trained, schema, feedback=feedback)
    assert (performance.labelled_rows, performance.other_version_rows) == (400, 200)
    assert performance.metrics.f1 > 0.5 and not performance.below_gate


def test_feedback_joins_by_request_then_customer_and_latest_wins(tmp_path):
    predictions = pd.DataFrame({"request_id": ["r1", "r2", "r3", "r4"], "customer_key": ["k1", "k2", "k3", None]})
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    feedback = pd.concat([
        feedback_records(["r1", None], [None, "k2"], [0, 1], early),
        feedback_records(["r1"], [None], [1], late),
    ])
    path = tmp_path / "feedback" / "feedback.parquet"
    assert append_feedback(path, feedback) == 3
    joined = join_outcomes(predictions, read_feedback(path))
    assert joined["outcome"].tolist()[:2] == [1.0, 1.0]
    assert joined["matched_by"].tolist() == ["request", "customer", "none", "none"]


def test_feedback_csv_rejects_bad_rows_and_ingests_nothing(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("id,outcome\nr1,1\nr2,maybe\n,0\n")
    with pytest.raises(FeedbackError, match=r"row 3: column 'outcome' is 'maybe'.*row 4: column 'id' is empty"):
        parse_feedback_csv(bad, {"r1", "r2"}, customer_keys=None)
    good = tmp_path / "good.csv"
    good.write_text("id,outcome\nr1,churned\nC-9,No\n")
    records, by_request, by_customer = parse_feedback_csv(good, {"r1"},
                                                          customer_keys=lambda ids: [f"hash({c})" for c in ids])
    assert (by_request, by_customer) == (1, 1)
    assert records["request_id"].tolist() == ["r1", None]
    assert records["customer_key"].tolist() == [None, "hash(C-9)"]
    assert records["outcome"].tolist() == [1, 0]
    with pytest.raises(FeedbackError, match="cannot be pseudonymised"):
        parse_feedback_csv(good, {"r1"}, customer_keys=None)


def test_reader_skips_and_counts_bad_files_and_records(tmp_path, trained, schema):
    customers = generate_customers(SyntheticSpec(rows=500, seed=12))
    log = served_log(customers, trained, schema)
    log.loc[:9, "request_id"] = None
    log.loc[10:14, "probability"] = 1.5
    write_partitioned(log, tmp_path, "svc")
    day = tmp_path / f"date={NOW:%Y-%m-%d}"
    (day / "broken-000000.parquet").write_bytes(b"not parquet at all")
    (day / "broken-000001.arrow").write_bytes(b"not Arrow IPC either")
    log.drop(columns=["probability"]).head(7).to_parquet(day / "old-000000.parquet")
    # Yesterday's and tomorrow's files are outside the 24 h window.
    outside = served_log(customers.head(50), trained, schema, start=NOW - timedelta(hours=40))
    write_partitioned(outside, tmp_path, "svc")

    frame, summary = read_window(tmp_path, WindowSpec(hours=24), now=NOW)
    assert summary.rows_in_window == len(frame) == 485
    assert summary.malformed_by_reason == {"missing request_id": 10, "missing or out-of-range probability": 5,
                                           "file without required columns": 7}
    assert summary.files_skipped == 3
    assert {Path(s.path).name for s in summary.skipped_files} == {"broken-000000.parquet", "broken-000001.arrow",
                                                                  "old-000000.parquet"}
    assert "22 malformed records skipped" in summary.describe()

    last, _ = read_window(tmp_path, WindowSpec(last=100), now=NOW)
    assert len(last) == 100 and last["timestamp"].is_monotonic_increasing
    assert last["request_id"].iloc[-1] == log["request_id"].iloc[-1]


def test_empty_window_is_a_clear_no_op(tmp_path, trained, schema):
    frame, _summary, _check, data_drift, prediction, _performance, decision = monitor(tmp_path, trained, schema)
    assert frame.empty and data_drift.drifted_features == [] and prediction.rows == 0
    assert decision.action == "none" and not decision.alert
    assert decision.message.startswith("empty window: no predictions logged in the last 24 h")
    drift_report, summary_report = build_reports(frame, trained["train"], schema, ReportSettings())
    assert "holds no predictions" in drift_report.html and "holds no predictions" in summary_report.html


def test_schema_mismatch_reported_per_column(tmp_path, trained, schema):
    log = served_log(generate_customers(SyntheticSpec(rows=400, seed=13)), trained, schema)
    log = log.drop(columns=["gender"]).rename(columns={"age": "customer_age"})
    log.loc[:4, "contract_type"] = "Lifetime"
    # One writer sent tenure as text (some of it garbage), another as numbers: the files disagree on type.
    as_text = log.iloc[:200].astype({"tenure_months": str})
    as_text.loc[:19, "tenure_months"] = "n/a"
    write_partitioned(as_text, tmp_path, "text-client")
    write_partitioned(log.iloc[200:], tmp_path, "svc")
    *_, check, data_drift, _, _, decision = monitor(tmp_path, trained, schema)
    problems = {(i.column, i.problem): i for i in check.issues}
    assert set(problems) == {("gender", "missing"), ("age", "missing"), ("tenure_months", "unparseable"),
                             ("contract_type", "unknown_categories"), ("customer_age", "not_a_feature")}
    assert problems[("tenure_months", "unparseable")].rows == 20
    assert problems[("contract_type", "unknown_categories")].rows == 5
    assert data_drift.unchecked == {"gender": "missing from the inference log", "age": "missing from the inference log"}
    assert decision.alert and len(decision.schema_issues) == 4
    assert any("column 'gender'" in issue for issue in decision.schema_issues)


def test_alert_goes_to_log_and_webhook(tmp_path, trained, schema):
    received: list[dict] = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        customers = generate_customers(SyntheticSpec(rows=1000, seed=14, drift=DriftSpec(severity=1.5)))
        write_partitioned(served_log(customers, trained, schema), tmp_path, "svc")
        *_, decision = monitor(tmp_path, trained, schema)
        url = f"http://127.0.0.1:{server.server_port}/hook"
        delivery = dispatch_alert(decision, tmp_path / "alerts.jsonl", url, run_name="run-1")
    finally:
        server.shutdown()
        server.server_close()
    assert delivery.channels == ["console", "alert_log", "webhook"] and delivery.webhook_status == "HTTP 204"
    assert received and received[0]["drift_share"] == decision.drift_share
    assert "analysis and retraining recommended" in received[0]["text"]
    logged = [json.loads(line) for line in (tmp_path / "alerts.jsonl").read_text().splitlines()]
    assert logged[0]["run_name"] == "run-1"
    # An unreachable webhook is recorded, not fatal.
    failed = dispatch_alert(decision, tmp_path / "alerts.jsonl", url, timeout_seconds=1)
    assert failed.webhook_status.startswith("failed") and "webhook" not in failed.channels


def test_retraining_table_mixes_labelled_production_rows_and_validates(tmp_path, trained, schema):
    customers = generate_customers(SyntheticSpec(rows=600, seed=15, drift=DriftSpec(severity=1.0)))
    log = served_log(customers, trained, schema)
    write_partitioned(log, tmp_path / "log", "svc")
    frame, _ = read_window(tmp_path / "log", WindowSpec(hours=24), now=NOW)
    frame, _ = conform_features(frame, schema)
    feedback = feedback_records(log["request_id"].head(400), [None] * 400, customers["churned"].head(400))
    joined = join_outcomes(frame, feedback)
    production = production_training_rows(joined[joined["outcome"].notna()], schema, max_rows=10_000)
    assert len(production) == 400 and production["customer_id"].str.startswith("prod-cust-").all()
    table = write_training_table(trained["train"], production, schema, RetrainingSettings(reference_rows=1000),
                                 tmp_path / "retrain")
    assert (table.rows, table.production_rows, table.reference_rows) == (1400, 400, 1000)
    reloaded_schema = load_schema(table.schema_path)
    raw = pd.read_parquet(reloaded_schema.source.resolved_path())
    cleaned, report = validate_and_clean(raw, reloaded_schema)
    assert report.passed and len(cleaned) == 1400


def test_materializers_store_json_render_html_and_extract_metadata(tmp_path, trained, schema, session_paths):
    from zenml.enums import VisualizationType

    from churnops.monitoring.report import EvidentlySummary, MonitoringReport
    from materializers import monitoring as m

    customers = generate_customers(SyntheticSpec(rows=1500, seed=16, drift=DriftSpec(severity=1.0, features=DRIFTED)))
    write_partitioned(served_log(customers, trained, schema), tmp_path, "svc")
    frame, summary, check, data_drift, prediction, performance, decision = monitor(tmp_path, trained, schema)
    drift_report, _ = build_reports(frame, trained["train"], schema, ReportSettings())
    report = MonitoringReport(decision=decision, log=summary, schema_check=check, data_drift=data_drift,
                              prediction_drift=prediction, performance=performance,
                              evidently=EvidentlySummary.of(drift_report))
    assert not decision.alert  # two drift alerts: below every rule
    delivery = dispatch_alert(decision.model_copy(update={"alert": True}), tmp_path / "alerts.jsonl")
    cases = [
        (m.EvidentlyReportMaterializer, drift_report, "drift_share", "Dataset Drift"),
        (m.LogReadSummaryMaterializer, summary, "window_rows", "Inference log window"),
        (m.SchemaCheckMaterializer, check, "schema_issues", "Every feature"),
        (m.DataDriftResultMaterializer, data_drift, "drifted_features", "payment_method"),
        (m.PredictionDriftMaterializer, prediction, "prediction_psi", "<svg"),
        (m.LivePerformanceMaterializer, performance, "labelled_rows", "Live performance"),
        (m.MonitoringDecisionMaterializer, decision, "drift_share", "Monitoring decision"),
        (m.MonitoringReportMaterializer, report, "action", "Prediction drift"),
        (m.AlertDeliveryMaterializer, delivery, "alert_raised", "alerts.jsonl"),
    ]
    for materializer_class, data, metadata_key, html_text in cases:
        # The local artifact store only writes inside its own folder.
        uri = session_paths.artifact_store / "monitoring-materializer-tests" / materializer_class.__name__
        uri.mkdir(parents=True, exist_ok=True)
        materializer = materializer_class(str(uri))
        materializer.save(data)
        assert not list(uri.glob("*.pkl")), materializer_class
        assert materializer.load(type(data)) == data, materializer_class
        visualizations = materializer.save_visualizations(data)
        ((path, kind),) = visualizations.items()
        page = Path(path).read_text()
        assert kind == VisualizationType.HTML and html_text in page, materializer_class
        assert metadata_key in materializer.extract_metadata(data), materializer_class
    assert m.DataDriftResultMaterializer(str(uri)).extract_metadata(data_drift)["drifted_features"] == DRIFTED


def test_config_mistakes_are_one_line_errors(tmp_path):
    import yaml

    from churnops.commands.monitoring import resolve_config
    from churnops.core.errors import UserError
    from churnops.core.settings import CONFIGS_DIR, state_paths

    paths = state_paths(tmp_path / "home")
    config = yaml.safe_load((CONFIGS_DIR / "monitoring.yaml").read_text())
    resolved, retraining = resolve_config(config, paths, last=500)
    params = resolved["parameters"]
    assert (params["window_hours"], params["last"]) == (None, 500) and "retraining" not in resolved
    assert params["feedback_path"] == str(paths.feedback_log) and retraining.reference_rows == 5000
    config["parameters"]["thresholds"]["zscore"] = 0.3
    with pytest.raises(UserError, match=r"^monitoring config: parameters\.thresholds\.zscore: Extra inputs"):
        resolve_config(config, paths)
