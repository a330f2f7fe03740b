"""One materializer per report type, on top of ZenML's pydantic (JSON) materializer.

Each stores the object as ``data_v2.json`` (readable, diffable, no pickle), writes an HTML
visualization the dashboard shows, and extracts the key figures as artifact metadata.
"""

from __future__ import annotations

from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.metadata.metadata_types import MetadataType

from churnops.data.profile import ReferenceProfile
from churnops.data.schema import DatasetSchema
from churnops.data.validation import ValidationReport
from churnops.modeling.evaluation import EvaluationReport, Metrics
from churnops.modeling.promotion import PromotionDecision
from churnops.modeling.training import SearchSummary
from churnops.reporting import html
from churnops.reporting.evidence import comparisons_section, groups_section, intervals_section, notes_section
from churnops.reporting.targeting import targeting_section
from materializers.base import JsonReportMaterializer


def _metrics_rows(named: dict[str, Metrics]) -> list[list[Any]]:
    fields = ["accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier", "threshold"]
    return [[name, *(getattr(m, f) for f in fields)] for name, m in named.items()]


_METRIC_HEADERS = ["model", "accuracy", "precision", "recall", "F1", "ROC-AUC", "PR-AUC", "Brier", "threshold"]


class ValidationReportMaterializer(JsonReportMaterializer):
    SKIP_REGISTRATION: ClassVar[bool] = False
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ValidationReport,)

    def render(self, data: ValidationReport) -> str:
        return html.page(
            f"Data validation: {data.dataset}",
            html.cards({"status": "passed" if data.passed else "failed", "rows in": data.rows_in,
                        "rows out": data.rows_out, "repairs": data.total_repairs,
                        "violations": len(data.violations)}),
            html.heading("Violations"),
            html.table(["column", "rule", "observed", "expected"],
                       [[v.column, v.rule, v.observed, v.expected] for v in data.violations])
            if data.violations else "<p class='ok'>Every quality gate passed.</p>",
            html.heading("Repairs made while cleaning"),
            html.table(["column", "action", "rows"], [[a.column, a.action, a.count] for a in data.actions])
            if data.actions else "<p>No repairs were needed.</p>",
            html.heading("Columns after cleaning"),
            html.table(["column", "missing rate", "distinct values"],
                       [[c.column, c.missing_rate, c.distinct] for c in data.columns]),
        )

    def key_figures(self, data: ValidationReport) -> dict[str, MetadataType]:
        return {"validation_passed": data.passed, "rows_in": data.rows_in, "rows_out": data.rows_out,
                "repairs": data.total_repairs, "violations": len(data.violations)}


class ReferenceProfileMaterializer(JsonReportMaterializer):
    SKIP_REGISTRATION: ClassVar[bool] = False
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (ReferenceProfile,)

    def render(self, data: ReferenceProfile) -> str:
        numeric = [[p.name, p.count, p.missing_rate, p.mean, p.std, p.min, p.quantiles.get("p50", 0.0), p.max]
                   for p in data.numeric.values()]
        categorical = [[p.name, p.missing_rate,
                        ", ".join(f"{k}: {v:.1%}" for k, v in list(p.frequencies.items())[:8])]
                       for p in data.categorical.values()]
        return html.page(
            f"Reference profile: {data.dataset}",
            html.cards({"rows": data.rows, "churn rate": data.target_rate, "numeric features": len(data.numeric),
                        "categorical features": len(data.categorical)}),
            html.heading("Numeric features"),
            html.table(["feature", "count", "missing", "mean", "std", "min", "median", "max"], numeric),
            html.heading("Categorical features"),
            html.table(["feature", "missing", "frequencies"], categorical),
        )

    def key_figures(self, data: ReferenceProfile) -> dict[str, MetadataType]:
        return {"rows": data.rows, "target_rate": data.target_rate,
                "features": len(data.numeric) + len(data.categorical)}


class EvaluationReportMaterializer(JsonReportMaterializer):
    SKIP_REGISTRATION: ClassVar[bool] = False
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (EvaluationReport,)

    def render(self, data: EvaluationReport) -> str:
        m = data.metrics
        (tn, fp), (fn, tp) = m.confusion_matrix
        return html.page(
            f"Evaluation: {data.model_name}",
            html.cards({"F1": m.f1, "ROC-AUC": m.roc_auc, "PR-AUC": m.pr_auc, "threshold": m.threshold,
                        "test rows": data.test_rows, "churn rate": data.positive_rate}),
            html.heading("Held-out test set, at the stored threshold (baselines at 0.5)"),
            html.table(_METRIC_HEADERS, _metrics_rows({data.model_name: m, **{
                f"baseline: {k}": v for k, v in data.baselines.items()}})),
            html.heading("Confusion matrix"),
            html.table(["", "predicted stay", "predicted churn"], [["actual stay", tn, fp], ["actual churn", fn, tp]]),
            html.line_chart(f"ROC curve (AUC {m.roc_auc:.3f})", "false positive rate", "true positive rate",
                            {data.model_name: (data.roc_curve.x, data.roc_curve.y)}, diagonal=True),
            html.line_chart(f"Precision-recall curve (AP {m.pr_auc:.3f})", "recall", "precision",
                            {data.model_name: (data.pr_curve.x, data.pr_curve.y)}),
            intervals_section(data.intervals),
            groups_section(data.groups),
            targeting_section(data.targeting) if data.targeting is not None else "",
        )

    def key_figures(self, data: EvaluationReport) -> dict[str, MetadataType]:
        m = data.metrics
        figures: dict[str, MetadataType] = {"f1": m.f1, "roc_auc": m.roc_auc, "pr_auc": m.pr_auc,
                                            "accuracy": m.accuracy, "threshold": m.threshold,
                                            "baseline_f1": data.best_baseline_f1}
        if data.targeting is not None:
            figures |= {"value_threshold": data.targeting.value_threshold,
                        "net_gain_model": data.targeting.model.net_gain,
                        "net_gain_random": data.targeting.random.net_gain}
        return figures


class SearchSummaryMaterializer(JsonReportMaterializer):
    SKIP_REGISTRATION: ClassVar[bool] = False
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (SearchSummary,)

    def render(self, data: SearchSummary) -> str:
        value = ({"value threshold": data.value_threshold, "CV net gain at it": data.value_threshold_cv_net_gain}
                 if data.value_threshold is not None else {})
        return html.page(
            "Model search",
            html.cards({"chosen": data.chosen, f"CV {data.selection_metric}": data.chosen_result.cv_score,
                        "threshold": data.threshold, "CV F1 at threshold": data.threshold_cv_f1, **value}),
            html.table(["candidate", f"CV {data.selection_metric}", "std", "best parameters", "seconds"],
                       [[c.name, c.cv_score, c.cv_score_std, c.best_params, c.fit_seconds] for c in data.candidates]),
        )

    def key_figures(self, data: SearchSummary) -> dict[str, MetadataType]:
        return {"chosen": data.chosen, "cv_score": data.chosen_result.cv_score, "threshold": data.threshold}


class PromotionDecisionMaterializer(JsonReportMaterializer):
    SKIP_REGISTRATION: ClassVar[bool] = False
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (PromotionDecision,)

    def render(self, data: PromotionDecision) -> str:
        metrics = {f"candidate v{data.model_version}": data.candidate}
        if data.champion and data.champion.metrics:
            metrics[f"production v{data.champion.version}"] = data.champion.metrics
        if data.floor and data.floor.metrics and (not data.champion or data.floor.version != data.champion.version):
            metrics[f"floor v{data.floor.version}"] = data.floor.metrics
        return html.page(
            f"Promotion: {data.model_name} v{data.model_version}",
            html.cards({"verdict": data.verdict, "stage": data.stage,
                        "gate": "passed" if data.gate_passed else "failed"}),
            f"<p>{html.fmt(data.reason)}</p>",
            html.heading("Gate"),
            html.table(["rule", "observed", "required", "result"],
                       [[c.rule, c.observed, c.required, html.status(c.passed)] for c in data.checks],
                       raw_columns=[3]),
            html.heading("Candidate, production and floor on this test set"),
            html.table(_METRIC_HEADERS, _metrics_rows(metrics)),
            comparisons_section(data),
            notes_section(data),
        )

    def key_figures(self, data: PromotionDecision) -> dict[str, MetadataType]:
        return {"verdict": data.verdict, "stage": data.stage, "gate_passed": data.gate_passed}


class DatasetSchemaMaterializer(JsonReportMaterializer):
    SKIP_REGISTRATION: ClassVar[bool] = False
    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (DatasetSchema,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.SCHEMA

    def render(self, data: DatasetSchema) -> str:
        rows: list[list[Any]] = [[f.name, f.kind, f"[{f.min}, {f.max}] ({f.out_of_range})", f.max_missing]
                                 for f in data.numeric]
        rows += [[f.name, "category", ", ".join(f.categories), f.max_missing] for f in data.categorical]
        return html.page(
            f"Dataset schema: {data.name}",
            f"<p>{html.fmt(data.description)}</p>",
            html.cards({"source": data.source.kind, "target": data.target.column, "id column": data.id_column or "-",
                        "features": len(data.feature_names)}),
            html.table(["feature", "type", "allowed", "max missing"], rows),
            html.heading("Quality gates"),
            html.table(["gate", "value"], list(data.gates.model_dump().items())),
        )

    def key_figures(self, data: DatasetSchema) -> dict[str, MetadataType]:
        return {"dataset": data.name, "features": len(data.feature_names), "target": data.target.column}
