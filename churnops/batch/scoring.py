"""Scoring the cleaned batch part by part: probability, expected net gain and reasons.

Probabilities come from serving's compiled scorer (``churnops.serving.compiled``: the fitted
pipeline's own parameters on numpy arrays, parity-checked against ``predict_proba`` before use),
fed directly from the staging parts' float columns and category codes. Expected net gain and the
contact decision are ``churnops.modeling.targeting``'s; reasons are ``churnops.modeling.explain``'s.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.feather as feather
from sklearn.pipeline import Pipeline

from churnops.batch.drift import _codes
from churnops.batch.validation import CleanBatch, read_part
from churnops.data.schema import DatasetSchema
from churnops.modeling.explain import Explainer, explainer_for
from churnops.modeling.targeting import TargetingConfig, customer_values, expected_net_gain, value_column
from churnops.serving.compiled import Scorer, batch_frame, compile_pipeline
from churnops.serving.contract import FeatureBatch

PROBABILITY = "churn_probability"
GAIN = "expected_net_gain"
CONTACT = "contact"
RANK = "rank"


def reason_columns(k: int) -> list[str]:
    return [f"reason_{i}" for i in range(1, k + 1)] + [f"reason_{i}_contribution" for i in range(1, k + 1)]


def id_column_name(schema: DatasetSchema) -> str:
    return schema.id_column or "customer_id"


def feature_batch(table: pa.Table, schema: DatasetSchema) -> FeatureBatch:
    """A staging part as serving's arrays: float64 numerics (NaN null), schema category codes (-1 null)."""
    n = table.num_rows
    numeric = np.empty((n, len(schema.numeric_names)), dtype=np.float64)
    for i, name in enumerate(schema.numeric_names):
        numeric[:, i] = table.column(name).to_numpy()
    codes = np.empty((n, len(schema.categorical_names)), dtype=np.int32)
    for j, name in enumerate(schema.categorical_names):
        codes[:, j] = _codes(table.column(name))
    return FeatureBatch(numeric=numeric, codes=codes, customer_ids=None, request_ids=[])


@dataclass
class Model:
    """What scoring needs of one model version."""

    pipeline: Pipeline
    schema: DatasetSchema
    scorer: Scorer
    explainer: Explainer | None

    @classmethod
    def build(cls, pipeline: Pipeline, schema: DatasetSchema, reasons: bool) -> Model:
        return cls(pipeline, schema, compile_pipeline(pipeline, schema),
                   explainer_for(pipeline, schema) if reasons else None)


@dataclass
class ScoredBatch:
    """Scored parts (input order) plus the two columns ranking needs, whole, in memory."""

    parts: list[str]
    probabilities: np.ndarray
    net_gain: np.ndarray
    top_k: int
    scorer_path: str
    reasons_method: str | None

    @property
    def rows(self) -> int:
        return len(self.probabilities)


def score_part(table: pa.Table, model: Model, targeting: TargetingConfig, top_k: int) -> pa.Table:
    """One part's id, probability, expected net gain and (``top_k`` > 0 with an explainer) reasons."""
    schema = model.schema
    batch = feature_batch(table, schema)
    probabilities = model.scorer(batch)
    column = value_column(targeting, schema)
    value_frame = pd.DataFrame({column: batch.numeric[:, schema.numeric_names.index(column)]})
    gains = expected_net_gain(probabilities, customer_values(value_frame, targeting, schema), targeting)
    identifier = id_column_name(schema)
    ids = table.column(schema.id_column) if schema.id_column else pa.array(np.arange(table.num_rows).astype(str))
    columns: dict[str, pa.Array | pa.ChunkedArray] = {identifier: ids, PROBABILITY: pa.array(probabilities),
                                                       GAIN: pa.array(gains)}
    if model.explainer is not None and top_k > 0:
        reasons = model.explainer.top_reasons(batch_frame(batch, schema), top_k)
        for i in range(top_k):
            columns[f"reason_{i + 1}"] = pa.array(reasons.labels[:, i].astype(str), type=pa.string())
        for i in range(top_k):
            columns[f"reason_{i + 1}_contribution"] = pa.array(reasons.contributions[:, i], from_pandas=True)
    return pa.table(columns)


def score_batch(clean: CleanBatch, model: Model, targeting: TargetingConfig, top_k: int,
                staging: Path) -> ScoredBatch:
    """Score every staging part, writing the scored parts under ``staging``."""
    staging.mkdir(parents=True, exist_ok=True)
    parts, probabilities, gains = [], [], []
    for index, part in enumerate(clean.parts):
        scored = score_part(read_part(part), model, targeting, top_k)
        path = staging / f"scored-{index:05d}.arrow"
        feather.write_feather(scored, path, compression="uncompressed")
        parts.append(str(path))
        probabilities.append(scored.column(PROBABILITY).to_numpy())
        gains.append(scored.column(GAIN).to_numpy())
    explained = model.explainer is not None and top_k > 0
    return ScoredBatch(parts=parts, probabilities=np.concatenate(probabilities), net_gain=np.concatenate(gains),
                       top_k=top_k if explained else 0, scorer_path=model.scorer.path,
                       reasons_method=model.explainer.method if explained and model.explainer else None)
