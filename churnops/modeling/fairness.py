"""Group metrics: how the model treats each segment of customers the dataset schema names in ``slices:``.

Per group of each slice: recall, precision, false-positive rate, selection rate (share predicted
to churn) and support, computed with fairlearn's ``MetricFrame`` at the model's decision
threshold. A metric a group cannot define (recall without churners, false-positive rate without
stayers) is None, never 0, so it cannot fake a gap. The gate rule (``fairness:`` in the gate
config) compares the groups of each slice that have at least ``min_support`` rows and names the
ones it skipped.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from churnops.data.schema import DatasetSchema, Slice

GroupMetric = Literal["recall", "precision", "false_positive_rate", "selection_rate"]
GROUP_METRICS: tuple[GroupMetric, ...] = ("recall", "precision", "false_positive_rate", "selection_rate")
MISSING_GROUP = "missing"
OUTSIDE_BINS_GROUP = "outside bins"


class GroupMetrics(BaseModel):
    group: str
    support: int
    positives: int
    recall: float | None = None
    precision: float | None = None
    false_positive_rate: float | None = None
    selection_rate: float | None = None


class SliceMetrics(BaseModel):
    name: str
    column: str
    gated: bool = True  # compared by the gate's fairness rule (the schema slice's ``gate``)
    groups: list[GroupMetrics]


class GroupReport(BaseModel):
    """``EvaluationReport.groups``: every slice of the schema on the test set."""

    threshold: float
    slices: list[SliceMetrics]

    def table_rows(self) -> list[dict[str, str | int | float | None]]:
        """One flat row per (slice, group): what reports and the model card show."""
        return [{"slice": s.name, "group": g.group, "support": g.support, "churners": g.positives,
                 **{metric: getattr(g, metric) for metric in GROUP_METRICS}}
                for s in self.slices for g in s.groups]

    def slice(self, name: str) -> SliceMetrics:
        for candidate in self.slices:
            if candidate.name == name:
                return candidate
        raise KeyError(f"no slice '{name}' (slices: {[s.name for s in self.slices]})")


class FairnessRule(BaseModel):
    """The gate's group rule: within each slice, ``metric`` may differ by at most ``max_gap``."""

    model_config = ConfigDict(extra="forbid")

    metric: GroupMetric = "recall"
    max_gap: float = Field(0.2, ge=0, le=1)
    # Groups with fewer test rows are too noisy to judge: skipped, and the report says so.
    min_support: int = Field(100, ge=1)


class SliceGap(BaseModel):
    """One slice judged by the rule."""

    slice: str
    metric: GroupMetric
    gap: float | None
    lowest: str | None = None
    highest: str | None = None
    compared: list[str] = Field(default_factory=list)
    skipped: list[str] = Field(default_factory=list)  # below min_support, "group (n rows)"
    undefined: list[str] = Field(default_factory=list)  # metric undefined for the group

    def breaches(self, rule: FairnessRule) -> bool:
        return self.gap is not None and self.gap > rule.max_gap + 1e-12

    def describe(self, rule: FairnessRule) -> str:
        if self.gap is None:
            text = f"slice {self.slice}: fewer than two groups with >= {rule.min_support} rows to compare"
        else:
            text = (f"slice {self.slice}: {self.metric} gap {self.gap:.4f} between {self.highest} and {self.lowest} "
                    f"({'>' if self.breaches(rule) else '<='} {rule.max_gap})")
        if self.skipped:
            text += f"; skipped (below {rule.min_support} rows): {', '.join(self.skipped)}"
        if self.undefined:
            text += f"; {self.metric} undefined for: {', '.join(self.undefined)}"
        return text


def _bin_label(low: float, high: float) -> str:
    def show(edge: float) -> str:
        return f"{edge:g}"
    return f"[{show(low)}, {show(high)})"


def slice_groups(frame: pd.DataFrame, slice_: Slice) -> pd.Series:
    """The group label of every row for one slice: its value, or its bin ``[low, high)``; blanks are 'missing'."""
    if slice_.column not in frame.columns:
        raise KeyError(f"slice '{slice_.label}': column '{slice_.column}' is not in the data")
    values = frame[slice_.column]
    if slice_.bins is None:
        labels = values.map(lambda v: MISSING_GROUP if pd.isna(v) else (f"{v:g}" if isinstance(v, float) else str(v)))
        return labels.astype(str).rename(slice_.label)
    edges = slice_.bins
    codes = pd.cut(pd.to_numeric(values, errors="coerce"), bins=edges, right=False, labels=False)
    names = np.array([_bin_label(edges[i], edges[i + 1]) for i in range(len(edges) - 1)], dtype=object)
    labels = np.where(values.isna(), MISSING_GROUP, OUTSIDE_BINS_GROUP).astype(object)
    known = codes.notna().to_numpy()
    labels[known] = names[codes[known].astype(int).to_numpy()]
    return pd.Series(labels, index=frame.index, name=slice_.label, dtype=str)


def _nan_to_none(value: float) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def group_report(
    frame: pd.DataFrame, y_true: np.ndarray, probabilities: np.ndarray, threshold: float, schema: DatasetSchema,
) -> GroupReport | None:
    """Per-group metrics of every slice the schema declares, at ``threshold``; None without slices."""
    if not schema.slices:
        return None
    from fairlearn.metrics import MetricFrame, count, false_positive_rate, selection_rate
    from sklearn.metrics import precision_score, recall_score

    y = np.asarray(y_true).astype(int)
    predicted = (np.asarray(probabilities) >= threshold).astype(int)
    if len(y) != len(frame) or len(predicted) != len(frame):
        raise ValueError(f"{len(frame)} rows, {len(y)} labels and {len(predicted)} probabilities: they must match")
    metrics = {
        "recall": partial(recall_score, zero_division=np.nan),
        "precision": partial(precision_score, zero_division=np.nan),
        "false_positive_rate": partial(_false_positive_rate, false_positive_rate),
        "selection_rate": selection_rate,
        "support": count,
        "positives": _positives,
    }
    slices = []
    for slice_ in schema.slices:
        groups = slice_groups(frame, slice_).to_numpy()
        by_group = MetricFrame(metrics=metrics, y_true=y, y_pred=predicted, sensitive_features=groups).by_group
        slices.append(SliceMetrics(name=slice_.label, column=slice_.column, gated=slice_.gate, groups=[
            GroupMetrics(group=str(group), support=int(row["support"]), positives=int(row["positives"]),
                         **{metric: _nan_to_none(row[metric]) for metric in GROUP_METRICS})
            for group, row in by_group.iterrows()
        ]))
    return GroupReport(threshold=float(threshold), slices=slices)


def _positives(y_true: np.ndarray, y_pred: np.ndarray) -> int:
    return int(np.sum(y_true))


def _false_positive_rate(fairlearn_fpr: Callable[..., float], y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """fairlearn's false-positive rate; NaN (undefined) for a group without stayers rather than 0."""
    if not np.any(np.asarray(y_true) == 0):
        return float("nan")
    return float(fairlearn_fpr(y_true, y_pred, pos_label=1))


def slice_gaps(report: GroupReport, rule: FairnessRule) -> list[SliceGap]:
    """Each gated slice's largest gap in ``rule.metric`` among its groups with at least ``min_support`` rows."""
    gaps = []
    for slice_ in (s for s in report.slices if s.gated):
        skipped = [f"{g.group} ({g.support} rows)" for g in slice_.groups if g.support < rule.min_support]
        judged = [g for g in slice_.groups if g.support >= rule.min_support]
        undefined = [g.group for g in judged if getattr(g, rule.metric) is None]
        defined = [g for g in judged if getattr(g, rule.metric) is not None]
        if len(defined) < 2:
            gaps.append(SliceGap(slice=slice_.name, metric=rule.metric, gap=None, compared=[g.group for g in defined],
                                 skipped=skipped, undefined=undefined))
            continue
        low = min(defined, key=lambda g: getattr(g, rule.metric))
        high = max(defined, key=lambda g: getattr(g, rule.metric))
        low_value, high_value = getattr(low, rule.metric), getattr(high, rule.metric)
        gaps.append(SliceGap(
            slice=slice_.name, metric=rule.metric, gap=float(high_value - low_value),
            lowest=f"{low.group} ({low_value:.4f}, {low.support} rows)",
            highest=f"{high.group} ({high_value:.4f}, {high.support} rows)",
            compared=[g.group for g in defined], skipped=skipped, undefined=undefined))
    return gaps
