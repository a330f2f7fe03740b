from typing import Annotated, Any

from zenml import step

from churnops.data.profile import ReferenceProfile
from churnops.data.schema import DatasetSchema
from churnops.monitoring.drift import DataDriftResult, DriftThresholds
from churnops.monitoring.inference_log import SchemaCheck
from churnops.monitoring.window import WindowManifest, window_data_drift
from materializers.monitoring import DataDriftResultMaterializer


@step(output_materializers={"data_drift": DataDriftResultMaterializer})
def detect_feature_drift(
    inference_window: WindowManifest, reference_profile: ReferenceProfile, dataset_schema: DatasetSchema,
    schema_check: SchemaCheck, thresholds: dict[str, Any] | None = None,
) -> Annotated[DataDriftResult, "data_drift"]:
    """Per-feature drift of every row of the window against the training profile (z-score, PSI,
    frequency shift), streamed file by file."""
    return window_data_drift(inference_window, reference_profile, dataset_schema,
                             DriftThresholds.model_validate(thresholds or {}), schema_check.missing_features)
