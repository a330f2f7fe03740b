"""Materializers for churnops' own artifact types: readable JSON, HTML, key metadata."""

from materializers.reports import (
    DatasetSchemaMaterializer,
    EvaluationReportMaterializer,
    PromotionDecisionMaterializer,
    ReferenceProfileMaterializer,
    SearchSummaryMaterializer,
    ValidationReportMaterializer,
)

__all__ = [
    "DatasetSchemaMaterializer",
    "EvaluationReportMaterializer",
    "PromotionDecisionMaterializer",
    "ReferenceProfileMaterializer",
    "SearchSummaryMaterializer",
    "ValidationReportMaterializer",
]
