from pathlib import Path
from typing import Annotated

import pandas as pd
from zenml import step

from churnops.data.schema import DatasetSchema
from churnops.monitoring.inference_log import LogReadSummary, SchemaCheck, WindowSpec, conform_features, read_window
from materializers.monitoring import (
    LogReadSummaryMaterializer,
    SchemaCheckMaterializer,
    ZstdDataFrameMaterializer,
)


# Never cached: the log grows while the parameters stay the same.
@step(enable_cache=False, output_materializers={"inference_window": ZstdDataFrameMaterializer,
                                                "log_read_summary": LogReadSummaryMaterializer,
                                                "schema_check": SchemaCheckMaterializer})
def load_inference_window(
    dataset_schema: DatasetSchema, log_dir: str, window_hours: float | None = None, last: int | None = None,
) -> tuple[
    Annotated[pd.DataFrame, "inference_window"],
    Annotated[LogReadSummary, "log_read_summary"],
    Annotated[SchemaCheck, "schema_check"],
]:
    """Read the window of logged predictions; type its features by the model's schema, column by column."""
    frame, summary = read_window(Path(log_dir), WindowSpec(hours=window_hours, last=last))
    frame, check = conform_features(frame, dataset_schema)
    return frame, summary, check
