from typing import Annotated, Any

from zenml import log_metadata, step

from churnops.batch.drift import BatchDrift, DriftPolicy, batch_drift
from churnops.batch.errors import SevereDriftError
from churnops.batch.validation import CleanBatch
from churnops.data.profile import ReferenceProfile
from churnops.data.schema import DatasetSchema


@step(enable_cache=False)
def check_batch_drift(
    clean_batch: CleanBatch, reference_profile: ReferenceProfile, batch_schema: DatasetSchema,
    drift: dict[str, Any] | None = None,
) -> Annotated[BatchDrift, "batch_drift"]:
    """Every feature of the batch against the production version's training profile, in one
    streaming pass; a severe drift fails the run under ``severe_drift: fail``, else it is reported."""
    result = batch_drift(clean_batch, reference_profile, batch_schema, DriftPolicy.model_validate(drift or {}))
    log_metadata(metadata={"drift_verdict": result.verdict, "drift_share": result.result.drift_share,
                           "drifted_features": result.result.drifted_features})
    if result.verdict == "severe" and result.policy.severe_drift == "fail":
        raise SevereDriftError(f"severe drift ({result.describe()}) and severe_drift: fail in the config: "
                               "nothing was scored. Check the input, or retrain on recent data.")
    return result
