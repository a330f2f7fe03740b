import time
from pathlib import Path
from typing import Annotated, Any

from sklearn.pipeline import Pipeline
from zenml import ArtifactConfig, get_step_context, log_metadata, step
from zenml.enums import ArtifactType

from churnops.batch.drift import BatchDrift
from churnops.batch.output import DEFAULT_PART_ROWS, RetentionList, publish
from churnops.batch.scoring import Model, id_column_name
from churnops.batch.scoring import score_batch as score_parts
from churnops.batch.summary import BatchSummary
from churnops.batch.validation import BatchValidation, CleanBatch
from churnops.data.schema import DatasetSchema
from churnops.modeling.targeting import TargetingConfig
from materializers.batch import BatchSummaryMaterializer, RetentionListMaterializer


@step(enable_cache=False, output_materializers={"retention_list": RetentionListMaterializer,
                                                "batch_summary": BatchSummaryMaterializer})
def score_batch(
    clean_batch: CleanBatch,
    churn_classifier: Pipeline,
    batch_schema: DatasetSchema,
    batch_validation: BatchValidation,
    batch_drift: BatchDrift,
    targeting: dict[str, Any],
    f1_threshold: float,
    value_threshold: float | None,
    staging_dir: str,
    output_root: str,
    output_dir: str | None = None,
    reasons: bool = True,
    top_k: int = 3,
    part_rows: int = DEFAULT_PART_ROWS,
    csv: bool = True,
) -> tuple[
    Annotated[RetentionList, ArtifactConfig(name="retention_list", artifact_type=ArtifactType.DATA)],
    Annotated[BatchSummary, "batch_summary"],
]:
    """Score (serving's compiled scorer), explain (top-k reasons), rank by expected net gain, cut
    by the targeting decision, and write the list (sorted Parquet parts + CSV) to ``output_dir``,
    default ``output_root/<run name>``. The list becomes the ``retention_list`` artifact of the
    model version; the summary (``batch_summary``) is the dashboard's HTML page."""
    context = get_step_context()
    run_name = context.pipeline_run.name
    config = TargetingConfig.model_validate(targeting)
    output = Path(output_dir) if output_dir else Path(output_root) / run_name
    started = time.perf_counter()
    model = Model.build(churn_classifier, batch_schema, reasons)
    scored = score_parts(clean_batch, model, config, top_k if reasons else 0, Path(staging_dir) / "scored")
    scored_at = time.perf_counter()
    threshold = value_threshold if value_threshold is not None else float("nan")
    retention, figures = publish(scored, config, f1_threshold, threshold, id_column_name(batch_schema), output,
                                 csv, part_rows)
    version = context.model.version if context.model is not None else ""
    retention = retention.model_copy(update={"model_name": context.model.name if context.model else "",
                                             "model_version": str(context.model.number if context.model else version)})
    summary = BatchSummary(
        model_name=retention.model_name, model_version=retention.model_version, source=clean_batch.source,
        decision=config.decision, f1_threshold=f1_threshold, value_threshold=value_threshold, targeting=config,
        validation=batch_validation, drift=batch_drift, figures=figures, retention_list=retention,
        scorer=scored.scorer_path, reasons_method=scored.reasons_method,
        seconds={"score": round(scored_at - started, 3), "rank_and_write": round(time.perf_counter() - scored_at, 3)},
    )
    log_metadata(metadata={k: v for k, v in summary.key_figures().items() if v is not None})
    return retention, summary
