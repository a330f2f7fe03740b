"""Label-free performance estimation: what the model's own probabilities say about its live quality.

Confidence-based performance estimation (the arithmetic of NannyML's CBPE): if the probabilities
are calibrated, a served prediction with probability ``p`` is a true positive with probability
``p`` when it was labelled churn, and a false negative with probability ``p`` when it was not. Summed
over the window, that is the expected confusion matrix, and from it expected precision, recall, F1
and accuracy, days or weeks before the outcomes come back.

Calibration comes from the reference: the version's own test-set predictions and outcomes
(the ``test_predictions`` artifact of training), through isotonic regression, kept as its knots so
applying it to millions of live rows is one ``np.interp``. The estimate holds while the relation
between features and churn holds (covariate shift is fine, concept drift is not): the realised
metrics, once labels arrive, are the check, and the report shows both side by side.

NannyML itself (0.13.1) installs on our pins but pulls in gcsfs, lightgbm, xgboost, a CUDA
collective library and a telemetry client; the arithmetic is a few lines, so it lives here.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, Field
from sklearn.isotonic import IsotonicRegression

ESTIMATED_METRICS = ("precision", "recall", "f1", "accuracy")


class Calibration(BaseModel):
    """A monotone map from served probability to calibrated probability, as interpolation knots."""

    x: list[float]
    y: list[float]
    reference_rows: int

    @classmethod
    def fit(cls, probabilities: np.ndarray, outcomes: np.ndarray) -> Calibration:
        probabilities = np.asarray(probabilities, dtype=np.float64)
        outcomes = np.asarray(outcomes, dtype=np.float64)
        if probabilities.shape != outcomes.shape or probabilities.size == 0:
            raise ValueError("calibration needs as many reference probabilities as outcomes, at least one")
        isotonic = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(probabilities, outcomes)
        return cls(x=isotonic.X_thresholds_.tolist(), y=isotonic.y_thresholds_.tolist(),
                   reference_rows=int(probabilities.size))

    def apply(self, probabilities: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(probabilities, dtype=np.float64), self.x, self.y)


class EstimatedMetrics(BaseModel):
    rows: int
    expected_positive_rate: float
    precision: float
    recall: float
    f1: float
    accuracy: float
    # 95 % interval of the F1 the window could realise if outcomes follow the calibrated probabilities.
    f1_low: float
    f1_high: float
    reference_rows: int


class ExpectedConfusion(BaseModel):
    """Running sums of the expected confusion matrix; add chunks of any size, in any order."""

    rows: int = 0
    true_positive: float = 0.0
    false_positive: float = 0.0
    false_negative: float = 0.0
    true_negative: float = 0.0
    # A bounded sample of (calibrated p, predicted label) pairs for the interval.
    sample_p: list[float] = Field(default_factory=list)
    sample_label: list[int] = Field(default_factory=list)

    def add(self, calibrated: np.ndarray, predicted: np.ndarray, sample_rows: int = 20_000,
            rng: np.random.Generator | None = None) -> None:
        calibrated = np.asarray(calibrated, dtype=np.float64)
        positive = np.asarray(predicted).astype(bool)
        self.rows += int(calibrated.size)
        self.true_positive += float(calibrated[positive].sum())
        self.false_positive += float((1.0 - calibrated[positive]).sum())
        self.false_negative += float(calibrated[~positive].sum())
        self.true_negative += float((1.0 - calibrated[~positive]).sum())
        room = sample_rows - len(self.sample_p)
        if room > 0 and calibrated.size:
            rng = rng or np.random.default_rng(0)
            take = rng.choice(calibrated.size, size=min(room, calibrated.size), replace=False)
            self.sample_p.extend(calibrated[take].tolist())
            self.sample_label.extend(positive[take].astype(int).tolist())

    def estimate(self, reference_rows: int, draws: int = 400, seed: int = 0) -> EstimatedMetrics | None:
        if self.rows == 0:
            return None
        tp, fp, fn, tn = self.true_positive, self.false_positive, self.false_negative, self.true_negative
        low, high = _f1_interval(np.asarray(self.sample_p), np.asarray(self.sample_label, dtype=bool),
                                 self.rows, draws, seed)
        return EstimatedMetrics(
            rows=self.rows, expected_positive_rate=(tp + fn) / self.rows,
            precision=_ratio(tp, tp + fp), recall=_ratio(tp, tp + fn), f1=_ratio(2 * tp, 2 * tp + fp + fn),
            accuracy=(tp + tn) / self.rows, f1_low=low, f1_high=high, reference_rows=reference_rows,
        )


def estimate_performance(probabilities: np.ndarray, threshold: float, calibration: Calibration) -> EstimatedMetrics:
    """Expected precision, recall, F1 and accuracy of one window of served probabilities."""
    probabilities = np.asarray(probabilities, dtype=np.float64)
    confusion = ExpectedConfusion()
    confusion.add(calibration.apply(probabilities), probabilities >= threshold)
    estimate = confusion.estimate(calibration.reference_rows)
    if estimate is None:
        raise ValueError("no predictions to estimate from")
    return estimate


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator > 0 else 0.0


def _f1_interval(calibrated: np.ndarray, positive: np.ndarray, window_rows: int, draws: int,
                 seed: int) -> tuple[float, float]:
    """Simulate outcomes ~ Bernoulli(calibrated p) on the sample; scale the spread to the whole window."""
    if calibrated.size == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    outcomes = rng.random((draws, calibrated.size)) < calibrated
    tp = (outcomes & positive).sum(axis=1)
    fp = (~outcomes & positive).sum(axis=1)
    fn = (outcomes & ~positive).sum(axis=1)
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros(draws), where=denominator > 0)
    centre = float(f1.mean())
    # The sample's spread shrinks with the square root of the rows the window really has.
    scale = np.sqrt(calibrated.size / max(window_rows, calibrated.size))
    low, high = np.quantile(f1, [0.025, 0.975])
    return (max(0.0, centre - (centre - float(low)) * scale), min(1.0, centre + (float(high) - centre) * scale))


class LabelFreeEstimate(BaseModel):
    """The estimate for one monitoring window, or why there is none."""

    model_version: str
    calibration_rows: int
    metrics: EstimatedMetrics | None = None
    note: str = ""
