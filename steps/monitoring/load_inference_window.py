from pathlib import Path
from typing import Annotated, Any

import pandas as pd
from zenml import step

from churnops.data.schema import DatasetSchema
from churnops.monitoring.evidently_reports import ReportSettings
from churnops.monitoring.inference_log import LogReadSummary, SchemaCheck, WindowSpec
from churnops.monitoring.window import WindowManifest, scan_window
from materializers.monitoring import (
    LogReadSummaryMaterializer,
    SchemaCheckMaterializer,
    WindowManifestMaterializer,
    ZstdDataFrameMaterializer,
)


# Never cached: the log grows while the parameters stay the same.
@step(enable_cache=False, output_materializers={"inference_window": WindowManifestMaterializer,
                                                "window_sample": ZstdDataFrameMaterializer,
                                                "log_read_summary": LogReadSummaryMaterializer,
                                                "schema_check": SchemaCheckMaterializer})
def load_inference_window(
    dataset_schema: DatasetSchema, log_dir: str, window_hours: float | None = None, last: int | None = None,
    report: dict[str, Any] | None = None,
) -> tuple[
    Annotated[WindowManifest, "inference_window"],
    Annotated[pd.DataFrame, "window_sample"],
    Annotated[LogReadSummary, "log_read_summary"],
    Annotated[SchemaCheck, "schema_check"],
]:
    """Scan the window of logged predictions once: the manifest of its files (paths, row counts,
    SHA-256, which rows), the schema check of every row, and a uniform sample of at most
    ``report.max_rows`` rows for the Evidently reports. The rows themselves stay in the log."""
    settings = ReportSettings.model_validate(report or {})
    manifest, summary, check, sample = scan_window(Path(log_dir), WindowSpec(hours=window_hours, last=last),
                                                   dataset_schema, sample_rows=settings.max_rows, seed=settings.seed)
    return manifest, sample, summary, check
