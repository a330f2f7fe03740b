from typing import Annotated

import pandas as pd
from zenml import step

from churnops.monitoring.estimation import Calibration, LabelFreeEstimate
from churnops.monitoring.window import WindowManifest, window_estimated_performance
from steps.monitoring.model_facts import model_facts


@step
def estimate_live_performance(
    inference_window: WindowManifest, test_predictions: pd.DataFrame,
) -> Annotated[LabelFreeEstimate, "estimated_performance"]:
    """Precision, recall and F1 expected from the served probabilities alone (CBPE), before any label is back.

    The probabilities are calibrated on this version's own test-set predictions and outcomes.
    """
    facts = model_facts()
    calibration = Calibration.fit(test_predictions["probability"].to_numpy(), test_predictions["actual"].to_numpy())
    return window_estimated_performance(inference_window, calibration, facts.version, facts.threshold)
