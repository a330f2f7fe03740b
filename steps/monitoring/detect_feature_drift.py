from typing import Annotated, Any

import pandas as pd
from zenml import step

from churnops.data.profile import ReferenceProfile
from churnops.data.schema import DatasetSchema
from churnops.monitoring.drift import DataDriftResult, DriftThresholds, detect_data_drift
from churnops.monitoring.inference_log import SchemaCheck
from materializers.monitoring import DataDriftResultMaterializer


@step(output_materializers={"data_drift": DataDriftResultMaterializer})
def detect_feature_drift(
    inference_window: pd.DataFrame, reference_profile: ReferenceProfile, dataset_schema: DatasetSchema,
    schema_check: SchemaCheck, thresholds: dict[str, Any] | None = None,
) -> Annotated[DataDriftResult, "data_drift"]:
    """Per-feature drift of the whole window against the training profile (z-score, PSI, frequency shift)."""
    return detect_data_drift(inference_window, reference_profile, dataset_schema,
                             DriftThresholds.model_validate(thresholds or {}), schema_check.missing_features)
