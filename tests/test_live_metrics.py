"""Live metrics from confusion counts and ranks equal sklearn's metric functions, ties and edge cases included."""

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score

from churnops.monitoring.performance import live_metrics


@pytest.mark.parametrize(("rows", "decimals", "seed"), [(20_000, 2, 0), (501, 1, 1), (9, 3, 2)])
def test_live_metrics_equal_sklearn_with_tied_probabilities(rows, decimals, seed):
    rng = np.random.default_rng(seed)
    outcome = (rng.random(rows) < 0.3).astype(int)
    outcome[:2] = [0, 1]  # both classes
    probability = np.round(np.clip(0.3 * outcome + 0.7 * rng.random(rows), 0, 1), decimals)
    label = (probability >= 0.45).astype(int)
    m = live_metrics(outcome, label, probability)
    assert m.rows == rows and m.positive_rate == pytest.approx(outcome.mean())
    assert m.accuracy == pytest.approx(accuracy_score(outcome, label), abs=1e-12)
    assert m.precision == pytest.approx(precision_score(outcome, label, zero_division=0), abs=1e-12)
    assert m.recall == pytest.approx(recall_score(outcome, label, zero_division=0), abs=1e-12)
    assert m.f1 == pytest.approx(f1_score(outcome, label, zero_division=0), abs=1e-12)
    assert m.roc_auc == pytest.approx(roc_auc_score(outcome, probability), abs=1e-12)


def test_one_class_has_no_roc_auc_and_no_predicted_positive_has_zero_precision():
    only_churners = live_metrics(np.ones(5, dtype=int), np.zeros(5, dtype=int), np.full(5, 0.2))
    assert only_churners.roc_auc is None and only_churners.precision == 0.0 and only_churners.f1 == 0.0
    assert only_churners.recall == 0.0 and only_churners.accuracy == 0.0
    nobody = live_metrics(np.array([0, 0, 1]), np.array([0, 0, 0]), np.array([0.1, 0.2, 0.3]))
    assert nobody.precision == 0.0 and nobody.roc_auc == pytest.approx(1.0)
