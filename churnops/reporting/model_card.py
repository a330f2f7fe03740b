"""The model card of a model version: what it is, what it was trained on, how good it is, what
its thresholds mean, which gate rules it passed, and what it must not be used for.

Pure: built from the objects the training pipeline already produced (evaluation report, search
summary, promotion decision, dataset schema) and the version's run metadata (data identity,
provenance, reasons method). Rendered as Markdown (``python run.py --model-card``) and HTML
(the dashboard). Its identity figures (threshold, test metrics, dataset, data hash, estimator)
are the ones the packaged ``model_card.json`` in the Bento carries.
"""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from pydantic import BaseModel, Field

from churnops.data.schema import DatasetSchema, FileSource, PackageSource
from churnops.modeling.evaluation import EvaluationReport
from churnops.modeling.promotion import GateCheck, PromotionDecision
from churnops.modeling.targeting import TargetingReport
from churnops.modeling.training import SearchSummary
from churnops.reporting import html
from churnops.reporting.targeting import comparison_rows, formula

# The packaged card's metric keys (churnops.serving.packaging.METRIC_KEYS), in the same order.
CARD_METRICS = ("accuracy", "precision", "recall", "f1", "roc_auc", "pr_auc", "brier")
METRIC_LABELS = {"accuracy": "Accuracy", "precision": "Precision", "recall": "Recall", "f1": "F1",
                 "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "brier": "Brier score (lower is better)"}
INTENDED_USE = (
    "Rank current subscription customers by their risk of churning, so that a retention team can decide "
    "whom to contact with an offer (by the F1 label, the value threshold or a budget). Scores are "
    "probabilities for one customer at a time given the features below, as of the data's snapshot."
)
OUT_OF_SCOPE = (
    "Not for decisions with legal or similarly significant effects on a person (credit, pricing, "
    "employment), nor for customers, markets or products unlike the training data."
)


class FeatureFact(BaseModel):
    name: str
    type: str  # int | float | categorical
    allowed: str


class DataFacts(BaseModel):
    dataset: str
    description: str = ""
    source: str  # as the loader described it
    source_sha256: str | None = None  # the declared file checksum, for a packaged file
    data_hash: str | None = None  # SHA-256 of the loaded table (column names + per-row pandas hashes)
    rows: int | None = None
    train_rows: int
    test_rows: int
    churn_rate_test: float
    id_column: str | None = None
    target: str


class ThresholdFact(BaseModel):
    name: str
    value: float
    meaning: str


class MetricFact(BaseModel):
    name: str
    value: float
    low: float | None = None  # 95 % bootstrap interval, when the evaluation computed one
    high: float | None = None
    baseline: float | None = None


class ModelCard(BaseModel):
    model_name: str
    model_version: str
    verdict: str
    stage: str
    reason: str
    estimator: str
    selection_metric: str
    cv_score: float
    data: DataFacts
    features: list[FeatureFact]
    metrics: list[MetricFact]
    interval_note: str | None = None
    thresholds: list[ThresholdFact]
    gate_checks: list[GateCheck]
    overridden_rules: list[str] = Field(default_factory=list)
    reasons_method: str | None = None
    targeting: TargetingReport | None = None
    groups: list[dict[str, Any]] = Field(default_factory=list)  # per-slice metric rows, when evaluated
    intended_use: str = INTENDED_USE
    out_of_scope: str = OUT_OF_SCOPE
    limitations: list[str] = Field(default_factory=list)
    trained_at: str | None = None
    git_commit: str | None = None
    library_versions: dict[str, str] = Field(default_factory=dict)
    written_at: str = Field(default_factory=lambda: datetime.now(UTC).isoformat(timespec="seconds"))

    @property
    def decision_threshold(self) -> float:
        return next(t.value for t in self.thresholds if t.name == "decision_threshold")

    @property
    def metric_values(self) -> dict[str, float]:
        return {m.name: m.value for m in self.metrics}


def _features(schema: DatasetSchema) -> list[FeatureFact]:
    facts = [FeatureFact(name=f.name, type=f.kind, allowed=f"[{_num(f.min)}, {_num(f.max)}]")
             for f in schema.numeric]
    facts += [FeatureFact(name=f.name, type="categorical", allowed=", ".join(f.categories)) for f in schema.categorical]
    return facts


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:g}"


def _source_sha256(schema: DatasetSchema) -> str | None:
    return schema.source.sha256 if isinstance(schema.source, PackageSource) else None


def _metrics(evaluation: EvaluationReport) -> list[MetricFact]:
    intervals = getattr(evaluation, "intervals", None) or {}
    baselines = {"f1": evaluation.best_baseline_f1}
    facts = []
    for name in CARD_METRICS:
        interval = intervals.get(name)
        facts.append(MetricFact(name=name, value=getattr(evaluation.metrics, name),
                                low=interval.low if interval is not None else None,
                                high=interval.high if interval is not None else None,
                                baseline=baselines.get(name)))
    return facts


def _interval_note(evaluation: EvaluationReport) -> str | None:
    intervals = getattr(evaluation, "intervals", None) or {}
    if not intervals:
        return None
    first = next(iter(intervals.values()))
    return (f"{first.confidence:.0%} percentile bootstrap intervals over the test set "
            f"({first.resamples} resamples, seed {first.seed}).")


def _thresholds(search: SearchSummary, evaluation: EvaluationReport) -> list[ThresholdFact]:
    facts = [ThresholdFact(
        name="decision_threshold", value=search.threshold,
        meaning=f"p(churn) >= this is labelled churn (the service's `label`); maximises F1 on out-of-fold "
                f"training predictions (CV F1 {search.threshold_cv_f1:.4f}). The `f1` targeting policy uses it.")]
    if search.value_threshold is not None:
        targeting = evaluation.targeting
        test_gain = f"; on the test set it nets {targeting.model.net_gain:,.0f}" if targeting is not None else ""
        facts.append(ThresholdFact(
            name="value_threshold", value=search.value_threshold,
            meaning=f"p(churn) >= this is worth a retention offer: maximises realised net gain "
                    f"(y x value x acceptance - cost) on out-of-fold training predictions "
                    f"({search.value_threshold_cv_net_gain:,.0f}){test_gain}. The `value` targeting policy uses it."))
    return facts


def _group_rows(evaluation: EvaluationReport) -> list[dict[str, Any]]:
    """Per-slice metrics as flat rows (column -> value), whatever the group report's layout."""
    groups = getattr(evaluation, "groups", None)
    if groups is None:
        return []
    rows_of = getattr(groups, "table_rows", None)
    if callable(rows_of):
        return [dict(row) for row in rows_of()]
    return _flatten_groups(groups.model_dump(mode="json"))


def _flatten_groups(dumped: Any) -> list[dict[str, Any]]:
    """Find the list of per-group records in a dumped group report and flatten each to scalars."""
    if isinstance(dumped, list) and dumped and all(isinstance(item, dict) for item in dumped):
        rows = []
        for item in dumped:
            row: dict[str, Any] = {}
            for key, value in item.items():
                if isinstance(value, dict):
                    row.update({f"{k}": v for k, v in value.items() if not isinstance(v, dict | list)})
                elif not isinstance(value, list):
                    row[key] = value
            rows.append(row)
        return rows
    if isinstance(dumped, dict):
        for value in dumped.values():
            rows = _flatten_groups(value)
            if rows:
                return rows
    return []


def _limitations(schema: DatasetSchema, evaluation: EvaluationReport, search: SearchSummary) -> list[str]:
    notes = []
    if schema.source.kind == "synthetic":
        notes.append("Trained on seeded synthetic data: its figures say nothing about real customers.")
    elif isinstance(schema.source, FileSource):
        notes.append(f"Trained on one file ({schema.source.path}); it generalises only to customers like those.")
    notes.append(f"Evaluated on one held-out split of {evaluation.test_rows} rows (churn rate "
                 f"{evaluation.positive_rate:.1%}); the churn rate in production may differ, which moves "
                 "precision and both thresholds.")
    notes.append(f"Probabilities are as calibrated as the estimator makes them (Brier {evaluation.metrics.brier:.4f}); "
                 "they are not recalibrated.")
    notes.append("Categories not seen in training are encoded as all-zeros (no error); values outside the "
                 "schema's ranges are blanked or clipped as the schema says, then imputed.")
    if search.targeting is not None:
        notes.append(f"Value figures assume an acceptance rate of {search.targeting.acceptance_rate:g} and an "
                     f"offer cost of {search.targeting.offer_cost:g}: assumptions, not measurements.")
    notes.append("Associations, not causes: a feature that raises the risk is not shown to make customers churn.")
    return notes


def build_model_card(
    evaluation: EvaluationReport, search: SearchSummary, decision: PromotionDecision, schema: DatasetSchema,
    metadata: dict[str, Any],
) -> ModelCard:
    """The card of one model version; ``metadata`` is the version's run metadata."""
    versions = metadata.get("library_versions")
    return ModelCard(
        model_name=decision.model_name, model_version=decision.model_version, verdict=decision.verdict,
        stage=decision.stage, reason=decision.reason, estimator=search.chosen, selection_metric=search.selection_metric,
        cv_score=search.chosen_result.cv_score,
        data=DataFacts(
            dataset=schema.name, description=schema.description,
            source=str(metadata.get("data_source") or schema.source.kind), source_sha256=_source_sha256(schema),
            data_hash=metadata.get("data_hash"), rows=metadata.get("rows"), train_rows=search.train_rows,
            test_rows=evaluation.test_rows, churn_rate_test=evaluation.positive_rate, id_column=schema.id_column,
            target=schema.target.column),
        features=_features(schema), metrics=_metrics(evaluation), interval_note=_interval_note(evaluation),
        thresholds=_thresholds(search, evaluation), gate_checks=decision.checks,
        overridden_rules=decision.overridden_rules, reasons_method=metadata.get("reasons_method"),
        targeting=evaluation.targeting, groups=_group_rows(evaluation),
        limitations=_limitations(schema, evaluation, search),
        trained_at=metadata.get("trained_at"), git_commit=metadata.get("git_commit"),
        library_versions={str(k): str(v) for k, v in versions.items()} if isinstance(versions, dict) else {},
    )


def _metric_text(metric: MetricFact) -> str:
    if metric.low is None or metric.high is None:
        return f"{metric.value:.4f}"
    return f"{metric.value:.4f} ({metric.low:.4f} – {metric.high:.4f})"


def _md_table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        text = f"{value:.4f}" if isinstance(value, float) else ("–" if value is None else str(value))
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _gate_rows(card: ModelCard) -> list[list[Any]]:
    return [[c.rule, c.observed, c.required, "passed" if c.passed else "FAILED"] for c in card.gate_checks]


def _group_table(card: ModelCard) -> tuple[list[str], list[list[Any]]]:
    headers = list(dict.fromkeys(key for row in card.groups for key in row))
    return headers, [[row.get(h) for h in headers] for row in card.groups]


def render_markdown(card: ModelCard) -> str:
    d = card.data
    sections = [
        f"# Model card: `{card.model_name}` version {card.model_version}",
        f"**Verdict:** {card.verdict} (stage at training: {card.stage}). {card.reason}",
        f"**Estimator:** `{card.estimator}` (chosen by CV {card.selection_metric} {card.cv_score:.4f}). "
        f"Trained {card.trained_at or 'unknown'} from commit `{card.git_commit or 'unknown'}`.",
        "## Intended use", card.intended_use, f"Out of scope: {card.out_of_scope}",
        "## Data",
        _md_table(["", ""], [
            ["dataset", f"{d.dataset}: {d.description}" if d.description else d.dataset], ["source", d.source],
            *([["source file SHA-256", d.source_sha256]] if d.source_sha256 else []),
            ["data SHA-256", d.data_hash], ["rows loaded", d.rows], ["training rows", d.train_rows],
            ["test rows", d.test_rows], ["churn rate (test)", f"{d.churn_rate_test:.1%}"],
            ["target", d.target], ["id column", d.id_column]]),
        f"### Features ({len(card.features)})",
        _md_table(["feature", "type", "allowed values"], [[f.name, f.type, f.allowed] for f in card.features]),
        "## Metrics (held-out test set, at the decision threshold)",
        _md_table(["metric", "value" + (" (95 % CI)" if card.interval_note else ""), "best baseline"],
                  [[METRIC_LABELS[m.name], _metric_text(m), m.baseline] for m in card.metrics]),
        *([card.interval_note] if card.interval_note else []),
        "## Thresholds",
        _md_table(["threshold", "value", "meaning"], [[t.name, t.value, t.meaning] for t in card.thresholds]),
        "## Promotion gate",
        _md_table(["rule", "observed", "required", "result"], _gate_rows(card)),
        *([f"Rules overridden with `--force --reason`: {', '.join(card.overridden_rules)}."]
          if card.overridden_rules else []),
        "## Reason codes",
        f"Method: `{card.reasons_method}`." if card.reasons_method else "No reasons method was recorded.",
    ]
    if card.targeting is not None:
        t = card.targeting
        sections += ["## Value-based targeting (test set)",
                     f"{formula(t)}; policy `{t.config.decision}`.",
                     _md_table(["policy", "contacts", "share contacted", "spend", "net gain"], comparison_rows(t))]
    if card.groups:
        sections += ["## Metrics per group", _md_table(*_group_table(card))]
    sections += ["## Known limitations", "\n".join(f"- {note}" for note in card.limitations),
                 "## Provenance",
                 ", ".join(f"{k} {v}" for k, v in card.library_versions.items()) or "library versions unknown",
                 f"Card written {card.written_at}."]
    return "\n\n".join(sections) + "\n"


def _paragraph(text: str, muted: bool = False) -> str:
    opening = "<p class='muted'>" if muted else "<p>"
    return f"{opening}{escape(text)}</p>"


def render_html(card: ModelCard) -> str:
    d = card.data
    parts = [
        html.cards({"verdict": card.verdict, "stage": card.stage, "estimator": card.estimator,
                    "F1": card.metric_values["f1"], "ROC-AUC": card.metric_values["roc_auc"],
                    "threshold": card.decision_threshold}),
        _paragraph(card.reason),
        html.heading("Intended use"), _paragraph(card.intended_use),
        _paragraph(f"Out of scope: {card.out_of_scope}", muted=True),
        html.heading("Data"),
        html.table(["", ""], [["dataset", d.dataset], ["source", d.source],
                              *([["source file SHA-256", d.source_sha256]] if d.source_sha256 else []),
                              ["data SHA-256", d.data_hash or "unknown"], ["rows loaded", d.rows or "unknown"],
                              ["training rows", d.train_rows], ["test rows", d.test_rows],
                              ["churn rate (test)", f"{d.churn_rate_test:.1%}"], ["target", d.target],
                              ["id column", d.id_column or "-"]]),
        html.table(["feature", "type", "allowed values"], [[f.name, f.type, f.allowed] for f in card.features]),
        html.heading("Metrics (held-out test set)"),
        html.table(["metric", "value" + (" (95 % CI)" if card.interval_note else ""), "best baseline"],
                   [[METRIC_LABELS[m.name], _metric_text(m), "-" if m.baseline is None else m.baseline]
                    for m in card.metrics]),
        _paragraph(card.interval_note, muted=True) if card.interval_note else "",
        html.heading("Thresholds"),
        html.table(["threshold", "value", "meaning"], [[t.name, t.value, t.meaning] for t in card.thresholds]),
        html.heading("Promotion gate"),
        html.table(["rule", "observed", "required", "result"],
                   [[c.rule, c.observed, c.required, html.status(c.passed)] for c in card.gate_checks],
                   raw_columns=[3]),
        html.heading("Reason codes"),
        _paragraph(f"Method: {card.reasons_method or 'not recorded'}"),
    ]
    if card.targeting is not None:
        parts += [html.heading("Value-based targeting (test set)"), _paragraph(formula(card.targeting)),
                  html.table(["policy", "contacts", "share contacted", "spend", "net gain"],
                             comparison_rows(card.targeting))]
    if card.groups:
        headers, rows = _group_table(card)
        parts += [html.heading("Metrics per group"), html.table(headers, [["-" if v is None else v for v in r]
                                                                         for r in rows])]
    parts += [html.heading("Known limitations"),
              "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in card.limitations) + "</ul>",
              html.heading("Provenance"),
              _paragraph(f"commit {card.git_commit or 'unknown'}; trained {card.trained_at or 'unknown'}; "
                         + ", ".join(f"{k} {v}" for k, v in card.library_versions.items()), muted=True)]
    return html.page(f"Model card: {card.model_name} v{card.model_version}", *parts)
