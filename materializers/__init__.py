"""Materializers for churnops' own artifact types: readable JSON, HTML, key metadata."""

from materializers.model_card import ModelCardMaterializer
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
    "ModelCardMaterializer",
    "PromotionDecisionMaterializer",
    "ReferenceProfileMaterializer",
    "SearchSummaryMaterializer",
    "ValidationReportMaterializer",
]
