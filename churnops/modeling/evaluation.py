"""Held-out evaluation at the stored threshold, with baselines and curves."""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn.dummy import DummyClassifier
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    confusion_matrix,
    f1_score,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
    roc_curve,
)

from churnops.modeling.comparison import Interval
from churnops.modeling.fairness import GroupReport
from churnops.modeling.targeting import TargetingReport

CURVE_POINTS = 200


class Metrics(BaseModel):
    accuracy: float
    precision: float
    recall: float
    f1: float
    roc_auc: float
    pr_auc: float
    brier: float
    threshold: float
    # [[tn, fp], [fn, tp]]
    confusion_matrix: list[list[int]]


class Curve(BaseModel):
    x: list[float]
    y: list[float]


class EvaluationReport(BaseModel):
    model_name: str
    test_rows: int
    positive_rate: float
    metrics: Metrics
    baselines: dict[str, Metrics] = Field(default_factory=dict)
    roc_curve: Curve
    pr_curve: Curve
    # 95 % (or as configured) paired-bootstrap intervals of each test metric (churnops.modeling.comparison).
    intervals: dict[str, Interval] = Field(default_factory=dict)
    # Per-group metrics of the schema's slices at the decision threshold (churnops.modeling.fairness).
    groups: GroupReport | None = None
    # Value-based targeting on the test set: profit curve, value threshold, policy comparison.
    targeting: TargetingReport | None = None

    @property
    def best_baseline_f1(self) -> float:
        return max((m.f1 for m in self.baselines.values()), default=0.0)


def compute_metrics(y_true: np.ndarray, probabilities: np.ndarray, threshold: float) -> Metrics:
    predicted = (probabilities >= threshold).astype(int)
    both_classes = len(np.unique(y_true)) == 2
    return Metrics(
        accuracy=float(accuracy_score(y_true, predicted)),
        precision=float(precision_score(y_true, predicted, zero_division=0)),
        recall=float(recall_score(y_true, predicted, zero_division=0)),
        f1=float(f1_score(y_true, predicted, zero_division=0)),
        roc_auc=float(roc_auc_score(y_true, probabilities)) if both_classes else float("nan"),
        pr_auc=float(average_precision_score(y_true, probabilities)) if both_classes else float("nan"),
        brier=float(brier_score_loss(y_true, probabilities)),
        threshold=float(threshold),
        confusion_matrix=confusion_matrix(y_true, predicted, labels=[0, 1]).tolist(),
    )


def _thin(x: np.ndarray, y: np.ndarray) -> Curve:
    """Keep at most CURVE_POINTS points so reports stay small."""
    if len(x) > CURVE_POINTS:
        keep = np.unique(np.linspace(0, len(x) - 1, CURVE_POINTS).astype(int))
        x, y = x[keep], y[keep]
    return Curve(x=np.round(x, 5).tolist(), y=np.round(y, 5).tolist())


def baseline_metrics(
    train_features: pd.DataFrame, train_target: pd.Series, test_features: pd.DataFrame,
    test_target: pd.Series, random_state: int,
) -> dict[str, Metrics]:
    """DummyClassifier baselines on the same test set, at the usual 0.5 cut-off."""
    baselines = {}
    for strategy in ("most_frequent", "stratified"):
        dummy = DummyClassifier(strategy=strategy, random_state=random_state)
        dummy.fit(train_features, train_target)
        probabilities = dummy.predict_proba(test_features)[:, 1]
        baselines[strategy] = compute_metrics(test_target.to_numpy(), probabilities, 0.5)
    return baselines


def evaluate(
    model_name: str, y_true: np.ndarray, probabilities: np.ndarray, threshold: float,
    baselines: dict[str, Metrics],
) -> EvaluationReport:
    fpr, tpr, _ = roc_curve(y_true, probabilities)
    precision, recall, _ = precision_recall_curve(y_true, probabilities)
    return EvaluationReport(
        model_name=model_name,
        test_rows=len(y_true),
        positive_rate=float(np.mean(y_true)),
        metrics=compute_metrics(y_true, probabilities, threshold),
        baselines=baselines,
        roc_curve=_thin(fpr, tpr),
        pr_curve=_thin(recall[::-1], precision[::-1]),
    )
