from typing import Any

from zenml import get_pipeline_context, pipeline
from zenml.enums import ExecutionMode

from steps.inference import check_batch_drift, load_batch, score_batch, validate_batch


# Fail fast: after bad input or a severe drift nothing is scored or written.
@pipeline(name="churn_batch_inference", execution_mode=ExecutionMode.FAIL_FAST, enable_cache=False)
def batch_inference_pipeline(
    staging_dir: str,
    output_root: str,
    targeting: dict[str, Any],
    f1_threshold: float,
    value_threshold: float | None = None,
    input_path: str | None = None,
    schema_path: str | None = None,
    output_dir: str | None = None,
    rows: int = 10_000,
    seed: int = 7,
    on_invalid: str = "fail",
    chunk_rows: int = 250_000,
    drift: dict[str, Any] | None = None,
    reasons: bool = True,
    top_k: int = 3,
    part_rows: int = 1_000_000,
    csv: bool = True,
) -> None:
    """Load → validate → drift check → score, rank, decide, explain and write the retention list.

    The model version (production, or --version N, through the Model Control Plane) and every
    parameter come from configs/batch_inference.yaml as resolved by run.py.
    """
    model = get_pipeline_context().model
    batch_input, batch_schema = load_batch(model.get_artifact("dataset_schema"), staging_dir, input_path, schema_path,
                                           rows, seed)
    clean_batch, batch_validation = validate_batch(batch_input, batch_schema, staging_dir, on_invalid, chunk_rows)
    batch_drift = check_batch_drift(clean_batch, model.get_artifact("reference_profile"), batch_schema, drift)
    score_batch(clean_batch, model.get_model_artifact("churn_classifier"), batch_schema, batch_validation, batch_drift,
                targeting, f1_threshold, value_threshold, staging_dir, output_root, output_dir, reasons, top_k,
                part_rows, csv)
