"""Drift of a batch against the training profile, in one streaming pass over every row.

The same statistics and thresholds as monitoring (``churnops.monitoring.drift``: z-score of the
mean, PSI over the training decile bins, largest category-share change, missing-rate increase),
computed from running sums, bin counts and category counts, so ten million rows cost one read
and no more memory than one chunk. No Evidently: its report costs ~14 s per million rows.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from churnops.batch.validation import CleanBatch, read_part
from churnops.data.profile import ReferenceProfile
from churnops.data.schema import DatasetSchema
from churnops.monitoring.drift import (
    Z_CAP,
    CategoricalSketch,
    DataDriftResult,
    DriftThresholds,
    FeatureDrift,
    _missing_check,
    psi,
)

Policy = Literal["warn", "fail"]


class DriftPolicy(BaseModel):
    """The ``drift:`` block of configs/batch_inference.yaml."""

    model_config = ConfigDict(extra="forbid")

    thresholds: DriftThresholds = Field(default_factory=DriftThresholds)
    severe_share: float = Field(0.5, gt=0, le=1, description="severe when at least this share of features drifted")
    severe_drift: Policy = "warn"


class BatchDrift(BaseModel):
    result: DataDriftResult
    policy: DriftPolicy

    @property
    def verdict(self) -> Literal["none", "drift", "severe"]:
        if not self.result.drifted_features:
            return "none"
        return "severe" if self.result.drift_share >= self.policy.severe_share else "drift"

    def describe(self) -> str:
        drifted = self.result.drifted_features
        if not drifted:
            return f"no drift in {len(self.result.features)} features"
        return (f"{self.verdict}: {len(drifted)} of {len(self.result.features)} features drifted "
                f"({self.result.drift_share:.0%}; severe at {self.policy.severe_share:.0%}): {', '.join(drifted)}")


class _NumericStats:
    def __init__(self, edges: list[float]) -> None:
        self.edges = np.asarray(edges, dtype=float)
        self.rows = self.missing = 0
        self.total = 0.0
        self.bins = np.zeros(len(edges) + 1, dtype=np.int64)

    def add(self, values: np.ndarray) -> None:
        present = values[~np.isnan(values)]
        self.rows += len(values)
        self.missing += len(values) - len(present)
        self.total += float(present.sum())
        # Same binning as churnops.data.profile.bin_shares.
        self.bins += np.bincount(np.searchsorted(self.edges, present, side="left"), minlength=len(self.bins))


class _CategoricalStats:
    def __init__(self, categories: list[str]) -> None:
        self.categories = categories
        self.rows = self.missing = 0
        self.counts = np.zeros(len(categories), dtype=np.int64)

    def add(self, codes: np.ndarray) -> None:
        self.rows += len(codes)
        present = codes[codes >= 0]
        self.missing += len(codes) - len(present)
        self.counts += np.bincount(present, minlength=len(self.categories))


def _numeric_drift(name: str, stats: _NumericStats, profile: ReferenceProfile,
                   thresholds: DriftThresholds) -> FeatureDrift:
    reference = profile.numeric[name]
    result = FeatureDrift(feature=name, kind="numeric", rows=stats.rows,
                          missing_rate=stats.missing / stats.rows if stats.rows else 0.0,
                          reference_missing_rate=reference.missing_rate, reference_mean=reference.mean, drifted=False)
    present = stats.rows - stats.missing
    if present:
        mean = stats.total / present
        scale = reference.std if reference.std > 0 else 1e-9
        result.current_mean = mean
        result.z_score = float(np.clip((mean - reference.mean) / scale, -Z_CAP, Z_CAP))
        result.psi = psi(reference.bin_shares, stats.bins / present)
        if abs(result.z_score) > thresholds.z_score:
            result.reasons.append(f"mean {mean:.4g} vs {reference.mean:.4g} in training "
                                  f"(z={result.z_score:+.2f} > {thresholds.z_score})")
        if result.psi > thresholds.psi:
            result.reasons.append(f"PSI {result.psi:.3f} > {thresholds.psi}")
    _missing_check(result, thresholds)
    result.drifted = bool(result.reasons)
    return result


def _categorical_drift(name: str, stats: _CategoricalStats, profile: ReferenceProfile,
                       thresholds: DriftThresholds) -> FeatureDrift:
    """Monitoring's categorical verdict, from this pass's counts."""
    sketch = CategoricalSketch(profile.categorical[name])
    sketch.add({c: int(n) for c, n in zip(stats.categories, stats.counts, strict=True)}, stats.rows, stats.missing)
    return sketch.result(thresholds)


def _codes(column: pa.ChunkedArray) -> np.ndarray:
    chunks = [pc.fill_null(c.indices, -1).to_numpy(zero_copy_only=False) for c in column.chunks]
    return np.concatenate(chunks).astype(np.int64) if chunks else np.zeros(0, dtype=np.int64)


def batch_drift(clean: CleanBatch, profile: ReferenceProfile, schema: DatasetSchema, policy: DriftPolicy) -> BatchDrift:
    """Every schema feature of the cleaned batch against the training profile."""
    numeric = {n: _NumericStats(profile.numeric[n].bin_edges) for n in schema.numeric_names if n in profile.numeric}
    categorical = {f.name: _CategoricalStats(f.categories) for f in schema.categorical if f.name in profile.categorical}
    for part in clean.parts:
        table = read_part(part)
        for name, stats in numeric.items():
            stats.add(table.column(name).to_numpy())
        for name, cat_stats in categorical.items():
            cat_stats.add(_codes(table.column(name)))
    result = DataDriftResult(rows=clean.rows, thresholds=policy.thresholds)
    for name in schema.feature_names:
        if name in numeric:
            result.features.append(_numeric_drift(name, numeric[name], profile, policy.thresholds))
        elif name in categorical:
            result.features.append(_categorical_drift(name, categorical[name], profile, policy.thresholds))
        else:
            result.unchecked[name] = "not in the training profile"
    return BatchDrift(result=result, policy=policy)
