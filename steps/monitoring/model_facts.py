"""What the monitoring steps need to know about the model version under watch."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel
from zenml import get_step_context

from churnops.monitoring.performance import METRIC_NAMES


class ModelFacts(BaseModel):
    name: str
    version: str
    threshold: float
    gate_f1: float
    gate_roc_auc: float
    expected: dict[str, float]


def model_facts() -> ModelFacts:
    """Name, version, stored threshold, training gate and test metrics of the pipeline's model version."""
    model = get_step_context().model
    metadata: dict[str, Any] = dict(model.run_metadata)
    return ModelFacts(
        name=model.name, version=str(model.number),
        threshold=float(metadata.get("decision_threshold", 0.5)),
        gate_f1=float(metadata.get("gate_f1", 0.0)), gate_roc_auc=float(metadata.get("gate_roc_auc", 0.0)),
        expected={k: float(metadata[k]) for k in METRIC_NAMES if isinstance(metadata.get(k), int | float)},
    )
