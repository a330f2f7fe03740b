from pathlib import Path
from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.logger import get_logger

from churnops.monitoring import retention
from churnops.monitoring.retention import RetentionSummary
from materializers.monitoring import RetentionSummaryMaterializer

logger = get_logger(__name__)


# Never cached: what is expired depends on the day it runs.
@step(enable_cache=False, output_materializers={"retention_summary": RetentionSummaryMaterializer})
def enforce_retention(
    log_dir: str, feedback_path: str, retention_days: int | None = None,
) -> Annotated[RetentionSummary, "retention_summary"]:
    """Remove inference-log day partitions and feedback records older than ``retention_days``
    (null: keep everything), before the window is read."""
    summary = retention.enforce_retention(Path(log_dir), Path(feedback_path), retention_days)
    logger.info(summary.describe())
    if summary.enabled:
        log_metadata(metadata={"retention_days": summary.retention_days,
                               "retention_partitions_removed": summary.partitions_removed,
                               "retention_log_records_removed": summary.log_records_removed,
                               "retention_feedback_records_removed": summary.feedback_records_removed},
                     run_id_name_or_prefix=get_step_context().pipeline_run.id)
    return summary
