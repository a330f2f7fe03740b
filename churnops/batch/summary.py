"""The summary of one batch run: what was scored, who is on the list, what it is worth, and the
HTML page the ZenML dashboard shows for it."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from churnops.batch.drift import BatchDrift
from churnops.batch.output import HISTOGRAM_BINS, ListFigures, RetentionList
from churnops.batch.validation import BatchValidation
from churnops.modeling.targeting import TargetingConfig
from churnops.reporting import html


class BatchSummary(BaseModel):
    model_name: str
    model_version: str
    source: str
    decision: str
    f1_threshold: float
    value_threshold: float | None
    targeting: TargetingConfig
    validation: BatchValidation
    drift: BatchDrift
    figures: ListFigures
    retention_list: RetentionList
    scorer: str
    reasons_method: str | None = None
    seconds: dict[str, float] = Field(default_factory=dict)

    def key_figures(self) -> dict[str, Any]:
        return {"model_version": self.model_version, "rows_scored": self.figures.rows,
                "rows_skipped": self.validation.rows_skipped, "contacts": self.figures.contacts,
                "expected_net_gain": self.figures.expected_net_gain, "spend": self.figures.spend,
                "decision": self.decision, "drift_verdict": self.drift.verdict,
                "drifted_features": self.drift.result.drifted_features, "list_path": self.retention_list.path}

    def console(self) -> str:
        f = self.figures
        lines = [
            f"Batch inference with {self.model_name} v{self.model_version} ({self.source})",
            f"  scored      {f.rows:,} customers ({self.validation.rows_skipped:,} rows skipped"
            + (f": {self.validation.skipped_by_rule()}" if self.validation.rows_skipped else "") + ")",
            f"  drift       {self.drift.describe()}",
            f"  decision    {self.decision}: contact {f.contacts:,} customers ({f.contacts / max(f.rows, 1):.1%}), "
            f"spend {f.spend:,.2f}, expected net gain {f.expected_net_gain:,.2f}",
        ]
        if f.top_reasons:
            top = ", ".join(f"{label} ({count:,})" for label, count in list(f.top_reasons.items())[:3])
            lines.append(f"  top reasons {top}")
        lines += [f"  scorer      {self.scorer}", f"  reasons     {self.reasons_method or 'off'}"]
        return "\n".join(lines)


def _histogram(counts: list[int]) -> str:
    """An SVG bar chart of the probability histogram (bins of width 1 / HISTOGRAM_BINS)."""
    width, height, pad = 400, 160, 30
    top = max(counts) or 1
    bar = width / len(counts)
    bars = "".join(
        f"<rect x='{pad + i * bar:.1f}' y='{pad + height - height * c / top:.1f}' width='{bar - 2:.1f}' "
        f"height='{height * c / top:.1f}' fill='#2563eb'><title>{i / HISTOGRAM_BINS:.2f}-"
        f"{(i + 1) / HISTOGRAM_BINS:.2f}: {c}</title></rect>" for i, c in enumerate(counts))
    axis = (f"<text x='{pad}' y='{pad + height + 16}' font-size='11'>0</text>"
            f"<text x='{pad + width - 8}' y='{pad + height + 16}' font-size='11'>1</text>"
            f"<text x='{pad + width / 2}' y='{pad + height + 16}' font-size='11' text-anchor='middle'>"
            "churn probability</text>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{width + 2 * pad}' height='{height + 2 * pad}'>"
            f"{bars}{axis}</svg>")


def render(summary: BatchSummary) -> str:
    f, drift, validation = summary.figures, summary.drift, summary.validation
    features = [[d.feature, d.kind, d.drifted, d.headline(), "; ".join(d.reasons)] for d in drift.result.features]
    return html.page(
        f"Retention list: {summary.model_name} v{summary.model_version}",
        html.cards({"customers scored": f.rows, "rows skipped": validation.rows_skipped, "to contact": f.contacts,
                    "spend": round(f.spend, 2), "expected net gain": round(f.expected_net_gain, 2),
                    "decision": summary.decision, "drift": drift.verdict}),
        f"<p class='muted'>Input {summary.source}; list at {summary.retention_list.path}. Scorer: "
        f"{summary.scorer}. Reasons: {summary.reasons_method or 'off'}.</p>",
        html.heading("Score distribution"), _histogram(f.score_histogram),
        html.heading("Decision"),
        html.table(["policy", "F1 threshold", "value threshold", "offer cost", "acceptance rate", "max contacts",
                    "max spend"],
                   [[summary.decision, summary.f1_threshold, summary.value_threshold, summary.targeting.offer_cost,
                     summary.targeting.acceptance_rate, summary.targeting.max_contacts,
                     summary.targeting.max_spend]]),
        html.heading("Top reasons among contacted customers"),
        html.table(["reason", "customers"], list(f.top_reasons.items())) if f.top_reasons
        else "<p>Reasons were not computed (reasons: false).</p>",
        html.heading(f"Drift against the training data: {drift.verdict}"),
        f"<p>{html.status(drift.verdict == 'none', 'no drift', drift.describe())}</p>",
        html.table(["feature", "kind", "drifted", "statistic", "reasons"], features),
        html.heading("Validation"),
        html.table(["column: rule", "rows skipped"], list(validation.skipped_by_rule().items()))
        if validation.rows_skipped else f"<p class='ok'>All {validation.rows_in:,} rows valid.</p>",
        html.table(["repair", "values"], list(validation.repairs.items())) if validation.repairs else "",
    )
