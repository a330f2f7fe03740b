from typing import Annotated, Any

import pandas as pd
from zenml import log_metadata, step

from churnops.data.schema import DatasetSchema, FileSource, load_schema
from churnops.data.sources import content_hash, load_raw
from churnops.data.synthetic import DefectSpec, DriftSpec, SyntheticSpec
from materializers import DatasetSchemaMaterializer


# Never cached: a file source can change on disk while the step's parameters stay the same.
@step(enable_cache=False, output_materializers={"dataset_schema": DatasetSchemaMaterializer})
def load_dataset(
    dataset: str = "synthetic",
    data_path: str | None = None,
    rows: int = 10_000,
    seed: int = 42,
    defects: dict[str, Any] | None = None,
    drift: dict[str, Any] | None = None,
) -> tuple[Annotated[pd.DataFrame, "raw_dataset"], Annotated[DatasetSchema, "dataset_schema"]]:
    """Load the raw churn table described by a dataset schema (name or YAML path).

    ``data_path`` points the schema at a CSV/Parquet file; ``rows``, ``seed``, ``defects``
    and ``drift`` parameterise the synthetic generator.
    """
    schema = load_schema(dataset)
    if data_path:
        schema = schema.with_source(FileSource(path=data_path))
    synthetic = SyntheticSpec(rows=rows, seed=seed, defects=DefectSpec(**(defects or {})),
                              drift=DriftSpec(**(drift or {})))
    frame, description = load_raw(schema, synthetic)
    identity = {"dataset": schema.name, "data_source": description, "rows": len(frame),
                "columns": len(frame.columns), "data_hash": content_hash(frame)}
    log_metadata(metadata=identity, artifact_name="raw_dataset", infer_artifact=True)
    log_metadata(metadata=identity, infer_model=True)
    return frame, schema
