"""The fresh training table for continuous training.

Labelled production rows (logged predictions whose outcome came back through the feedback
log) carry the world as it is now; a capped sample of the production model's own training
data (its ``train_set`` and ``test_set``) keeps the rest of the population represented. The
table is written in the raw format of the model's dataset schema (id column, features,
target), next to a copy of the schema pointing at it, so the ordinary training pipeline
validates, trains, gates and compares it with the champion like any other data.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from churnops.data.schema import DatasetSchema, FileSource

PRODUCTION_ID_PREFIX = "prod-"


class RetrainingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    training_config: str = Field("configs/training.yaml", description="training pipeline config, project-relative")
    production_days: float = Field(30, gt=0, description="how far back labelled production rows are taken")
    max_production_rows: int = Field(200_000, ge=1)
    reference_rows: int | None = Field(5_000, ge=0, description="cap on the old training rows mixed in (null: all)")
    seed: int = 0
    # The closed loop: a retrained version that wins offline is staged and served beside production
    # (shadow: scores every request off the response path; canary: answers canary_percent of customers)
    # until promote_on_evidence decides on live traffic. off: a winner replaces production at once.
    deploy_challenger: Literal["off", "shadow", "canary"] = "off"
    canary_percent: float = Field(10.0, gt=0, lt=100, description="share of customers a canary challenger answers")


class RetrainingData(BaseModel):
    data_path: str
    schema_path: str
    rows: int
    production_rows: int
    reference_rows: int
    production_positive_rate: float | None = None


def production_training_rows(labelled: pd.DataFrame, schema: DatasetSchema, max_rows: int) -> pd.DataFrame:
    """Labelled predictions as training rows: one per customer (latest prediction), newest first."""
    if labelled.empty:
        return pd.DataFrame(columns=schema.required_columns)
    key = labelled["customer_key"].astype(object) if "customer_key" in labelled.columns else None
    ids = (PRODUCTION_ID_PREFIX + "req-" + labelled["request_id"].astype(str))
    if key is not None:
        ids = ids.where(key.isna(), PRODUCTION_ID_PREFIX + "cust-" + key.astype(str))
    rows = pd.DataFrame({schema.id_column or "id": ids.to_numpy()}, index=labelled.index)
    for name in schema.feature_names:
        values = labelled[name]
        rows[name] = values.astype(object).where(values.notna(), None) if name in schema.categorical_names else values
    rows[schema.target.column] = labelled["outcome"].astype(int).to_numpy()
    rows["_timestamp"] = labelled["timestamp"].to_numpy()
    rows = rows.sort_values("_timestamp", ascending=False, kind="stable")
    rows = rows.drop_duplicates(rows.columns[0], keep="first").head(max_rows)
    rows = rows.drop(columns="_timestamp")
    if schema.id_column is None:
        rows = rows.drop(columns="id")
    return rows.reset_index(drop=True)


def assemble(reference: pd.DataFrame, production: pd.DataFrame, schema: DatasetSchema,
             settings: RetrainingSettings) -> pd.DataFrame:
    """Production rows plus (a sample of) the reference rows, shuffled, in the schema's columns."""
    columns = schema.required_columns
    if settings.reference_rows is not None and len(reference) > settings.reference_rows:
        reference = reference.sample(n=settings.reference_rows, random_state=settings.seed)
    parts = [frame[columns].astype({c: object for c in schema.categorical_names})
             for frame in (production, reference) if len(frame)]
    if not parts:
        return pd.DataFrame(columns=columns)
    combined = pd.concat(parts, ignore_index=True)
    return combined.sample(frac=1.0, random_state=settings.seed).reset_index(drop=True)


def write_training_table(reference: pd.DataFrame, production: pd.DataFrame, schema: DatasetSchema,
                         settings: RetrainingSettings, folder: Path) -> RetrainingData:
    """Assemble the table, write it and a schema YAML pointing at it; return where they are."""
    frame = assemble(reference, production, schema, settings)
    folder.mkdir(parents=True, exist_ok=True)
    data_path = folder / "retraining_data.parquet"
    schema_path = folder / "schema.yaml"
    if schema.id_column:
        frame[schema.id_column] = frame[schema.id_column].astype(str)
    frame.to_parquet(data_path, index=False)
    described = schema.with_source(FileSource(path=str(data_path))).model_copy(
        update={"description": f"{schema.description} Retraining table built by monitoring at "
                               f"{datetime.now(UTC).isoformat(timespec='seconds')}."})
    schema_path.write_text(yaml.safe_dump(described.model_dump(mode="json"), sort_keys=False))
    target = schema.target.column
    return RetrainingData(
        data_path=str(data_path), schema_path=str(schema_path), rows=len(frame), production_rows=len(production),
        reference_rows=len(frame) - len(production),
        production_positive_rate=float(pd.to_numeric(production[target]).mean()) if len(production) else None,
    )
