"""Live comparison of production and a challenger, and the rule that promotes or rolls back, on real
files: both versions' rows written by the service's own InferenceLogWriter (production in the log,
the challenger under _shadow/, same request ids), a feedback log, and rollout counters written by
the service's RolloutStatsRecorder."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from churnops.modeling.comparison import BootstrapConfig, Scored, paired_differences
from churnops.monitoring.feedback import feedback_records
from churnops.monitoring.live_comparison import (
    LiveComparison,
    Rollout,
    RolloutRules,
    compare_live,
    decide_rollout,
    format_console,
    paired_outcomes,
    render_live_comparison,
)
from churnops.serving.contract import RequestContract
from churnops.serving.inference_log import InferenceLogWriter
from churnops.serving.rollout import shadow_log_dir, stats_dir
from churnops.serving.rollout_stats import RolloutStatsRecorder
from tests.test_serving_unit import SCHEMA, records

PRODUCTION, CHALLENGER = "3", "4"
STARTED = (datetime.now(UTC) - timedelta(hours=1)).isoformat(timespec="seconds")
ROLLOUT = Rollout(production_version=PRODUCTION, challenger_version=CHALLENGER, rollout_id="r-test",
                  mode="shadow", started_at=STARTED)
THRESHOLDS = {PRODUCTION: 0.5, CHALLENGER: 0.5}
RULES = RolloutRules(min_labelled=200)
CONTRACT = RequestContract(SCHEMA, max_predict_customers=20, max_batch_rows=10_000)


def scores(outcome: np.ndarray, noise: float, seed: int) -> np.ndarray:
    """Probabilities that separate the outcome the less the larger ``noise`` is."""
    rng = np.random.default_rng(seed)
    return np.clip(0.5 + (outcome - 0.5) * 0.6 + rng.normal(0, noise, len(outcome)), 0.001, 0.999)


def write_traffic(log_dir: Path, production: np.ndarray, challenger: np.ndarray) -> list[str]:
    """Both versions score the same requests (ids ``req-00000``...), as the service does in a rollout."""
    rows = len(production)
    batch = CONTRACT.parse_batch(json.dumps(records(rows, seed=5)).encode())
    ids = [f"req-{i:05d}" for i in range(rows)]
    for directory, version, probabilities in ((log_dir, PRODUCTION, production),
                                              (shadow_log_dir(log_dir), CHALLENGER, challenger)):
        writer = InferenceLogWriter(directory, SCHEMA, "churn_classifier", version, b"salt", flush_rows=10**6,
                                    flush_seconds=3600)
        writer.append(batch, ids, probabilities, (probabilities >= 0.5).astype(np.int8))
        writer.close()
    return ids


def write_stats(log_dir: Path, requests: int, challenger_errors: int = 0, production_ms: float = 0.3,
                challenger_ms: float = 0.3) -> None:
    recorder = RolloutStatsRecorder(stats_dir(log_dir), ROLLOUT.rollout_id, "shadow", None, STARTED,
                                    {PRODUCTION: "production", CHALLENGER: "challenger"})
    for i in range(requests):
        recorder.observe(PRODUCTION, 1, production_ms / 1000, served=1)
        recorder.observe(CHALLENGER, 1, challenger_ms / 1000, error=i < challenger_errors)
    recorder.write()


def setup(tmp_path: Path, rows: int, challenger_noise: float, labelled: int | None = None,
          seed: int = 1) -> tuple[Path, pd.DataFrame, np.ndarray, np.ndarray, np.ndarray]:
    outcome = (np.random.default_rng(seed).random(rows) < 0.35).astype(np.int8)
    production = scores(outcome, 0.25, seed + 10)
    challenger = scores(outcome, challenger_noise, seed + 20)
    log_dir = tmp_path / "log"
    ids = write_traffic(log_dir, production, challenger)
    labelled = rows if labelled is None else labelled
    feedback = feedback_records(ids[:labelled], [None] * labelled, outcome[:labelled])
    return log_dir, feedback, outcome[:labelled], production[:labelled], challenger[:labelled]


def test_pairs_join_both_logs_and_the_feedback_by_request_id(tmp_path: Path):
    log_dir, feedback, outcome, production, challenger = setup(tmp_path, 300, 0.25, labelled=250)
    pairs, counts = paired_outcomes(log_dir, feedback, ROLLOUT)
    assert counts == {"production_rows": 300, "challenger_rows": 300, "pairs": 300}
    assert len(pairs) == 250
    assert np.array_equal(pairs["outcome"].to_numpy(dtype=np.int8), outcome)
    assert np.allclose(pairs["production"], production) and np.allclose(pairs["challenger"], challenger)


def test_the_paired_interval_is_comparison_py_on_the_same_arrays(tmp_path: Path):
    log_dir, feedback, outcome, production, challenger = setup(tmp_path, 400, 0.2)
    write_stats(log_dir, 400)
    comparison = compare_live(log_dir, feedback, ROLLOUT, THRESHOLDS, RULES)
    expected = paired_differences(outcome, Scored(challenger, 0.5), {"production": Scored(production, 0.5)},
                                  BootstrapConfig(resamples=1000, seed=0))["production"]
    assert comparison.differences == expected
    assert comparison.labelled_pairs == 400
    assert set(comparison.production.intervals) == {"f1", "roc_auc", "precision", "recall"}


def test_a_better_challenger_is_promoted_and_the_reason_names_the_figures(tmp_path: Path):
    log_dir, feedback, *_ = setup(tmp_path, 800, 0.12)
    write_stats(log_dir, 800)
    comparison = compare_live(log_dir, feedback, ROLLOUT, THRESHOLDS, RULES)
    decision = decide_rollout(comparison, RULES)
    difference = comparison.differences["f1"]
    assert decision.action == "promote", decision.reasons
    assert difference.low > 0
    assert "800 labelled requests" in decision.reasons[0] and f"{difference.low:+.4f} >= -0.01" in decision.reasons[0]
    assert decision.challenger_version == CHALLENGER and decision.production_version == PRODUCTION
    assert "PROMOTE" in format_console(comparison, decision)
    assert "challenger v4" in render_live_comparison(comparison, decision)


def test_an_equal_challenger_within_tolerance_is_promoted(tmp_path: Path):
    # The same scores: the difference is exactly 0 on every resample, so the lower bound is >= -tolerance.
    outcome = (np.random.default_rng(3).random(500) < 0.35).astype(np.int8)
    probabilities = scores(outcome, 0.25, 4)
    log_dir = tmp_path / "log"
    ids = write_traffic(log_dir, probabilities, probabilities)
    comparison = compare_live(log_dir, feedback_records(ids, [None] * 500, outcome), ROLLOUT, THRESHOLDS, RULES)
    assert comparison.differences["f1"].low == 0.0
    assert decide_rollout(comparison, RULES).action == "promote"


def test_a_clearly_worse_challenger_is_rolled_back(tmp_path: Path):
    log_dir, feedback, *_ = setup(tmp_path, 800, 0.6)
    write_stats(log_dir, 800)
    comparison = compare_live(log_dir, feedback, ROLLOUT, THRESHOLDS, RULES)
    decision = decide_rollout(comparison, RULES)
    assert comparison.differences["f1"].high < -RULES.max_loss
    assert decision.action == "rollback" and "upper bound" in decision.reasons[0]


def test_too_few_labels_waits_even_for_a_better_challenger(tmp_path: Path):
    log_dir, feedback, *_ = setup(tmp_path, 400, 0.12, labelled=120)
    write_stats(log_dir, 400)
    decision = decide_rollout(compare_live(log_dir, feedback, ROLLOUT, THRESHOLDS, RULES), RULES)
    assert decision.action == "wait"
    assert decision.reasons[0].startswith("120 labelled requests scored by both versions, 200 needed")


def test_a_challenger_failing_requests_is_rolled_back_whatever_its_scores(tmp_path: Path):
    log_dir, feedback, *_ = setup(tmp_path, 400, 0.12)
    write_stats(log_dir, 400, challenger_errors=20)  # 5 % > 1 %
    comparison = compare_live(log_dir, feedback, ROLLOUT, THRESHOLDS, RULES)
    decision = decide_rollout(comparison, RULES)
    assert comparison.challenger.errors == 20 and comparison.challenger.requests == 400
    assert decision.action == "rollback"
    assert decision.reasons[0] == "challenger error rate 5.00% > 1.00% (20 of 400 requests)"


@pytest.mark.parametrize(("challenger_ms", "expected"), [
    (80.0, "> 50 ms"),  # over the absolute bound
    (15.0, "> 3 x production's"),  # under it, but more than 3 x production's 2 ms
])
def test_a_slow_challenger_is_rolled_back(tmp_path: Path, challenger_ms: float, expected: str):
    log_dir, feedback, *_ = setup(tmp_path, 300, 0.12)
    write_stats(log_dir, 300, production_ms=1.5, challenger_ms=challenger_ms)
    comparison = compare_live(log_dir, feedback, ROLLOUT, THRESHOLDS, RULES)
    decision = decide_rollout(comparison, RULES)
    assert decision.action == "rollback"
    assert any(expected in reason for reason in decision.reasons), decision.reasons


def test_no_rollout_means_nothing_to_decide():
    assert decide_rollout(LiveComparison(), RULES).action == "none"


def test_rules_reject_unknown_keys_with_a_clear_error():
    with pytest.raises(ValueError, match="max_los"):
        RolloutRules.model_validate({"max_los": 0.05})
