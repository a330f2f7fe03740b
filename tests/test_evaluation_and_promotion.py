import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from churnops.modeling.evaluation import Metrics, baseline_metrics, compute_metrics, evaluate
from churnops.modeling.promotion import Champion, GateConfig, decide
from tests.support import clean_customers


def metrics(f1: float, roc_auc: float = 0.85) -> Metrics:
    return Metrics(accuracy=0.8, precision=0.6, recall=0.6, f1=f1, roc_auc=roc_auc, pr_auc=0.6, brier=0.15,
                   threshold=0.4, confusion_matrix=[[1, 1], [1, 1]])


def test_metrics_match_sklearn_at_the_threshold():
    rng = np.random.default_rng(1)
    y = (rng.random(500) < 0.3).astype(int)
    p = np.clip(0.3 * y + rng.random(500) * 0.7, 0, 1)
    m = compute_metrics(y, p, 0.45)
    assert m.f1 == pytest.approx(f1_score(y, p >= 0.45))
    assert m.roc_auc == pytest.approx(roc_auc_score(y, p))
    (tn, fp), (fn, tp) = m.confusion_matrix
    assert tn + fp + fn + tp == 500 and tp == int(((p >= 0.45) & (y == 1)).sum())


def test_baselines_and_report():
    frame, schema = clean_customers(rows=1000)
    x, y = frame[schema.feature_names], frame["churned"]
    baselines = baseline_metrics(x, y, x, y, 0)
    assert baselines["most_frequent"].f1 == 0.0
    assert 0 < baselines["stratified"].f1 < 0.5
    report = evaluate("m", y.to_numpy(), np.linspace(0, 1, len(y)), 0.5, baselines)
    assert report.best_baseline_f1 == baselines["stratified"].f1
    assert len(report.roc_curve.x) <= 200 and report.roc_curve.x[0] == 0.0


GATE = GateConfig(f1=0.55, roc_auc=0.75, tolerance=0.01, champion_metric="f1")


def test_first_model_passing_the_gate_is_promoted():
    decision = decide("churn", "1", metrics(0.6), 0.3, GATE, None)
    assert (decision.stage, decision.verdict, decision.gate_passed) == ("production", "promoted", True)


@pytest.mark.parametrize(("candidate", "baseline", "rule"), [
    (metrics(0.50), 0.30, "f1_min"),
    (metrics(0.60, roc_auc=0.70), 0.30, "roc_auc_min"),
    (metrics(0.60), 0.65, "f1_beats_baseline"),
])
def test_gate_failures_are_rejected_with_the_rule(candidate, baseline, rule):
    decision = decide("churn", "2", candidate, baseline, GATE, Champion(version="1", metrics=metrics(0.5)))
    assert (decision.stage, decision.verdict, decision.gate_passed) == ("none", "rejected", False)
    assert rule in decision.reason


def test_challenger_within_tolerance_wins_and_a_worse_one_is_staged():
    champion = Champion(version="3", metrics=metrics(0.62))
    assert decide("churn", "4", metrics(0.615), 0.3, GATE, champion).stage == "production"
    lost = decide("churn", "5", metrics(0.60), 0.3, GATE, champion)
    assert (lost.stage, lost.verdict) == ("staging", "staged") and "production v3" in lost.reason


def test_incomparable_champion_does_not_block_promotion():
    champion = Champion(version="2", incomparable_reason="it expects features this data lacks: ['tenure']")
    decision = decide("churn", "3", metrics(0.6), 0.3, GATE, champion)
    assert decision.stage == "production" and "not comparable" in decision.reason
