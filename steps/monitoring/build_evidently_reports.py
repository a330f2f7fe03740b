from typing import Annotated, Any

import pandas as pd
from zenml import step

from churnops.data.schema import DatasetSchema
from churnops.monitoring.evidently_reports import EvidentlyReport, ReportSettings, build_reports
from churnops.monitoring.window import WindowManifest
from materializers.monitoring import EvidentlyReportMaterializer


@step(output_materializers={"data_drift_report": EvidentlyReportMaterializer,
                            "data_summary_report": EvidentlyReportMaterializer})
def build_evidently_reports(
    window_sample: pd.DataFrame, inference_window: WindowManifest, train_set: pd.DataFrame,
    dataset_schema: DatasetSchema, report: dict[str, Any] | None = None,
) -> tuple[Annotated[EvidentlyReport, "data_drift_report"], Annotated[EvidentlyReport, "data_summary_report"]]:
    """Evidently's data-drift and data-summary reports of the window's sample against the training rows."""
    drift, summary = build_reports(window_sample, train_set, dataset_schema,
                                   ReportSettings.model_validate(report or {}), window_rows=inference_window.rows)
    # ZenML counts outputs from a literal tuple in the return statement, not from the hint alone.
    return drift, summary
