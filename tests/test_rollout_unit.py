"""Shadow and canary without a server: routing, the shadow queue, both logs, rollout counters, the
live comparison on what was logged, and the promote / rollback / wait rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnops.core.settings import StatePaths
from churnops.data.schema import load_schema
from churnops.data.synthetic import SyntheticSpec, generate_customers
from churnops.data.validation import validate_and_clean
from churnops.modeling.comparison import BootstrapConfig, Interval, Scored, paired_differences
from churnops.modeling.training import CandidateSpec, build_pipeline
from churnops.monitoring.feedback import append_feedback, feedback_records, read_feedback
from churnops.monitoring.inference_log import list_partitions, read_log_file
from churnops.monitoring.live_comparison import (
    LiveComparison,
    Rollout,
    RolloutRules,
    VersionLive,
    compare_live,
    decide_rollout,
)
from churnops.serving.config import ServingConfig
from churnops.serving.log_format import join_row_ids
from churnops.serving.packaging import ModelCard, write_model_files
from churnops.serving.rollout import attach_challenger, route_to_challenger, shadow_log_dir, stats_dir
from churnops.serving.rollout_stats import RolloutStatsRecorder, read_rollout_stats
from churnops.serving.runtime import ServingRuntime

SCHEMA = load_schema("synthetic")
SALT = b"0123456789abcdef0123456789abcdef"


def fitted(seed: int, c: float):
    frame, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=2000, seed=seed)), SCHEMA)
    candidate = CandidateSpec(estimator="sklearn.linear_model.LogisticRegression", params={"C": c, "max_iter": 1000})
    return build_pipeline(SCHEMA, candidate, 42).fit(frame[SCHEMA.feature_names], frame[SCHEMA.target.column])


@pytest.fixture(scope="module")
def models():
    return {"3": fitted(3, 1.0), "4": fitted(4, 0.05)}


def customers(rows: int, seed: int) -> tuple[list[dict], pd.DataFrame]:
    frame = generate_customers(SyntheticSpec(rows=rows, seed=seed))
    body = json.loads(frame.drop(columns=[SCHEMA.target.column]).to_json(orient="records"))
    for record in body:
        for feature in SCHEMA.numeric:
            if feature.kind == "int" and record[feature.name] is not None:
                record[feature.name] = int(record[feature.name])
    return body, frame


def serving(tmp_path: Path, models, mode: str, percent: float = 0.0) -> tuple[ServingRuntime, object]:
    folders = {}
    for version, pipeline in models.items():
        folder = tmp_path / f"model-{version}"
        folder.mkdir()
        write_model_files(folder, pipeline, SCHEMA, ModelCard(model_name="churn_classifier", model_version=version,
                                                             stage=None, threshold=0.4 if version == "3" else 0.35,
                                                             metrics={}, dataset="synthetic"))
        folders[version] = folder
    config = ServingConfig.model_validate({"inference_log": {"flush_seconds": 0.05}})
    paths = StatePaths(tmp_path / "home")
    runtime = ServingRuntime(folders["3"], "churn_classifier:3", config, paths)
    rollout = attach_challenger(runtime, folders["4"], config, paths, mode=mode, rollout_id="r-test",
                                started_at="2020-01-01T00:00:00+00:00", canary_percent=percent)
    return runtime, rollout


def logged(folder: Path) -> pd.DataFrame:
    parts = [join_row_ids(read_log_file(path)).to_pandas() for _, files in list_partitions(folder) for path in files]
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=["request_id", "model_version"])
    frame["model_version"] = frame["model_version"].astype(str)
    return frame


def features(frame: pd.DataFrame) -> pd.DataFrame:
    return frame[SCHEMA.feature_names]


def test_canary_routing_is_stable_per_customer_and_near_the_share():
    ids = [f"C-{i:06d}" for i in range(20_000)]
    routed = route_to_challenger(ids, 30.0, SALT)
    assert abs(routed.mean() - 0.30) < 0.02
    assert np.array_equal(routed, route_to_challenger(list(reversed(ids)), 30.0, SALT)[::-1])  # order-free
    assert not route_to_challenger([None, None], 99.0, SALT).any()  # no customer id: production
    assert not np.array_equal(routed, route_to_challenger(ids, 30.0, b"another salt of 32 bytes........"))
    # A larger share keeps everyone the smaller share had: widening a canary never moves a customer back.
    assert (route_to_challenger(ids, 50.0, SALT) >= routed).all()


def test_shadow_answers_with_production_and_logs_the_challenger_off_the_response_path(tmp_path, models):
    runtime, rollout = serving(tmp_path, models, "shadow")
    body, frame = customers(40, seed=21)
    answers = [json.loads(runtime.predict(json.dumps(record).encode(), f"req-{i}").body)
               for i, record in enumerate(body[:30])]
    batch = json.loads(runtime.predict_batch(json.dumps(body[30:]).encode(), "application/json", "batch-1").body)
    assert {a["model_version"] for a in answers} == {"3"} and batch["model_version"] == "3"
    assert "answered_by" not in batch
    expected = models["3"].predict_proba(features(frame))[:, 1]
    np.testing.assert_allclose([a["churn_probability"] for a in answers], expected[:30], atol=1e-12)
    assert rollout.shadow.drain()
    runtime.close()
    served, shadow = logged(runtime.log_directory), logged(shadow_log_dir(runtime.log_directory))
    assert set(served["model_version"]) == {"3"} and set(shadow["model_version"]) == {"4"}
    ids = [f"req-{i}" for i in range(30)] + [f"batch-1-{i}" for i in range(10)]
    assert sorted(served["request_id"]) == sorted(ids) == sorted(shadow["request_id"])
    # The challenger's background scores are its model's probabilities on the same rows, scored once each.
    by_id = shadow.set_index("request_id")["probability"]
    challenger = models["4"].predict_proba(features(frame))[:, 1]
    np.testing.assert_allclose(by_id.loc[ids].to_numpy(), challenger, atol=1e-12)
    stats = read_rollout_stats(stats_dir(runtime.log_directory), "r-test")
    assert stats.versions["3"].served_rows == 40 and stats.versions["4"].rows == 40
    assert stats.versions["4"].served_rows == 0 and stats.versions["4"].errors == 0
    assert runtime.model_info().rollout["mode"] == "shadow"


def test_canary_customers_always_get_the_challenger_and_both_versions_score_everyone(tmp_path, models):
    runtime, rollout = serving(tmp_path, models, "canary", percent=50.0)
    body, frame = customers(60, seed=5)
    first = [json.loads(runtime.predict(json.dumps(r).encode(), f"a-{i}").body)["model_version"]
             for i, r in enumerate(body)]
    again = [json.loads(runtime.predict(json.dumps(r).encode(), f"b-{i}").body)["model_version"]
             for i, r in enumerate(body)]
    assert first == again and set(first) == {"3", "4"}
    routed = route_to_challenger(frame[SCHEMA.id_column].tolist(), 50.0, runtime.rollout.salt)
    assert [v == "4" for v in first] == routed.tolist()
    mixed = json.loads(runtime.predict_batch(json.dumps(body).encode(), "application/json", "mix").body)
    assert mixed["answered_by"] == first
    p3, p4 = (models[v].predict_proba(features(frame))[:, 1] for v in ("3", "4"))
    np.testing.assert_allclose(mixed["churn_probability"], np.where(routed, p4, p3), atol=1e-12)
    assert rollout.shadow.drain()
    runtime.close()
    everything = pd.concat([logged(runtime.log_directory), logged(shadow_log_dir(runtime.log_directory))])
    per_request = everything.groupby("request_id")["model_version"].apply(sorted)
    assert len(per_request) == 180 and all(v == ["3", "4"] for v in per_request)


def test_a_failing_canary_is_counted_and_production_answers(tmp_path, models):
    runtime, rollout = serving(tmp_path, models, "canary", percent=99.99)

    def broken(batch):
        raise ValueError("challenger exploded")

    rollout.challenger.score = broken
    body, frame = customers(5, seed=8)
    answers = [json.loads(runtime.predict(json.dumps(r).encode(), f"x-{i}").body) for i, r in enumerate(body)]
    assert {a["model_version"] for a in answers} == {"3"}
    np.testing.assert_allclose([a["churn_probability"] for a in answers],
                               models["3"].predict_proba(features(frame))[:, 1], atol=1e-12)
    rollout.shadow.drain()
    runtime.close()
    stats = read_rollout_stats(stats_dir(runtime.log_directory), "r-test")
    assert stats.versions["4"].errors == 5 and stats.versions["4"].error_rate == 1.0


def test_rollout_counters_merge_across_workers(tmp_path):
    for _worker in range(2):
        recorder = RolloutStatsRecorder(tmp_path, "r1", "canary", 10.0, "2026-12-03T00:00:00+00:00",
                                        {"1": "production", "2": "challenger"})
        for _ in range(50):
            recorder.observe("1", rows=1, seconds=0.0003, served=1)
        recorder.observe("2", rows=1, seconds=0.008, served=1)
        recorder.observe("2", rows=1, seconds=0.0, error=True)
        recorder.write()
    merged = read_rollout_stats(tmp_path, "r1")
    assert merged.workers == 2 and merged.versions["1"].requests == 100 and merged.versions["2"].errors == 2
    assert merged.versions["1"].latency_quantile_ms(0.99) == 0.5 and merged.versions["2"].latency_quantile_ms(
        0.5) == 10.0
    assert read_rollout_stats(tmp_path, "another") is None


def test_the_live_comparison_pairs_requests_and_its_interval_is_the_offline_arithmetic(tmp_path, models):
    runtime, rollout = serving(tmp_path, models, "shadow")
    body, frame = customers(400, seed=31)
    ids = [f"q-{i}" for i in range(len(body))]
    for request_id, record in zip(ids, body, strict=True):
        runtime.predict(json.dumps(record).encode(), request_id)
    rollout.shadow.drain()
    runtime.close()
    feedback_path = tmp_path / "feedback.parquet"
    append_feedback(feedback_path, feedback_records(ids, [None] * len(ids), frame[SCHEMA.target.column]))
    plan = Rollout(production_version="3", challenger_version="4", rollout_id="r-test", mode="shadow",
                   started_at="2020-01-01T00:00:00+00:00")
    rules = RolloutRules(min_labelled=100)
    comparison = compare_live(runtime.log_directory, read_feedback(feedback_path), plan, {"3": 0.4, "4": 0.35}, rules)
    assert (comparison.pairs, comparison.labelled_pairs) == (400, 400)
    order = np.argsort(np.array(ids))  # pairs come in request-id order; the resamples index that order
    outcome = frame[SCHEMA.target.column].to_numpy()[order]
    p3, p4 = (models[v].predict_proba(features(frame))[:, 1][order] for v in ("3", "4"))
    expected = paired_differences(outcome, Scored(p4, 0.35), {"production": Scored(p3, 0.4)}, rules.comparison)
    assert comparison.differences["f1"] == expected["production"]["f1"]
    assert comparison.production.requests == 400 and comparison.challenger.p99_latency_ms is not None
    # Nothing before the rollout started counts.
    later = plan.model_copy(update={"started_at": "2999-01-01T00:00:00+00:00"})
    assert compare_live(runtime.log_directory, read_feedback(feedback_path), later, {"3": 0.4, "4": 0.35},
                        rules).labelled_pairs == 0


def interval(estimate: float, half: float) -> Interval:
    return Interval(low=estimate - half, high=estimate + half, resamples=1000, seed=0, estimate=estimate)


def comparison(difference: Interval | None, pairs: int, errors: int = 0, p99: float = 1.0) -> LiveComparison:
    rollout = Rollout(production_version="1", challenger_version="2", rollout_id="r", mode="shadow",
                      started_at="2026-12-03T00:00:00+00:00")
    return LiveComparison(
        rollout=rollout, labelled_pairs=pairs, differences={"f1": difference} if difference else {},
        production=VersionLive(version="1", role="production", threshold=0.4, requests=1000, p99_latency_ms=1.0),
        challenger=VersionLive(version="2", role="challenger", threshold=0.4, requests=1000, errors=errors,
                               error_rate=errors / 1000, p99_latency_ms=p99))


@pytest.mark.parametrize(("case", "action", "words"), [
    (comparison(interval(0.03, 0.02), 800), "promote", "lower bound +0.0100 >= -0.01"),
    (comparison(interval(-0.002, 0.006), 800), "promote", "lower bound -0.0080 >= -0.01"),  # equal, within tolerance
    (comparison(interval(-0.12, 0.03), 800), "rollback", "upper bound -0.0900 < -0.01"),
    (comparison(interval(-0.01, 0.05), 800), "wait", "not yet decided"),
    (comparison(interval(-0.06, 0.012), 800), "rollback", "upper bound -0.0480 < -0.01"),  # proven worse
    (comparison(interval(0.05, 0.01), 150), "wait", "200 needed"),  # too few labels, however good
    (comparison(None, 0), "wait", "0 labelled requests"),
    (comparison(interval(0.05, 0.01), 800, errors=25), "rollback", "error rate 2.50% > 1.00%"),
    (comparison(interval(0.05, 0.01), 800, p99=80.0), "rollback", "80 ms > 50 ms"),
    (comparison(interval(0.05, 0.01), 800, p99=5.0), "rollback", "3 x production's"),
    (comparison(interval(0.05, 0.01), 800, p99=2.0), "promote", "lower bound"),  # 2x of 1 ms: below the floor
    (LiveComparison(), "none", "no challenger"),
])
def test_the_rule_promotes_rolls_back_or_waits_and_says_why(case, action, words):
    decision = decide_rollout(case, RolloutRules())
    assert decision.action == action and words in " ".join(decision.reasons), decision.reasons


def test_rollout_rules_are_validated():
    with pytest.raises(ValueError, match="min_labelled"):
        RolloutRules(min_labelled=1)
    with pytest.raises(ValueError, match="extra"):
        RolloutRules.model_validate({"tolerence": 0.01})
    assert RolloutRules().comparison == BootstrapConfig(resamples=1000, seed=0)
