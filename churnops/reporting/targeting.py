"""Value-based targeting in reports: the policy comparison table and the profit curve."""

from __future__ import annotations

from typing import Any

from churnops.modeling.targeting import PolicyOutcome, TargetingReport
from churnops.reporting import html

COMPARISON_HEADERS = ["policy", "contacts", "share contacted", "spend", "net gain"]


def decision_label(report: TargetingReport) -> str:
    config = report.config
    if config.decision == "f1":
        return f"model (f1: p >= {report.f1_threshold:.4f})"
    if config.decision == "value":
        return f"model (value: p >= {report.value_threshold:.4f})"
    limits = [f"max {config.max_contacts} contacts" if config.max_contacts is not None else "",
              f"max spend {config.max_spend:g}" if config.max_spend is not None else ""]
    return f"model (budget: {', '.join(x for x in limits if x)})"


def comparison(report: TargetingReport) -> list[tuple[str, PolicyOutcome]]:
    """The model's list next to the simple policies, at the same number of contacts for random."""
    return [(decision_label(report), report.model), ("contact everyone", report.everyone),
            ("contact no one", report.no_one), (f"random {report.model.contacts} customers", report.random)]


def comparison_rows(report: TargetingReport) -> list[list[Any]]:
    return [[name, o.contacts, f"{o.share_contacted:.1%}", f"{o.spend:,.0f}", f"{o.net_gain:,.0f}"]
            for name, o in comparison(report)]


def formula(report: TargetingReport) -> str:
    c = report.config
    return (f"expected net gain = p(churn) x {report.value_column} x {c.value.multiplier:g} x "
            f"{c.acceptance_rate:g} acceptance - {c.offer_cost:g} offer cost")


def targeting_section(report: TargetingReport) -> str:
    """HTML: cards, the comparison table and the profit curve."""
    gains = report.curve_net_gain
    low, high = min(0.0, *gains, report.everyone.net_gain), max(0.0, *gains)
    return "".join([
        html.heading("Value-based targeting (test set)"),
        f"<p>{html.fmt(formula(report))}. Realised net gain counts y x value x acceptance - cost per "
        "contacted customer.</p>",
        html.cards({"value threshold": report.value_threshold, "F1 threshold": report.f1_threshold,
                    "net gain (model)": report.model.net_gain, "vs random": report.lift_over_random,
                    "best share": report.best_share, "best net gain": report.best_net_gain}),
        html.table(COMPARISON_HEADERS, comparison_rows(report)),
        html.line_chart("Profit curve (ranked by expected net gain)", "share contacted", "net gain", {
            "model": (report.curve_share, gains),
            "random": ([0.0, 1.0], [0.0, report.everyone.net_gain]),
        }, y_range=(low, high)),
    ])
