"""Bootstrap evidence (churnops.modeling.comparison) and the champion/challenger/floor rule (promotion.decide)."""

import time

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    precision_score,
    recall_score,
    roc_auc_score,
)

from churnops.modeling.comparison import (
    METRICS,
    BootstrapConfig,
    ComparisonConfig,
    Interval,
    Scored,
    bootstrap_distributions,
    metric_intervals,
    paired_differences,
)
from churnops.modeling.evaluation import Metrics
from churnops.modeling.promotion import Champion, FloorConfig, GateConfig, decide


def scores(rows: int, seed: int, signal: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = (rng.random(rows) < 0.3).astype(int)
    return y, np.clip(signal * y + rng.random(rows) * 0.7, 0, 1)


def test_one_resample_of_every_row_reproduces_sklearn_with_ties_and_weights():
    rng = np.random.default_rng(3)
    y, p = scores(3000, 3)
    p = np.round(p, 2)  # many ties: ROC-AUC and average precision must count them as sklearn does
    weights = rng.integers(0, 3, len(y))
    drawn = np.repeat(np.arange(len(y)), weights)  # a "resample" whose counts are the weights
    from churnops.modeling.comparison import _block_metrics, _Prepared

    prepared = _Prepared(y.astype(np.int8), Scored(p, 0.5))
    got = _block_metrics(prepared.counts(drawn[None].astype(np.int32)), prepared)
    predicted = p >= 0.5
    expected = {
        "accuracy": accuracy_score(y, predicted, sample_weight=weights),
        "precision": precision_score(y, predicted, sample_weight=weights),
        "recall": recall_score(y, predicted, sample_weight=weights),
        "f1": f1_score(y, predicted, sample_weight=weights),
        "roc_auc": roc_auc_score(y, p, sample_weight=weights),
        "pr_auc": average_precision_score(y, p, sample_weight=weights),
        "brier": brier_score_loss(y, p, sample_weight=weights),
    }
    for metric, value in expected.items():
        assert got[metric][0] == pytest.approx(value, abs=1e-6), metric


def test_the_same_seed_gives_the_same_intervals_and_another_seed_does_not():
    y, p = scores(2000, 1)
    config = BootstrapConfig(resamples=1000, seed=7)
    first, again = metric_intervals(y, p, 0.5, config), metric_intervals(y, p, 0.5, config)
    assert first == again
    other = metric_intervals(y, p, 0.5, BootstrapConfig(resamples=1000, seed=8))
    assert other["f1"].low != first["f1"].low
    assert set(first) == set(METRICS)
    for metric, interval in first.items():
        assert interval.low <= interval.estimate <= interval.high, metric
    assert first["roc_auc"].estimate == pytest.approx(roc_auc_score(y, p))


def test_paired_resamples_share_rows_so_a_model_against_itself_differs_by_exactly_zero():
    y, p = scores(2000, 2)
    differences = paired_differences(y, Scored(p, 0.5), {"same": Scored(p.copy(), 0.5)}, BootstrapConfig())
    for interval in differences["same"].values():
        assert (interval.low, interval.high, interval.estimate) == (0.0, 0.0, 0.0)


def test_pairing_makes_the_difference_interval_narrower_than_unpaired_intervals_suggest():
    # Two models that share most of their noise: the paired interval of the difference is far
    # narrower than the two separate intervals (what an unpaired comparison would look at).
    y, p = scores(3000, 4)
    rng = np.random.default_rng(5)
    q = np.clip(p + rng.normal(0, 0.02, len(p)), 0, 1)
    config = BootstrapConfig()
    paired = paired_differences(y, Scored(q, 0.5), {"champion": Scored(p, 0.5)}, config)["champion"]["roc_auc"]
    alone = metric_intervals(y, p, 0.5, config)["roc_auc"]
    assert (paired.high - paired.low) < 0.25 * (alone.high - alone.low)


def test_intervals_cover_the_population_value_about_95_percent_of_the_time():
    # A known case: a large population with a known F1 and ROC-AUC; 2,000-row test sets drawn from it.
    population_y, population_p = scores(400_000, 11)
    truth = {"f1": f1_score(population_y, population_p >= 0.5), "roc_auc": roc_auc_score(population_y, population_p)}
    rng = np.random.default_rng(12)
    covered = {metric: 0 for metric in truth}
    trials = 100
    for trial in range(trials):
        rows = rng.integers(0, len(population_y), 2000)
        samples = bootstrap_distributions(population_y[rows], {"m": Scored(population_p[rows], 0.5)}, 400,
                                          seed=trial)["m"]
        for metric, value in truth.items():
            low, high = np.quantile(samples[metric], [0.025, 0.975])
            covered[metric] += low <= value <= high
    for metric, hits in covered.items():
        assert 0.88 <= hits / trials <= 1.0, (metric, hits)


def test_bootstrap_is_vectorised_and_many_times_faster_than_a_per_resample_loop():
    # Ratio against a baseline measured in the same run (the machine is shared): the naive loop
    # (sklearn F1 and ROC-AUC per resample, on fancy-indexed rows) for 20 resamples.
    y, p = scores(20_000, 6)
    q = np.clip(p + np.random.default_rng(7).normal(0, 0.05, len(p)), 0, 1)
    rng = np.random.default_rng(0)
    started = time.perf_counter()
    for _ in range(20):
        rows = rng.integers(0, len(y), len(y))
        for model in (p, q):
            f1_score(y[rows], model[rows] >= 0.5), roc_auc_score(y[rows], model[rows])
    naive_per_resample = (time.perf_counter() - started) / 20
    started = time.perf_counter()
    paired_differences(y, Scored(q, 0.5), {"champion": Scored(p, 0.5)}, BootstrapConfig(resamples=1000))
    ours_per_resample = (time.perf_counter() - started) / 1000
    print(f"20k rows, 2 models: {ours_per_resample * 1000:.1f} ms per resample (F1 and ROC-AUC), "
          f"naive sklearn loop {naive_per_resample * 1000:.1f} ms (F1 + ROC-AUC only): "
          f"{naive_per_resample / ours_per_resample:.1f}x")
    assert ours_per_resample < naive_per_resample / 3


@pytest.mark.parametrize(("bad", "message"), [
    (lambda y, p: (y[:-1], p), "probabilities for"),
    (lambda y, p: (y * 2, p), "only 0 and 1"),
    (lambda y, p: (y, np.where(np.arange(len(p)) == 0, np.nan, p)), "NaN"),
])
def test_bad_input_is_refused_with_what_was_wrong(bad, message):
    y, p = bad(*scores(100, 1))
    with pytest.raises(ValueError, match=message):
        metric_intervals(y, p, 0.5, BootstrapConfig(resamples=100))


# --- the decision rule ---------------------------------------------------------------------------

def metrics(f1: float, roc_auc: float = 0.85) -> Metrics:
    return Metrics(accuracy=0.8, precision=0.6, recall=0.6, f1=f1, roc_auc=roc_auc, pr_auc=0.6, brier=0.15,
                   threshold=0.4, confusion_matrix=[[1, 1], [1, 1]])


def interval(estimate: float, half_width: float) -> Interval:
    return Interval(low=estimate - half_width, high=estimate + half_width, resamples=1000, seed=42,
                    estimate=estimate)


GATE = GateConfig(f1=0.55, roc_auc=0.75, tolerance=0.01, champion_metric="f1")


def test_the_lower_bound_decides_not_the_point_difference():
    # +0.005 better on the point estimate, but the interval reaches -0.02: not proven within tolerance.
    noisy = Champion(version="3", metrics=metrics(0.62), differences={"f1": interval(0.005, 0.025)})
    lost = decide("churn", "4", metrics(0.625), 0.3, GATE, noisy)
    assert (lost.stage, lost.verdict) == ("staging", "staged")
    assert "difference +0.0050 [-0.0200, +0.0300]" in lost.reason and "lower bound < -0.01" in lost.reason
    # A tight interval around -0.005 is within tolerance: promoted.
    tight = Champion(version="3", metrics=metrics(0.62), differences={"f1": interval(-0.005, 0.004)})
    assert decide("churn", "4", metrics(0.615), 0.3, GATE, tight).stage == "production"
    # The old rule on the point difference still exists, by name.
    point = GATE.model_copy(update={"comparison": ComparisonConfig(rule="point_estimate")})
    assert decide("churn", "4", metrics(0.625), 0.3, point, noisy).stage == "production"


def run_retrains(gate: GateConfig, f1_sequence: list[float], k: int = 5) -> list[tuple[float, str]]:
    """Simulate the promotion step over a run of retrains: the champion is the production version,
    the floor the best of the last k production versions (both re-scored on one fixed test set,
    so their F1 is their own). Returns (production F1, verdict) after each retrain."""
    production: list[tuple[str, float]] = [("1", f1_sequence[0])]
    history = []
    for number, f1 in enumerate(f1_sequence[1:], start=2):
        champion_version, champion_f1 = production[-1]
        champion = Champion(version=champion_version, metrics=metrics(champion_f1),
                            differences={"f1": interval(f1 - champion_f1, 0.001)})
        floor_version, floor_f1 = max(production[-k:], key=lambda entry: entry[1])
        floor = Champion(version=floor_version, metrics=metrics(floor_f1),
                         differences={"f1": interval(f1 - floor_f1, 0.001)})
        use_floor = floor if gate.floor.mode != "none" else None
        decision = decide("churn", str(number), metrics(f1), 0.3, gate, champion, use_floor)
        if decision.promoted:
            production.append((str(number), f1))
        history.append((production[-1][1], decision.verdict))
    return history


def test_ten_retrains_each_within_tolerance_of_the_last_cannot_walk_quality_down_ten_tolerances():
    tolerance = GATE.tolerance
    # Each retrain is 0.8 tolerance worse than the one before, so it is within tolerance of the last.
    sequence = [0.70 - 0.008 * i for i in range(11)]
    without_floor = run_retrains(GATE.model_copy(update={"floor": FloorConfig(mode="none")}), sequence)
    with_floor = run_retrains(GATE.model_copy(update={"floor": FloorConfig(mode="best_of_last_k", k=5)}), sequence)
    # Without a floor every one of them is promoted and production ends 8 tolerances down.
    assert [verdict for _, verdict in without_floor] == ["promoted"] * 10
    assert sequence[0] - without_floor[-1][0] == pytest.approx(0.08)
    # With the floor, production never falls more than one tolerance below the best recent version.
    assert all(sequence[0] - f1 <= tolerance + 1e-9 for f1, _ in with_floor)
    assert [verdict for _, verdict in with_floor][:2] == ["promoted", "staged"]
    assert with_floor[-1][0] == pytest.approx(0.692)


def test_a_pinned_floor_holds_even_after_many_promotions():
    # Improvements, then a slide: the pinned reference (v1, F1 0.70) never moves.
    gate = GATE.model_copy(update={"floor": FloorConfig(mode="pinned", version=1)})
    pinned = Champion(version="1", metrics=metrics(0.70), differences={"f1": interval(-0.015, 0.002)})
    champion = Champion(version="6", metrics=metrics(0.69), differences={"f1": interval(-0.005, 0.002)})
    decision = decide("churn", "7", metrics(0.685), 0.3, gate, champion, pinned)
    assert decision.verdict == "staged"
    assert "floor v1" in decision.reason and "production v6" in decision.reason


def test_the_floor_is_not_compared_twice_when_it_is_production():
    champion = Champion(version="3", metrics=metrics(0.62), differences={"f1": interval(0.0, 0.001)})
    decision = decide("churn", "4", metrics(0.62), 0.3, GATE, champion, champion)
    assert decision.promoted and "floor" not in decision.reason


def test_an_incomparable_floor_is_noted_and_does_not_block():
    floor = Champion(version="2", incomparable_reason="it expects features this data lacks: ['tenure']")
    champion = Champion(version="3", metrics=metrics(0.62), differences={"f1": interval(0.0, 0.001)})
    decision = decide("churn", "4", metrics(0.62), 0.3, GATE, champion, floor)
    assert decision.promoted
    assert any("floor version 2 not comparable" in note for note in decision.notes)


def test_floor_config_is_validated():
    with pytest.raises(ValueError, match=r"pinned.*needs a version"):
        FloorConfig(mode="pinned")
    with pytest.raises(ValueError):
        GateConfig.model_validate({"floor": {"mode": "best_of_last_k", "k": 0}})
    with pytest.raises(ValueError):
        GateConfig.model_validate({"comparison": {"resamples": 10}})
