from pathlib import Path
from typing import Annotated

from zenml import log_metadata, step

from churnops.batch import validation
from churnops.batch.inputs import BatchInput
from churnops.batch.validation import DEFAULT_CHUNK_ROWS, BatchValidation, CleanBatch, OnInvalid
from churnops.data.schema import DatasetSchema


@step(enable_cache=False)
def validate_batch(
    batch_input: BatchInput,
    batch_schema: DatasetSchema,
    staging_dir: str,
    on_invalid: OnInvalid = "fail",
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
) -> tuple[Annotated[CleanBatch, "clean_batch"], Annotated[BatchValidation, "batch_validation"]]:
    """Training's data contract minus the target, chunk by chunk: ``fail`` stops at the first
    violation (the error names the file, rows, column and rule); ``skip`` drops and counts the rows."""
    clean, report = validation.validate_batch(batch_input, batch_schema, on_invalid, Path(staging_dir) / "clean",
                                              chunk_rows)
    log_metadata(metadata={"rows_in": report.rows_in, "rows_valid": report.rows_valid,
                           "rows_skipped": report.rows_skipped, "skipped_by_rule": report.skipped_by_rule()})
    return clean, report
