from typing import Annotated, Any

import pandas as pd
from zenml import step

from churnops.monitoring.drift import DriftThresholds, PredictionDrift
from churnops.monitoring.window import WindowManifest, window_prediction_drift
from materializers.monitoring import PredictionDriftMaterializer
from steps.monitoring.model_facts import model_facts


@step(output_materializers={"prediction_drift": PredictionDriftMaterializer})
def detect_output_drift(
    inference_window: WindowManifest, test_predictions: pd.DataFrame, thresholds: dict[str, Any] | None = None,
) -> Annotated[PredictionDrift, "prediction_drift"]:
    """Served probabilities of this model version against its own test-set probabilities."""
    facts = model_facts()
    return window_prediction_drift(inference_window, test_predictions["probability"].to_numpy(), facts.version,
                                   facts.threshold, DriftThresholds.model_validate(thresholds or {}))
