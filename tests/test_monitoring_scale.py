"""Monitoring out of core: the streamed window (manifest, sketches, chunked join) gives exactly
what the in-memory monitor gives, the Evidently sample is bounded and stated, and a log file
that changes under the pipeline is refused."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy.stats import ks_2samp

from churnops.data.profile import build_reference_profile
from churnops.data.schema import load_schema
from churnops.data.synthetic import DriftSpec, SyntheticSpec, generate_customers
from churnops.monitoring.drift import (
    DriftThresholds,
    PredictionDriftSketch,
    detect_data_drift,
    detect_prediction_drift,
)
from churnops.monitoring.evidently_reports import ReportSettings, build_reports
from churnops.monitoring.feedback import feedback_records, join_outcomes
from churnops.monitoring.inference_log import WindowSpec, conform_features, read_window, write_partitioned
from churnops.monitoring.performance import evaluate_live_performance
from churnops.monitoring.window import (
    WindowError,
    WindowManifest,
    scan_window,
    window_data_drift,
    window_labelled_rows,
    window_live_performance,
    window_prediction_drift,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
SCHEMA = load_schema("synthetic")
THRESHOLDS = DriftThresholds()


def assert_same(streamed: Any, in_memory: Any, where: str = "") -> None:
    """Equal field by field; floats to 1e-9 relative (sums in another order)."""
    if isinstance(streamed, dict):
        assert set(streamed) == set(in_memory), where
        for key in streamed:
            assert_same(streamed[key], in_memory[key], f"{where}.{key}")
    elif isinstance(streamed, list):
        assert len(streamed) == len(in_memory), where
        for index, (a, b) in enumerate(zip(streamed, in_memory, strict=True)):
            assert_same(a, b, f"{where}[{index}]")
    elif isinstance(streamed, float) and isinstance(in_memory, float):
        assert streamed == pytest.approx(in_memory, rel=1e-9, abs=1e-12), where
    else:
        assert streamed == in_memory, where


@pytest.fixture(scope="module")
def reference() -> dict[str, Any]:
    train = generate_customers(SyntheticSpec(rows=3000, seed=1))
    rng = np.random.default_rng(0)
    return {"train": train, "profile": build_reference_profile(train, SCHEMA),
            # Rounded, so served and test-set probabilities tie: the KS statistic must handle ties.
            "test_probabilities": np.round(rng.beta(2, 5, 800), 2)}


def logged(customers: pd.DataFrame, start: datetime, prefix: str, version: str = "1") -> pd.DataFrame:
    rng = np.random.default_rng(len(customers))
    log = customers[SCHEMA.feature_names].copy()
    log["request_id"] = [f"{prefix}-{i}" for i in range(len(customers))]
    # Whole minutes: many rows share a timestamp, so "the last N" must break ties as read_window does.
    log["timestamp"] = pd.Timestamp(start) + pd.to_timedelta(np.arange(len(customers)) // 7, unit="min")
    log["model_name"] = "churn_classifier"
    log["model_version"] = version
    log["customer_key"] = [f"key-{c}" for c in customers["customer_id"]]
    log["probability"] = np.round(rng.beta(2, 4, len(customers)), 2)
    log["label"] = (log["probability"] >= 0.4).astype(int)
    return log


@pytest.fixture(scope="module")
def messy_log(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two days of small files from three writers: drift, a second model version, malformed
    records, a feature sent as text by one writer, unknown categories, an extra column, a
    missing column in some files, unreadable files; outcomes by request id and by customer key."""
    folder = tmp_path_factory.mktemp("log")
    drifted = generate_customers(SyntheticSpec(rows=2400, seed=5, drift=DriftSpec(severity=1.0)))
    # From 22:00 the day before to about 04:00: two day partitions.
    main = logged(drifted, NOW - timedelta(hours=14), "svc")
    main.loc[:9, "request_id"] = None
    main.loc[10:14, "probability"] = 1.5
    main.loc[20:30, "contract_type"] = "Lifetime"
    main.loc[40:60, "age"] = np.nan
    write_partitioned(main, folder, "svc", rows_per_file=350)
    other = logged(generate_customers(SyntheticSpec(rows=500, seed=6)), NOW - timedelta(hours=5), "old", version="2")
    write_partitioned(other.drop(columns=["gender"]).assign(shoe_size=42), folder, "old", rows_per_file=200)
    as_text = logged(generate_customers(SyntheticSpec(rows=300, seed=7)), NOW - timedelta(hours=3), "text")
    as_text = as_text.astype({"tenure_months": str})
    as_text.loc[:11, "tenure_months"] = "n/a"
    write_partitioned(as_text, folder, "text")
    # Before the 24 h window, inside the 48 h one.
    write_partitioned(logged(generate_customers(SyntheticSpec(rows=200, seed=4)), NOW - timedelta(hours=30), "early"),
                      folder, "early", rows_per_file=150)
    day = folder / f"date={NOW:%Y-%m-%d}"
    (day / "broken-000000.arrow").write_bytes(b"not Arrow IPC")
    main.drop(columns=["probability"]).head(9).to_parquet(day / "old-000099.parquet")
    feedback = pd.concat([
        feedback_records(main["request_id"].dropna().iloc[::3], [None] * len(main["request_id"].dropna().iloc[::3]),
                         drifted["churned"].loc[main["request_id"].dropna().index[::3]]),
        feedback_records([None] * 100, main["customer_key"].iloc[2::9].head(100),
                         np.arange(100) % 2),
        feedback_records(as_text["request_id"].iloc[:50], [None] * 50, np.ones(50, dtype=int),
                         received_at=NOW + timedelta(hours=1)),
    ], ignore_index=True)
    return {"folder": folder, "feedback": feedback}


def in_memory(folder: Path, window: WindowSpec, reference: dict[str, Any], feedback: pd.DataFrame) -> dict[str, Any]:
    frame, summary = read_window(folder, window, now=NOW)
    frame, check = conform_features(frame, SCHEMA)
    return {
        "frame": frame, "summary": summary, "check": check,
        "drift": detect_data_drift(frame, reference["profile"], SCHEMA, THRESHOLDS, check.missing_features),
        "prediction": detect_prediction_drift(frame, reference["test_probabilities"], "1", 0.4, THRESHOLDS),
        "performance": evaluate_live_performance(join_outcomes(frame, feedback), 0.4, 0.5, 0.7, 20,
                                                 expected={"f1": 0.6}, model_version="1"),
    }


def streamed(folder: Path, window: WindowSpec, reference: dict[str, Any], feedback: pd.DataFrame,
             sample_rows: int = 100_000) -> dict[str, Any]:
    manifest, summary, check, sample = scan_window(folder, window, SCHEMA, sample_rows=sample_rows, now=NOW)
    # Through JSON, as the next step gets it from the artifact store.
    manifest = WindowManifest.model_validate_json(manifest.model_dump_json())
    return {
        "manifest": manifest, "sample": sample, "summary": summary, "check": check,
        "drift": window_data_drift(manifest, reference["profile"], SCHEMA, THRESHOLDS, check.missing_features),
        "prediction": window_prediction_drift(manifest, reference["test_probabilities"], "1", 0.4, THRESHOLDS),
        "performance": window_live_performance(manifest, feedback, 0.4, 0.5, 0.7, 20, expected={"f1": 0.6},
                                               model_version="1"),
    }


@pytest.mark.parametrize("window", [WindowSpec(hours=24), WindowSpec(hours=48), WindowSpec(last=1000)],
                         ids=["24h", "48h", "last-1000"])
def test_the_streamed_window_gives_exactly_the_in_memory_figures(messy_log, reference, window):
    expected = in_memory(messy_log["folder"], window, reference, messy_log["feedback"])
    got = streamed(messy_log["folder"], window, reference, messy_log["feedback"])
    for part in ("summary", "check", "drift", "prediction", "performance"):
        assert_same(got[part].model_dump(), expected[part].model_dump(), part)
    frame = expected["frame"]
    assert got["manifest"].rows == len(frame) == got["summary"].rows_in_window > 0
    # The window is small, so the "sample" is all of it, in the same order.
    assert got["sample"]["request_id"].tolist() == frame["request_id"].tolist()
    assert got["check"].issues, "the messy log must exercise the schema check"
    assert got["performance"].other_version_rows > 0
    if window.hours == 48:
        assert got["performance"].matched_by_customer > 0 and got["summary"].rows_malformed > 0
    labelled = window_labelled_rows(got["manifest"], messy_log["feedback"], SCHEMA)
    joined = join_outcomes(frame, messy_log["feedback"])
    assert sorted(labelled["request_id"]) == sorted(joined.loc[joined["outcome"].notna(), "request_id"])


def test_prediction_sketch_ks_is_exact_with_ties_over_many_chunks():
    rng = np.random.default_rng(3)
    reference = np.round(rng.beta(2, 5, 700), 2)
    served = np.round(rng.beta(2.5, 4, 20_000), 2)
    sketch = PredictionDriftSketch(reference, "1", 0.5)
    for chunk in np.array_split(served, 17):
        sketch.add(pd.Series(["1"] * len(chunk)), chunk)
    result = sketch.result(THRESHOLDS)
    assert result.ks_statistic == pytest.approx(ks_2samp(reference, served).statistic, abs=1e-12)
    assert result.current_mean == pytest.approx(served.mean())
    whole = detect_prediction_drift(pd.DataFrame({"model_version": "1", "probability": served}), reference, "1", 0.5,
                                    THRESHOLDS)
    assert_same(result.model_dump(), whole.model_dump())


def test_the_evidently_sample_is_bounded_uniform_and_stated(tmp_path, reference):
    log = logged(generate_customers(SyntheticSpec(rows=3200, seed=8)), NOW - timedelta(hours=10), "s")
    write_partitioned(log, tmp_path, "svc", rows_per_file=400)
    manifest, _summary, _check, sample = scan_window(tmp_path, WindowSpec(hours=24), SCHEMA, sample_rows=1000,
                                                     now=NOW)
    assert manifest.rows == 3200 and manifest.sample_rows == len(sample) == 1000
    assert sample["request_id"].is_unique and set(sample["request_id"]) <= set(log["request_id"])
    # Uniform over the window: every file of 400 rows contributes about its share (125 expected).
    per_file = sample["request_id"].str.split("-").str[1].astype(int) // 400
    assert per_file.value_counts().between(85, 165).all() and per_file.nunique() == 8
    again = scan_window(tmp_path, WindowSpec(hours=24), SCHEMA, sample_rows=1000, now=NOW)[3]
    assert again["request_id"].tolist() == sample["request_id"].tolist(), "the sample is seeded"
    drift_report, summary_report = build_reports(sample, reference["train"], SCHEMA, ReportSettings(max_rows=1000),
                                                 window_rows=manifest.rows)
    assert drift_report.sampled and drift_report.current_rows == 1000 and drift_report.window_rows == 3200
    for report in (drift_report, summary_report):
        assert "1,000 of 3,200 window rows" in report.html and "used every row" in report.html


def test_a_log_file_changed_after_the_scan_is_refused(tmp_path, reference):
    log = logged(generate_customers(SyntheticSpec(rows=600, seed=9)), NOW - timedelta(hours=2), "c")
    files = write_partitioned(log, tmp_path, "svc", rows_per_file=300)
    manifest = scan_window(tmp_path, WindowSpec(hours=24), SCHEMA, now=NOW)[0]
    assert [Path(f.path) for f in manifest.files] == files
    assert all(len(f.sha256) == 64 and f.bytes == f_path.stat().st_size for f, f_path in zip(manifest.files, files,
                                                                                            strict=True))
    os.utime(files[1], ns=(files[1].stat().st_atime_ns, files[1].stat().st_mtime_ns + 10**9))
    with pytest.raises(WindowError, match=f"{files[1].name} changed after the window was read"):
        window_data_drift(manifest, reference["profile"], SCHEMA, THRESHOLDS)
    files[0].unlink()
    with pytest.raises(WindowError, match=f"{files[0].name} of the window is gone"):
        window_prediction_drift(manifest, reference["test_probabilities"], "1", 0.4, THRESHOLDS)
