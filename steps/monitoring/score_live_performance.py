from typing import Annotated, Any

import pandas as pd
from zenml import step

from churnops.monitoring.performance import LivePerformance, PerformanceGate
from churnops.monitoring.window import WindowManifest, window_live_performance
from materializers.monitoring import LivePerformanceMaterializer
from steps.monitoring.model_facts import model_facts


@step(output_materializers={"live_performance": LivePerformanceMaterializer})
def score_live_performance(
    inference_window: WindowManifest, feedback: pd.DataFrame, gate: dict[str, Any] | None = None,
) -> Annotated[LivePerformance, "live_performance"]:
    """Accuracy, precision, recall, F1 and ROC-AUC of this version's labelled predictions, against the gate.

    The gate defaults to the one this model version passed in training (its ``gate_f1`` and
    ``gate_roc_auc`` metadata); the config may set stricter or looser figures.
    """
    facts = model_facts()
    config = PerformanceGate.model_validate(gate or {})
    return window_live_performance(
        inference_window, feedback, facts.threshold,
        gate_f1=config.f1 if config.f1 is not None else facts.gate_f1,
        gate_roc_auc=config.roc_auc if config.roc_auc is not None else facts.gate_roc_auc,
        min_labelled=config.min_labelled, expected=facts.expected, model_version=facts.version,
    )
