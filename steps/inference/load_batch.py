from pathlib import Path
from typing import Annotated

from zenml import log_metadata, step

from churnops.batch.inputs import BatchInput, open_batch, schema_for_batch, write_synthetic_batch
from churnops.data.schema import DatasetSchema
from materializers import DatasetSchemaMaterializer


# Never cached: the files behind a path can change while the parameters stay the same.
@step(enable_cache=False, output_materializers={"batch_schema": DatasetSchemaMaterializer})
def load_batch(
    dataset_schema: DatasetSchema,
    staging_dir: str,
    input_path: str | None = None,
    schema_path: str | None = None,
    rows: int = 10_000,
    seed: int = 7,
) -> tuple[Annotated[BatchInput, "batch_input"], Annotated[DatasetSchema, "batch_schema"]]:
    """Find and inspect the batch (a CSV/Parquet file or a folder of parts; synthetic customers
    without a target when ``input_path`` is None): every file must hold rows and every column the
    model's data contract needs, with a usable type. Nothing is read into memory yet."""
    schema = schema_for_batch(dataset_schema, Path(schema_path) if schema_path else None)
    path = Path(input_path) if input_path else write_synthetic_batch(Path(staging_dir) / "input", rows, seed, schema)
    batch = open_batch(path, schema)
    if not input_path:
        batch = batch.model_copy(update={"source": f"synthetic(rows={rows}, seed={seed})"})
    log_metadata(metadata={"source": batch.source, "files": len(batch.files), "format": batch.format,
                           "rows": batch.rows if batch.rows is not None else "unknown (CSV)"})
    return batch, schema
