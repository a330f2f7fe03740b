"""Label-free performance estimation (CBPE arithmetic) against realised metrics on simulated outcomes."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score

from churnops.monitoring.estimation import Calibration, ExpectedConfusion, estimate_performance


def _world(rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """True churn probabilities and outcomes drawn from them."""
    rng = np.random.default_rng(seed)
    truth = rng.beta(1.2, 3.0, size=rows)
    return truth, (rng.random(rows) < truth).astype(int)


def _overconfident(p: np.ndarray) -> np.ndarray:
    """A model whose scores rank correctly but are pushed towards 0 and 1."""
    logit = np.log(p / (1 - p))
    return 1 / (1 + np.exp(-2.5 * logit))


def _realised(outcomes: np.ndarray, probabilities: np.ndarray, threshold: float) -> dict[str, float]:
    predicted = probabilities >= threshold
    return {"precision": precision_score(outcomes, predicted), "recall": recall_score(outcomes, predicted),
            "f1": f1_score(outcomes, predicted), "accuracy": accuracy_score(outcomes, predicted)}


def test_the_estimate_matches_what_the_labels_later_say_for_a_miscalibrated_model() -> None:
    reference_truth, reference_outcomes = _world(20_000, seed=1)
    calibration = Calibration.fit(_overconfident(reference_truth), reference_outcomes)
    live_truth, live_outcomes = _world(50_000, seed=2)
    served = _overconfident(live_truth)

    estimate = estimate_performance(served, 0.4, calibration)
    realised = _realised(live_outcomes, served, 0.4)

    for metric in ("precision", "recall", "f1", "accuracy"):
        assert getattr(estimate, metric) == pytest.approx(realised[metric], abs=0.015), metric
    assert estimate.f1_low <= realised["f1"] <= estimate.f1_high
    assert estimate.f1_low < estimate.f1 < estimate.f1_high
    assert estimate.rows == 50_000 and estimate.reference_rows == 20_000


def test_without_calibration_the_overconfident_scores_would_mislead() -> None:
    """The reason the calibration step exists: raw overconfident scores overstate precision."""
    live_truth, live_outcomes = _world(50_000, seed=3)
    served = _overconfident(live_truth)
    identity = Calibration(x=[0.0, 1.0], y=[0.0, 1.0], reference_rows=0)

    naive = estimate_performance(served, 0.4, identity)

    assert naive.precision - _realised(live_outcomes, served, 0.4)["precision"] > 0.05


def test_chunks_add_up_to_the_whole_window() -> None:
    truth, _ = _world(30_000, seed=4)
    calibration = Calibration.fit(truth, (np.random.default_rng(5).random(truth.size) < truth).astype(int))
    calibrated = calibration.apply(truth)
    whole, chunked = ExpectedConfusion(), ExpectedConfusion()
    whole.add(calibrated, truth >= 0.3)
    for part in np.array_split(np.arange(truth.size), 7):
        chunked.add(calibrated[part], truth[part] >= 0.3)

    one, many = whole.estimate(100), chunked.estimate(100)

    assert one is not None and many is not None
    for metric in ("precision", "recall", "f1", "accuracy", "expected_positive_rate"):
        assert getattr(many, metric) == pytest.approx(getattr(one, metric), rel=1e-9)


def test_an_empty_window_has_no_estimate_and_bad_reference_is_refused() -> None:
    assert ExpectedConfusion().estimate(10) is None
    with pytest.raises(ValueError, match="as many reference probabilities as outcomes"):
        Calibration.fit(np.array([0.2, 0.4]), np.array([1]))
    with pytest.raises(ValueError, match="no predictions"):
        estimate_performance(np.array([]), 0.5, Calibration(x=[0.0, 1.0], y=[0.0, 1.0], reference_rows=0))
