"""Bootstrap evidence: confidence intervals of test metrics and paired champion/challenger differences.

Row indices are resampled once (seeded) and every model is scored on the same resamples, so a
difference is *paired*: the noise of which customers happened to land in the test set cancels
between the two models. Each resample is held as a vector of row counts, and every metric is a
weighted sum over it: F1, precision, recall, accuracy and Brier from the confusion counts,
ROC-AUC as the Mann-Whitney statistic over one global sort of the scores (ties count a half),
PR-AUC as average precision over the same sort. Nothing is refitted or re-sorted per resample:
each resample costs a few passes over its row counts (tests/test_comparison.py times it).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier")
# Resamples are drawn in blocks of at most this many cells (rows x resamples): 8 MB of int32 indices
# and as much float32 counts per model; larger blocks measured slower (cache), smaller ones too (overhead).
_BLOCK_CELLS = 2_000_000


class BootstrapConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    resamples: int = Field(1000, ge=100, le=100_000)
    confidence: float = Field(0.95, gt=0.5, lt=1)
    seed: int = 42


class ComparisonConfig(BootstrapConfig):
    """How a challenger is compared with a reference version (the champion, the floor)."""

    # lower_bound_above_minus_tolerance: win when the lower bound of the interval of
    # (challenger - reference) >= -tolerance; point_estimate: the old rule, difference >= -tolerance.
    rule: Literal["lower_bound_above_minus_tolerance", "point_estimate"] = "lower_bound_above_minus_tolerance"


class Interval(BaseModel):
    """A percentile bootstrap interval; ``estimate`` is the value on the whole test set."""

    low: float
    high: float
    resamples: int
    seed: int
    confidence: float = 0.95
    estimate: float | None = None

    def describe(self, digits: int = 4) -> str:
        point = f"{self.estimate:+.{digits}f} " if self.estimate is not None else ""
        return f"{point}[{self.low:+.{digits}f}, {self.high:+.{digits}f}]"


@dataclass(frozen=True)
class Scored:
    """One model's test-set probabilities and the threshold it classifies at."""

    probabilities: np.ndarray
    threshold: float


def _validate(y_true: np.ndarray, models: dict[str, Scored]) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 1 or len(y) == 0:
        raise ValueError(f"y_true must be a non-empty 1-d array, got shape {y.shape}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("y_true must hold only 0 and 1")
    for name, scored in models.items():
        if np.shape(scored.probabilities) != y.shape:
            raise ValueError(f"model '{name}': {np.shape(scored.probabilities)} probabilities for {len(y)} labels")
        if not np.isfinite(scored.probabilities).all():
            raise ValueError(f"model '{name}': probabilities contain NaN or infinity")
    return y.astype(np.int8)


def resample_blocks(rows: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Bootstrap resamples as blocks of drawn row indices, shape (resamples_in_block, rows).

    Drawn once per comparison: every model is scored on the same rows (the paired comparison),
    and the same seed gives the same resamples.
    """
    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, _BLOCK_CELLS // max(rows, 1)))
    done = 0
    while done < resamples:
        size = min(block, resamples - done)
        yield rng.integers(0, rows, size=(size, rows), dtype=np.int32)
        done += size


def _cumsum_with_zero(values: np.ndarray) -> np.ndarray:
    """Row-wise running totals with a leading 0: ``out[:, k]`` is the sum of the first k values of the row."""
    out = np.empty((values.shape[0], values.shape[1] + 1), dtype=np.float32)
    out[:, 0] = 0.0
    np.cumsum(values, axis=1, out=out[:, 1:])
    return out


def _row_dot(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-row dot products, accumulated in float64 (float32 sums over 100k rows drift)."""
    return np.einsum("ij,ij->i", a, b, dtype=np.float64)


class _Prepared:
    """One model's test rows in its own score order, negatives first, then positives, sorted once.

    In that order every metric is a running total: the rows a threshold predicts positive are a
    suffix of each part, and the negatives a positive outranks are a prefix of the negative part.
    """

    def __init__(self, y: np.ndarray, scored: Scored) -> None:
        p = np.asarray(scored.probabilities, dtype=np.float64)
        positives, negatives = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
        positive_order = positives[np.argsort(p[positives], kind="stable")]
        negative_order = negatives[np.argsort(p[negatives], kind="stable")]
        order = np.concatenate([negative_order, positive_order])
        self.rank = np.empty(len(y), dtype=np.int32)  # row -> its position in that order
        self.rank[order] = np.arange(len(y), dtype=np.int32)
        self.n_negative_rows = len(negatives)
        positive_scores, negative_scores = p[positive_order], p[negative_order]
        # For each positive, in score order: negatives strictly below it, negatives at or below it,
        # positives strictly below it.
        self.negatives_below = np.searchsorted(negative_scores, positive_scores, side="left")
        self.negatives_at_or_below = np.searchsorted(negative_scores, positive_scores, side="right")
        self.positives_below = np.searchsorted(positive_scores, positive_scores, side="left")
        # The first negative and the first positive predicted positive (score >= threshold).
        self.first_predicted_negative = int(np.searchsorted(negative_scores, scored.threshold, side="left"))
        self.first_predicted_positive = int(np.searchsorted(positive_scores, scored.threshold, side="left"))
        self.squared_error = ((p - y) ** 2)[order].astype(np.float32)

    def counts(self, drawn: np.ndarray) -> np.ndarray:
        """How often each row (in this model's order) is drawn in each resample: (resamples, rows)."""
        rows = len(self.rank)
        out = np.empty((drawn.shape[0], rows), dtype=np.float32)
        for i, indices in enumerate(drawn):  # one bincount per resample keeps its writes in cache
            out[i] = np.bincount(self.rank[indices], minlength=rows)
        return out


def _block_metrics(counts: np.ndarray, model: _Prepared, wanted: tuple[str, ...] = METRICS) -> dict[str, np.ndarray]:
    """The ``wanted`` metrics on each resample (row) of ``counts``, given in the model's order."""
    negative_counts, positive_counts = counts[:, :model.n_negative_rows], counts[:, model.n_negative_rows:]
    negatives_cum, positives_cum = _cumsum_with_zero(negative_counts), _cumsum_with_zero(positive_counts)
    n_pos, n_neg = positives_cum[:, -1].astype(np.float64), negatives_cum[:, -1].astype(np.float64)
    fn = positives_cum[:, model.first_predicted_positive].astype(np.float64)
    tn = negatives_cum[:, model.first_predicted_negative].astype(np.float64)
    tp, fp = n_pos - fn, n_neg - tn
    total = n_pos + n_neg
    below = negatives_cum[:, model.negatives_below]
    with np.errstate(divide="ignore", invalid="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 0.0)
        recall = np.where(tp + fn > 0, tp / (tp + fn), 0.0)
        f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / (2 * tp + fp + fn), 0.0)
        # Mann-Whitney: each positive beats the negatives below it and half of those tied with it.
        beaten = 0.5 * (below + negatives_cum[:, model.negatives_at_or_below])
        roc_auc = _row_dot(positive_counts, beaten) / (n_pos * n_neg)
        out = {"accuracy": (tp + tn) / total, "precision": precision, "recall": recall, "f1": f1,
               "roc_auc": np.where((n_pos > 0) & (n_neg > 0), roc_auc, np.nan)}
        # The two costly extras only when asked for (a champion comparison needs F1 and ROC-AUC).
        if "pr_auc" in wanted:
            # Average precision (sklearn's definition): each positive weighs the precision at its own score.
            true_at_or_above = positives_cum[:, -1:] - positives_cum[:, model.positives_below]
            precision_at = true_at_or_above / np.maximum(true_at_or_above + (negatives_cum[:, -1:] - below), 1.0)
            out["pr_auc"] = np.where(n_pos > 0, _row_dot(positive_counts, precision_at) / n_pos, np.nan)
        if "brier" in wanted:
            out["brier"] = np.einsum("ij,j->i", counts, model.squared_error, dtype=np.float64) / total
    return {metric: out[metric] for metric in wanted}


def _whole_set_metrics(y: np.ndarray, scored: Scored) -> dict[str, float]:
    """The same arithmetic on the test set itself (every row once)."""
    ones = np.ones((1, len(y)), dtype=np.float32)
    return {metric: float(values[0]) for metric, values in _block_metrics(ones, _Prepared(y, scored)).items()}


def bootstrap_distributions(
    y_true: np.ndarray, models: dict[str, Scored], resamples: int, seed: int, metrics: tuple[str, ...] = METRICS,
) -> dict[str, dict[str, np.ndarray]]:
    """``metrics`` of every model on the same ``resamples`` bootstrap resamples: name -> metric -> (resamples,)."""
    if not models:
        raise ValueError("no models to resample")
    unknown = sorted(set(metrics) - set(METRICS))
    if unknown:
        raise ValueError(f"unknown metrics {unknown}; choose from {list(METRICS)}")
    y = _validate(y_true, models)
    prepared = {name: _Prepared(y, scored) for name, scored in models.items()}
    blocks: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in models}
    for drawn in resample_blocks(len(y), resamples, seed):
        for name, model in prepared.items():
            blocks[name].append(_block_metrics(model.counts(drawn), model, metrics))
    return {name: {metric: np.concatenate([b[metric] for b in parts]) for metric in metrics}
            for name, parts in blocks.items()}


def percentile_interval(samples: np.ndarray, config: BootstrapConfig, estimate: float | None = None) -> Interval:
    """The central ``confidence`` share of the bootstrap samples (undefined resamples ignored)."""
    finite = samples[np.isfinite(samples)]
    tail = (1 - config.confidence) / 2
    low, high = (np.quantile(finite, [tail, 1 - tail]) if len(finite) else (np.nan, np.nan))
    return Interval(low=float(low), high=float(high), resamples=config.resamples, seed=config.seed,
                    confidence=config.confidence, estimate=estimate)


def metric_intervals(
    y_true: np.ndarray, probabilities: np.ndarray, threshold: float, config: BootstrapConfig,
    estimates: dict[str, float] | None = None,
) -> dict[str, Interval]:
    """Bootstrap intervals of one model's own test metrics (``EvaluationReport.intervals``)."""
    samples = bootstrap_distributions(y_true, {"model": Scored(probabilities, threshold)},
                                      config.resamples, config.seed)["model"]
    if estimates is None:
        estimates = _whole_set_metrics(_validate(y_true, {"model": Scored(probabilities, threshold)}),
                                       Scored(probabilities, threshold))
    return {metric: percentile_interval(samples[metric], config, estimates.get(metric)) for metric in METRICS}


def paired_differences(
    y_true: np.ndarray, challenger: Scored, references: dict[str, Scored], config: BootstrapConfig,
    metrics: tuple[str, ...] = ("f1", "roc_auc"),
) -> dict[str, dict[str, Interval]]:
    """Intervals of (challenger - reference) per reference version and metric, on shared resamples.

    Each ``estimate`` is the difference on the whole test set.
    """
    if "challenger" in references:
        raise ValueError("'challenger' is reserved for the model being compared")
    everyone = {"challenger": challenger, **references}
    samples = bootstrap_distributions(y_true, everyone, config.resamples, config.seed, metrics)
    y = _validate(y_true, everyone)
    whole = {name: _whole_set_metrics(y, scored) for name, scored in everyone.items()}
    return {
        reference: {
            metric: percentile_interval(samples["challenger"][metric] - samples[reference][metric], config,
                                        whole["challenger"][metric] - whole[reference][metric])
            for metric in metrics
        }
        for reference in references
    }
