"""The lab's monitor: per-feature drift against the training profile, and prediction drift.

Numeric features: the z-score of the window mean against the training mean, in training
standard deviations (an effect size, so a million rows do not make noise significant), and
PSI over the training decile bins. Categorical features: the largest change in a category's
frequency (unseen categories count from zero). Both also watch the missing rate. Every
statistic uses all rows of the window.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from churnops.data.profile import CategoricalProfile, NumericProfile, ReferenceProfile, bin_shares, profile_numeric
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


def numeric_drift(values: pd.Series, profile: NumericProfile, thresholds: DriftThresholds) -> FeatureDrift:
    present = values.dropna()
    result = FeatureDrift(feature=profile.name, kind="numeric", rows=len(values),
                          missing_rate=float(values.isna().mean()) if len(values) else 0.0,
                          reference_missing_rate=profile.missing_rate, reference_mean=profile.mean,
                          drifted=False)
    if len(present):
        mean = float(present.mean())
        scale = profile.std if profile.std > 0 else 1e-9
        result.current_mean = mean
        result.z_score = float(np.clip((mean - profile.mean) / scale, -Z_CAP, Z_CAP))
        result.psi = psi(profile.bin_shares, bin_shares(present, profile.bin_edges))
        if abs(result.z_score) > thresholds.z_score:
            result.reasons.append(f"mean {mean:.4g} vs {profile.mean:.4g} in training "
                                  f"(z={result.z_score:+.2f} > {thresholds.z_score})")
        if result.psi > thresholds.psi:
            result.reasons.append(f"PSI {result.psi:.3f} > {thresholds.psi}")
    _missing_check(result, thresholds)
    result.drifted = bool(result.reasons)
    return result


def categorical_drift(values: pd.Series, profile: CategoricalProfile, thresholds: DriftThresholds) -> FeatureDrift:
    result = FeatureDrift(feature=profile.name, kind="categorical", rows=len(values),
                          missing_rate=float(values.isna().mean()) if len(values) else 0.0,
                          reference_missing_rate=profile.missing_rate, drifted=False)
    current: dict[str, float] = {}
    for category, share in values.value_counts(normalize=True, dropna=True).items():
        if share > 0:
            current[str(category)] = current.get(str(category), 0.0) + float(share)
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


def detect_data_drift(frame: pd.DataFrame, profile: ReferenceProfile, schema: DatasetSchema,
                      thresholds: DriftThresholds, missing_features: list[str] | None = None) -> DataDriftResult:
    """Check every schema feature of ``frame`` against the training profile."""
    result = DataDriftResult(rows=len(frame), thresholds=thresholds)
    absent = set(missing_features or [])
    for name in schema.feature_names:
        if name in absent or name not in frame.columns:
            result.unchecked[name] = "missing from the inference log"
        elif name in profile.numeric:
            result.features.append(numeric_drift(frame[name], profile.numeric[name], thresholds))
        elif name in profile.categorical:
            result.features.append(categorical_drift(frame[name], profile.categorical[name], thresholds))
        else:
            result.unchecked[name] = "not in the training profile"
    return result


def detect_prediction_drift(served: pd.DataFrame, reference_probabilities: np.ndarray, model_version: str,
                            threshold: float, thresholds: DriftThresholds) -> PredictionDrift:
    """Served probabilities of ``model_version`` against that version's test-set probabilities,
    binned like a numeric feature of the training profile (test-set deciles)."""
    from scipy.stats import ks_2samp

    reference = np.asarray(reference_probabilities, dtype=float)
    profile = profile_numeric("probability", pd.Series(reference))
    same_version = served["model_version"].astype(str) == str(model_version)
    current = served.loc[same_version, "probability"].to_numpy(dtype=float)
    result = PredictionDrift(
        model_version=str(model_version), rows=len(current), other_version_rows=int((~same_version).sum()),
        reference_rows=len(reference), reference_mean=profile.mean,
        reference_positive_rate=float((reference >= threshold).mean()) if len(reference) else 0.0,
        threshold=threshold, bin_edges=profile.bin_edges, reference_shares=profile.bin_shares,
    )
    if len(current) == 0 or len(reference) == 0:
        return result
    result.current_mean = float(current.mean())
    result.current_positive_rate = float((current >= threshold).mean())
    result.current_shares = bin_shares(pd.Series(current), profile.bin_edges)
    result.psi = psi(result.reference_shares, result.current_shares)
    result.ks_statistic = float(ks_2samp(reference, current).statistic)
    if result.psi > thresholds.prediction_psi:
        result.reasons.append(
            f"served probabilities drifted from the test set: PSI {result.psi:.3f} > {thresholds.prediction_psi} "
            f"(mean {result.current_mean:.3f} vs {result.reference_mean:.3f}, predicted churn rate "
            f"{result.current_positive_rate:.1%} vs {result.reference_positive_rate:.1%})")
    result.drifted = bool(result.reasons)
    return result
