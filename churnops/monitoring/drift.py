"""The lab's monitor: per-feature drift against the training profile, and prediction drift.

Numeric features: the z-score of the window mean against the training mean, in training
standard deviations (an effect size, so a million rows do not make noise significant), and
PSI over the training decile bins. Categorical features: the largest change in a category's
frequency (unseen categories count from zero). Both also watch the missing rate. Every
statistic uses all rows of the window, fed chunk by chunk to sketches whose figures are exact
(counts per bin and category, sums), so memory does not grow with the window.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from churnops.data.profile import CategoricalProfile, NumericProfile, ReferenceProfile, profile_numeric
from churnops.data.schema import DatasetSchema

# Shares are floored before logs are taken, so an empty bin does not make PSI infinite.
PSI_FLOOR = 1e-4
# JSON has no infinity; a z-score this large already means "completely different".
Z_CAP = 1e6


class DriftThresholds(BaseModel):
    """When one feature counts as drifted (any rule) and when predictions count as drifted."""

    model_config = ConfigDict(extra="forbid")

    z_score: float = Field(0.3, gt=0, description="|window mean - training mean| / training std")
    psi: float = Field(0.2, gt=0, description="population stability index over training decile bins")
    frequency_shift: float = Field(0.1, gt=0, le=1, description="largest change of a category's share")
    missing_rate_increase: float = Field(0.1, gt=0, le=1, description="missing rate above training by this much")
    prediction_psi: float = Field(0.2, gt=0, description="PSI of served vs test-set probabilities")


class FeatureDrift(BaseModel):
    feature: str
    kind: Literal["numeric", "categorical"]
    rows: int
    missing_rate: float
    reference_missing_rate: float
    drifted: bool
    reasons: list[str] = Field(default_factory=list)
    # numeric
    reference_mean: float | None = None
    current_mean: float | None = None
    z_score: float | None = None
    psi: float | None = None
    # categorical
    frequency_shift: float | None = None
    shifted_category: str | None = None
    unseen_share: float | None = None
    current_frequencies: dict[str, float] = Field(default_factory=dict)

    def headline(self) -> str:
        if self.kind == "numeric":
            return f"z={self.z_score:+.2f}, PSI={self.psi:.3f}"
        return f"max shift {self.frequency_shift:.3f} ({self.shifted_category})"


class DataDriftResult(BaseModel):
    rows: int
    features: list[FeatureDrift] = Field(default_factory=list)
    # Features that could not be checked (e.g. missing from the log), with why.
    unchecked: dict[str, str] = Field(default_factory=dict)
    thresholds: DriftThresholds

    @property
    def drifted_features(self) -> list[str]:
        return [f.feature for f in self.features if f.drifted]

    @property
    def drift_share(self) -> float:
        checked = len(self.features)
        return len(self.drifted_features) / checked if checked else 0.0

    def feature(self, name: str) -> FeatureDrift:
        return next(f for f in self.features if f.feature == name)


class PredictionDrift(BaseModel):
    model_version: str
    rows: int
    # Logged predictions of other model versions are not compared with this version's test set.
    other_version_rows: int
    reference_rows: int
    reference_mean: float
    current_mean: float | None = None
    psi: float | None = None
    ks_statistic: float | None = None
    reference_positive_rate: float
    current_positive_rate: float | None = None
    threshold: float
    bin_edges: list[float] = Field(default_factory=list)
    reference_shares: list[float] = Field(default_factory=list)
    current_shares: list[float] = Field(default_factory=list)
    drifted: bool = False
    reasons: list[str] = Field(default_factory=list)


def psi(reference_shares: list[float] | np.ndarray, current_shares: list[float] | np.ndarray) -> float:
    ref = np.maximum(np.asarray(reference_shares, dtype=float), PSI_FLOOR)
    cur = np.maximum(np.asarray(current_shares, dtype=float), PSI_FLOOR)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def _missing_check(feature: FeatureDrift, thresholds: DriftThresholds) -> None:
    increase = feature.missing_rate - feature.reference_missing_rate
    if increase > thresholds.missing_rate_increase:
        feature.reasons.append(f"missing rate {feature.missing_rate:.1%} vs {feature.reference_missing_rate:.1%} "
                               f"in training")


class NumericSketch:
    """Exact running figures of one numeric feature: rows, missing, sum, counts per training bin."""

    def __init__(self, profile: NumericProfile) -> None:
        self.profile = profile
        self.rows = 0
        self.missing = 0
        self.total = 0.0
        self.bin_counts = np.zeros(len(profile.bin_edges) + 1, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        """``values``: float64, NaN for missing."""
        present = values[~np.isnan(values)]
        self.rows += len(values)
        self.missing += len(values) - len(present)
        self.total += float(present.sum())
        self.bin_counts += np.bincount(np.searchsorted(self.profile.bin_edges, present, side="left"),
                                       minlength=len(self.bin_counts))

    def result(self, thresholds: DriftThresholds) -> FeatureDrift:
        profile = self.profile
        present = self.rows - self.missing
        result = FeatureDrift(feature=profile.name, kind="numeric", rows=self.rows,
                              missing_rate=self.missing / self.rows if self.rows else 0.0,
                              reference_missing_rate=profile.missing_rate, reference_mean=profile.mean,
                              drifted=False)
        if present:
            mean = self.total / present
            scale = profile.std if profile.std > 0 else 1e-9
            result.current_mean = mean
            result.z_score = float(np.clip((mean - profile.mean) / scale, -Z_CAP, Z_CAP))
            result.psi = psi(profile.bin_shares, (self.bin_counts / present).tolist())
            if abs(result.z_score) > thresholds.z_score:
                result.reasons.append(f"mean {mean:.4g} vs {profile.mean:.4g} in training "
                                      f"(z={result.z_score:+.2f} > {thresholds.z_score})")
            if result.psi > thresholds.psi:
                result.reasons.append(f"PSI {result.psi:.3f} > {thresholds.psi}")
        _missing_check(result, thresholds)
        result.drifted = bool(result.reasons)
        return result


class CategoricalSketch:
    """Exact running figures of one categorical feature: rows, missing, count per category (as text)."""

    def __init__(self, profile: CategoricalProfile) -> None:
        self.profile = profile
        self.rows = 0
        self.missing = 0
        self.counts: dict[str, int] = {}

    def add(self, counts: dict[str, int], rows: int, missing: int) -> None:
        self.rows += rows
        self.missing += missing
        for category, count in counts.items():
            if count:
                self.counts[category] = self.counts.get(category, 0) + count

    def result(self, thresholds: DriftThresholds) -> FeatureDrift:
        profile = self.profile
        result = FeatureDrift(feature=profile.name, kind="categorical", rows=self.rows,
                              missing_rate=self.missing / self.rows if self.rows else 0.0,
                              reference_missing_rate=profile.missing_rate, drifted=False)
        present = sum(self.counts.values())
        current = {c: n / present for c, n in self.counts.items()} if present else {}
        if current:
            categories = set(current) | set(profile.frequencies)
            shifts = {c: current.get(c, 0.0) - profile.frequencies.get(c, 0.0) for c in categories}
            category = max(sorted(shifts), key=lambda c: abs(shifts[c]))
            result.current_frequencies = current
            result.frequency_shift = abs(shifts[category])
            result.shifted_category = category
            result.unseen_share = sum(v for c, v in current.items() if c not in profile.frequencies)
            if result.frequency_shift > thresholds.frequency_shift:
                result.reasons.append(f"'{category}' at {current.get(category, 0.0):.1%} vs "
                                      f"{profile.frequencies.get(category, 0.0):.1%} in training")
        _missing_check(result, thresholds)
        result.drifted = bool(result.reasons)
        return result


def series_counts(values: pd.Series) -> dict[str, int]:
    """Non-null values of a pandas column counted by their text (1 and "1" are one category)."""
    counts: dict[str, int] = {}
    for category, count in values.value_counts(dropna=True).items():
        if count:
            counts[str(category)] = counts.get(str(category), 0) + int(count)
    return counts


def numeric_drift(values: pd.Series, profile: NumericProfile, thresholds: DriftThresholds) -> FeatureDrift:
    sketch = NumericSketch(profile)
    sketch.add(pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan))
    return sketch.result(thresholds)


def categorical_drift(values: pd.Series, profile: CategoricalProfile, thresholds: DriftThresholds) -> FeatureDrift:
    sketch = CategoricalSketch(profile)
    sketch.add(series_counts(values), len(values), int(values.isna().sum()))
    return sketch.result(thresholds)


class DataDriftSketch:
    """Per-feature sketches of a window, fed chunk by chunk: memory does not grow with the rows
    (a categorical holds one counter per distinct value), and every figure is exact."""

    def __init__(self, profile: ReferenceProfile, schema: DatasetSchema, missing_features: list[str] | None = None):
        absent = set(missing_features or [])
        self.rows = 0
        self.unchecked: dict[str, str] = {}
        self.numeric: dict[str, NumericSketch] = {}
        self.categorical: dict[str, CategoricalSketch] = {}
        for name in schema.feature_names:
            if name in absent:
                self.unchecked[name] = "missing from the inference log"
            elif name in profile.numeric:
                self.numeric[name] = NumericSketch(profile.numeric[name])
            elif name in profile.categorical:
                self.categorical[name] = CategoricalSketch(profile.categorical[name])
            else:
                self.unchecked[name] = "not in the training profile"
        self.names = list(schema.feature_names)

    def add_frame(self, frame: pd.DataFrame) -> None:
        """One chunk as pandas (features typed by ``conform_features``)."""
        self.rows += len(frame)
        for name, sketch in self.numeric.items():
            if name in frame.columns:
                sketch.add(pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan))
            else:
                sketch.add(np.full(len(frame), np.nan))
        for name, categorical in self.categorical.items():
            if name in frame.columns:
                categorical.add(series_counts(frame[name]), len(frame), int(frame[name].isna().sum()))
            else:
                categorical.add({}, len(frame), len(frame))

    def result(self, thresholds: DriftThresholds, present: set[str] | None = None) -> DataDriftResult:
        """``present``: the features seen in the log at all (None: all of them)."""
        result = DataDriftResult(rows=self.rows, thresholds=thresholds)
        for name in self.names:
            if name in self.unchecked:
                result.unchecked[name] = self.unchecked[name]
            elif present is not None and name not in present:
                result.unchecked[name] = "missing from the inference log"
            else:
                sketch = self.numeric.get(name) or self.categorical[name]
                result.features.append(sketch.result(thresholds))
        return result


def detect_data_drift(frame: pd.DataFrame, profile: ReferenceProfile, schema: DatasetSchema,
                      thresholds: DriftThresholds, missing_features: list[str] | None = None) -> DataDriftResult:
    """Check every schema feature of ``frame`` against the training profile."""
    sketch = DataDriftSketch(profile, schema, missing_features)
    sketch.add_frame(frame)
    return sketch.result(thresholds, present={c for c in frame.columns})


class PredictionDriftSketch:
    """Served probabilities of one model version, exactly: count, sum, positives, counts per
    test-set decile bin, and the counts at and below each distinct test-set probability, from
    which the two-sample KS statistic is exact (it is attained at a sample point)."""

    def __init__(self, reference_probabilities: np.ndarray, model_version: str, threshold: float) -> None:
        self.reference = np.sort(np.asarray(reference_probabilities, dtype=float))
        self.points = np.unique(self.reference)
        self.profile = profile_numeric("probability", pd.Series(self.reference))
        self.model_version = str(model_version)
        self.threshold = threshold
        self.rows = 0
        self.other_version_rows = 0
        self.total = 0.0
        self.positives = 0
        self.bin_counts = np.zeros(len(self.profile.bin_edges) + 1, dtype=np.int64)
        # below[i]: served values in (points[i-1], points[i]] (i = len(points): above all); at[i]: == points[i].
        self.below = np.zeros(len(self.points) + 1, dtype=np.int64)
        self.at = np.zeros(len(self.points), dtype=np.int64)

    def add(self, model_versions: pd.Series, probabilities: np.ndarray) -> None:
        same = (model_versions.astype(str) == self.model_version).to_numpy()
        self.add_served(np.asarray(probabilities, dtype=float)[same], int((~same).sum()))

    def add_served(self, current: np.ndarray, other_version_rows: int) -> None:
        """Probabilities served by this version, and how many rows of other versions were left out."""
        self.other_version_rows += other_version_rows
        self.rows += len(current)
        self.total += float(current.sum())
        self.positives += int((current >= self.threshold).sum())
        self.bin_counts += np.bincount(np.searchsorted(self.profile.bin_edges, current, side="left"),
                                       minlength=len(self.bin_counts))
        left = np.searchsorted(self.points, current, side="left")
        self.below += np.bincount(left, minlength=len(self.below))
        equal = (left < len(self.points)) & (self.points[np.minimum(left, len(self.points) - 1)] == current) \
            if len(self.points) else np.zeros(len(current), dtype=bool)
        self.at += np.bincount(left[equal], minlength=len(self.at))

    def ks_statistic(self) -> float:
        """sup |F_ref - F_served| over every sample point, from the bin counts (exact)."""
        n, m = len(self.reference), self.rows
        # Served values at or below points[i], and strictly below.
        at_or_below = np.cumsum(self.below)[:-1]
        strictly_below = at_or_below - self.at
        reference_at_or_below = np.searchsorted(self.reference, self.points, side="right") / n
        reference_below = np.searchsorted(self.reference, self.points, side="left") / n
        # At each reference point (right-continuous CDFs) and just before it (the largest served
        # value below it, where the reference CDF still has its previous value).
        gaps = [np.abs(reference_at_or_below - at_or_below / m), np.abs(reference_below - strictly_below / m)]
        return float(max(g.max() for g in gaps))

    def result(self, thresholds: DriftThresholds) -> PredictionDrift:
        reference, profile = self.reference, self.profile
        result = PredictionDrift(
            model_version=self.model_version, rows=self.rows, other_version_rows=self.other_version_rows,
            reference_rows=len(reference), reference_mean=profile.mean,
            reference_positive_rate=float((reference >= self.threshold).mean()) if len(reference) else 0.0,
            threshold=self.threshold, bin_edges=profile.bin_edges, reference_shares=profile.bin_shares,
        )
        if self.rows == 0 or len(reference) == 0:
            return result
        result.current_mean = self.total / self.rows
        result.current_positive_rate = self.positives / self.rows
        result.current_shares = (self.bin_counts / self.rows).tolist()
        result.psi = psi(result.reference_shares, result.current_shares)
        result.ks_statistic = self.ks_statistic()
        if result.psi > thresholds.prediction_psi:
            result.reasons.append(
                f"served probabilities drifted from the test set: PSI {result.psi:.3f} > {thresholds.prediction_psi} "
                f"(mean {result.current_mean:.3f} vs {result.reference_mean:.3f}, predicted churn rate "
                f"{result.current_positive_rate:.1%} vs {result.reference_positive_rate:.1%})")
        result.drifted = bool(result.reasons)
        return result


def detect_prediction_drift(served: pd.DataFrame, reference_probabilities: np.ndarray, model_version: str,
                            threshold: float, thresholds: DriftThresholds) -> PredictionDrift:
    """Served probabilities of ``model_version`` against that version's test-set probabilities,
    binned like a numeric feature of the training profile (test-set deciles)."""
    sketch = PredictionDriftSketch(reference_probabilities, model_version, threshold)
    sketch.add(served["model_version"], served["probability"].to_numpy(dtype=float))
    return sketch.result(thresholds)
