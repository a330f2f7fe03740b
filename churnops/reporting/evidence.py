"""HTML sections for the statistical evidence: bootstrap intervals, paired comparisons and group metrics."""

from __future__ import annotations

from html import escape

from churnops.modeling.comparison import Interval
from churnops.modeling.fairness import GroupReport
from churnops.modeling.promotion import Champion, PromotionDecision
from churnops.reporting import html

_METRIC_LABELS = {"accuracy": "accuracy", "precision": "precision", "recall": "recall", "f1": "F1",
                  "roc_auc": "ROC-AUC", "pr_auc": "PR-AUC", "brier": "Brier"}
_GROUP_HEADERS = ["slice", "group", "support", "churners", "recall", "precision", "false-positive rate",
                  "selection rate"]


def _cell(value: object) -> str:
    return f"{value:.4f}" if isinstance(value, float) else "–"


def intervals_section(intervals: dict[str, Interval]) -> str:
    """The candidate's own test metrics with their bootstrap intervals."""
    if not intervals:
        return ""
    first = next(iter(intervals.values()))
    return (html.heading(f"{first.confidence:.0%} bootstrap intervals ({first.resamples} resamples, seed {first.seed})")
            + html.table(["metric", "value", "low", "high"],
                         [[_METRIC_LABELS.get(name, name), _cell(i.estimate), _cell(i.low), _cell(i.high)]
                          for name, i in intervals.items()]))


def groups_section(groups: GroupReport | None) -> str:
    """Per-group metrics of every slice, at the decision threshold."""
    if groups is None:
        return ""
    rows = [[row["slice"], row["group"], row["support"], row["churners"],
             *(_cell(row[m]) for m in ("recall", "precision", "false_positive_rate", "selection_rate"))]
            for row in groups.table_rows()]
    return (html.heading(f"Groups (slices of the dataset schema, threshold {groups.threshold:.4f})")
            + html.table(_GROUP_HEADERS, rows)
            + "<p class='muted'>– : undefined for the group (no churners for recall, no stayers for the "
              "false-positive rate, nobody predicted to churn for precision).</p>")


def comparisons_section(decision: PromotionDecision) -> str:
    """Paired differences (candidate - reference) against production and the floor."""
    references: list[tuple[str, Champion]] = [(role, ref) for role, ref in
                                              (("production", decision.champion), ("floor", decision.floor))
                                              if ref is not None and ref.differences]
    if not references:
        return ""
    rows = [[f"{role} v{ref.version}", _METRIC_LABELS.get(metric, metric), f"{i.estimate:+.4f}",
             f"{i.low:+.4f}", f"{i.high:+.4f}"]
            for role, ref in references for metric, i in ref.differences.items()]
    first = next(iter(references[0][1].differences.values()))
    return (html.heading(f"Candidate minus reference, paired bootstrap ({first.confidence:.0%}, "
                         f"{first.resamples} resamples, seed {first.seed})")
            + html.table(["reference", "metric", "difference", "low", "high"], rows))


def notes_section(decision: PromotionDecision) -> str:
    if not decision.notes:
        return ""
    return html.heading("Notes") + "<ul>" + "".join(f"<li>{escape(n)}</li>" for n in decision.notes) + "</ul>"
