"""The reference profile of training data: what monitoring compares served data against.

Per numeric feature: summary statistics, quantiles and decile bin edges with the share of
rows in each bin (for PSI). Per categorical feature: category frequencies. The lab's
``train_stats.json``, typed.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, Field

from churnops.data.schema import DatasetSchema

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
PSI_BINS = 10


class NumericProfile(BaseModel):
    name: str
    count: int
    missing_rate: float
    mean: float
    std: float
    min: float
    max: float
    quantiles: dict[str, float]
    # Interior bin edges (deciles); bins are (-inf, e0], (e0, e1], ..., (e_last, inf).
    bin_edges: list[float]
    bin_shares: list[float]


class CategoricalProfile(BaseModel):
    name: str
    count: int
    missing_rate: float
    frequencies: dict[str, float]


class ReferenceProfile(BaseModel):
    dataset: str
    rows: int
    target_rate: float
    numeric: dict[str, NumericProfile] = Field(default_factory=dict)
    categorical: dict[str, CategoricalProfile] = Field(default_factory=dict)


def bin_shares(values: pd.Series, edges: list[float]) -> list[float]:
    """Share of non-null ``values`` in each bin defined by interior ``edges``."""
    present = values.dropna().to_numpy(dtype=float)
    if present.size == 0:
        return [0.0] * (len(edges) + 1)
    counts = np.bincount(np.searchsorted(edges, present, side="left"), minlength=len(edges) + 1)
    return (counts / present.size).tolist()


def profile_numeric(name: str, values: pd.Series) -> NumericProfile:
    present = values.dropna().astype(float)
    quantiles = present.quantile(list(QUANTILES)) if len(present) else pd.Series(0.0, index=QUANTILES)
    edges = sorted(set(np.quantile(present, np.linspace(0, 1, PSI_BINS + 1)[1:-1]).tolist())) if len(present) else []
    return NumericProfile(
        name=name,
        count=int(present.size),
        missing_rate=float(values.isna().mean()) if len(values) else 0.0,
        mean=float(present.mean()) if len(present) else 0.0,
        std=float(present.std(ddof=0)) if len(present) else 0.0,
        min=float(present.min()) if len(present) else 0.0,
        max=float(present.max()) if len(present) else 0.0,
        quantiles={f"p{int(q * 100):02d}": float(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        bin_edges=edges,
        bin_shares=bin_shares(values, edges),
    )


def profile_categorical(name: str, values: pd.Series) -> CategoricalProfile:
    present = values.dropna().astype(str)
    return CategoricalProfile(
        name=name,
        count=int(present.size),
        missing_rate=float(values.isna().mean()) if len(values) else 0.0,
        frequencies={str(k): float(v) for k, v in present.value_counts(normalize=True).items()},
    )


def build_reference_profile(frame: pd.DataFrame, schema: DatasetSchema) -> ReferenceProfile:
    target = frame[schema.target.column]
    return ReferenceProfile(
        dataset=schema.name,
        rows=len(frame),
        target_rate=float(target.mean()) if len(frame) else 0.0,
        numeric={n: profile_numeric(n, frame[n]) for n in schema.numeric_names},
        categorical={n: profile_categorical(n, frame[n]) for n in schema.categorical_names},
    )
