from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from churnops.data.profile import ReferenceProfile, build_reference_profile
from churnops.data.schema import DatasetSchema
from churnops.data.validation import DataValidationError, ValidationReport, validate_and_clean
from materializers import ReferenceProfileMaterializer, ValidationReportMaterializer


@step(output_materializers={"validation_report": ValidationReportMaterializer,
                            "reference_profile": ReferenceProfileMaterializer})
def validate_dataset(
    raw_dataset: pd.DataFrame, dataset_schema: DatasetSchema
) -> tuple[
    Annotated[pd.DataFrame, "clean_dataset"],
    Annotated[ValidationReport, "validation_report"],
    Annotated[ReferenceProfile, "reference_profile"],
]:
    """Clean fixable defects, enforce the quality gates, profile the result.

    A violated rule fails the run here, so nothing downstream (and no promotion) happens;
    the violations are also recorded on the step run for the dashboard.
    """
    try:
        cleaned, report = validate_and_clean(raw_dataset, dataset_schema)
    except DataValidationError as error:
        log_metadata(metadata={
            "validation_passed": False,
            "violations": [v.describe() for v in error.report.violations],
            "repairs": {f"{a.column}.{a.action}": a.count for a in error.report.actions},
        })
        log_metadata(infer_model=True, metadata={
            "verdict": "invalid_data", "gate_passed": False,
            "reason": f"data validation failed with {len(error.report.violations)} violation(s)",
        })
        raise
    return cleaned, report, build_reference_profile(cleaned, dataset_schema)
