"""What a packaged model is: the files inside a BentoML model folder, and its card.

``churnops.platform.deployment`` writes them into the BentoML model store; the service reads them.
Keeping the format here (without BentoML) lets both sides and the tests share it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import joblib
from pydantic import BaseModel, Field

from churnops.data.schema import DatasetSchema

if TYPE_CHECKING:
    # Only for hints: keeps sklearn out of light importers such as `run.py --pipeline simulate`.
    from sklearn.pipeline import Pipeline

PIPELINE_FILE = "pipeline.joblib"
SCHEMA_FILE = "dataset_schema.json"
CARD_FILE = "model_card.json"
METRIC_KEYS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier")
# Every file the service loads; their SHA-256 travel in the BentoML model's metadata under
# FILES_SHA256_KEY (and on the ZenML model version as ``served_files_sha256``).
SERVED_FILES = (PIPELINE_FILE, SCHEMA_FILE, CARD_FILE)
FILES_SHA256_KEY = "files_sha256"


class ModelIntegrityError(RuntimeError):
    """A packaged model file does not match the SHA-256 recorded when it was packaged."""


class ModelCard(BaseModel):
    """Who the packaged model is: its Model Control Plane identity, threshold and metrics."""

    model_name: str
    model_version: str
    model_version_id: str | None = None
    stage: str | None = None
    threshold: float = Field(ge=0, le=1)
    metrics: dict[str, float] = Field(default_factory=dict)
    trained_at: str | None = None
    dataset: str
    data_hash: str | None = None
    estimator: str | None = None
    packaged_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    def labels(self) -> dict[str, str]:
        """BentoML labels (strings only) for ``bentoml models list`` and lookups."""
        labels = {
            "zenml_model": self.model_name,
            "zenml_version": self.model_version,
            "stage": self.stage or "none",
            "threshold": f"{self.threshold:.6f}",
            "dataset": self.dataset,
        }
        if self.model_version_id:
            labels["zenml_version_id"] = self.model_version_id
        if self.data_hash:
            labels["data_hash"] = self.data_hash[:16]
        for key in ("f1", "roc_auc"):
            if key in self.metrics:
                labels[key] = f"{self.metrics[key]:.4f}"
        return labels


@dataclass(frozen=True)
class PackagedModel:
    pipeline: Pipeline
    schema: DatasetSchema
    card: ModelCard


def write_model_files(folder: Path, pipeline: Pipeline, schema: DatasetSchema, card: ModelCard) -> None:
    folder = Path(folder)
    joblib.dump(pipeline, folder / PIPELINE_FILE)
    (folder / SCHEMA_FILE).write_text(schema.model_dump_json(indent=2))
    (folder / CARD_FILE).write_text(card.model_dump_json(indent=2))


def read_schema(folder: Path) -> DatasetSchema:
    return DatasetSchema.model_validate_json((Path(folder) / SCHEMA_FILE).read_text())


def read_card(folder: Path) -> ModelCard:
    return ModelCard.model_validate_json((Path(folder) / CARD_FILE).read_text())


def read_model_files(folder: Path) -> PackagedModel:
    folder = Path(folder)
    pipeline = joblib.load(folder / PIPELINE_FILE)
    if not hasattr(pipeline, "predict_proba"):
        raise TypeError(f"{folder / PIPELINE_FILE} holds a {type(pipeline).__name__}, not a classifier pipeline")
    return PackagedModel(pipeline=pipeline, schema=read_schema(folder), card=read_card(folder))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        while chunk := handle.read(2**20):
            digest.update(chunk)
    return digest.hexdigest()


def model_files_sha256(folder: Path) -> dict[str, str]:
    """The SHA-256 of every file the service loads from a packaged model folder."""
    return {name: file_sha256(Path(folder) / name) for name in SERVED_FILES}


def verify_model_files(folder: Path, expected: Mapping[str, str] | None) -> None:
    """Refuse a packaged model whose files are not exactly the ones packaged.

    Raises :class:`ModelIntegrityError` naming each file with both hashes, or when no hashes
    were recorded at all (a model packaged without them cannot be verified).
    """
    folder = Path(folder)
    if not expected:
        raise ModelIntegrityError(f"{folder} has no recorded file hashes ({FILES_SHA256_KEY}): it cannot be verified; "
                                  "package it again with `python run.py --pipeline deploy`")
    problems = []
    for name in SERVED_FILES:
        path = folder / name
        recorded = expected.get(name)
        observed = file_sha256(path) if path.is_file() else None
        if recorded is None or observed != recorded:
            problems.append(f"{path}: expected sha256 {recorded or '(none recorded)'}, found {observed or '(missing)'}")
    if problems:
        raise ModelIntegrityError("refusing to serve a model whose files changed since packaging:\n  "
                                  + "\n  ".join(problems))
