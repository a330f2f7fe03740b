"""Tiny, dependency-free HTML for dashboard visualizations: tables, cards and SVG curves."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape
from typing import Any

_STYLE = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:16px;color:#1f2937}
h1{font-size:20px;margin:0 0 8px}h2{font-size:16px;margin:20px 0 8px}
table{border-collapse:collapse;margin:4px 0 12px;font-size:13px}
th,td{border:1px solid #e5e7eb;padding:4px 8px;text-align:left}th{background:#f3f4f6}
.ok{color:#047857;font-weight:600}.bad{color:#b91c1c;font-weight:600}
.cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #e5e7eb;border-radius:6px;padding:8px 12px}
.card b{display:block;font-size:18px}.muted{color:#6b7280;font-size:12px}
"""


def fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def page(title: str, *sections: str) -> str:
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_STYLE}</style></head><body><h1>{escape(title)}</h1>{''.join(sections)}</body></html>")


def heading(text: str) -> str:
    return f"<h2>{escape(text)}</h2>"


def status(passed: bool, yes: str = "passed", no: str = "failed") -> str:
    return f"<span class='{'ok' if passed else 'bad'}'>{escape(yes if passed else no)}</span>"


def cards(items: dict[str, Any]) -> str:
    body = "".join(f"<div class='card'><span class='muted'>{escape(k)}</span><b>{escape(fmt(v))}</b></div>"
                   for k, v in items.items())
    return f"<div class='cards'>{body}</div>"


def table(headers: Sequence[str], rows: Iterable[Sequence[Any]], raw_columns: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{cell if i in raw_columns else escape(fmt(cell))}</td>" for i, cell in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def line_chart(title: str, x_label: str, y_label: str, series: dict[str, tuple[Sequence[float], Sequence[float]]],
               diagonal: bool = False, y_range: tuple[float, float] | None = None) -> str:
    """An SVG line chart, x on [0, 1] and y on [0, 1] (ROC and PR curves) or on ``y_range``
    (labelled, with a line at y = 0 when it lies inside: profit curves)."""
    size, pad = 320, 40
    colours = ["#2563eb", "#dc2626", "#059669", "#d97706"]
    low, high = y_range or (0.0, 1.0)
    span = (high - low) or 1.0

    def point(x: float, y: float) -> str:
        return f"{pad + x * size:.1f},{pad + (1 - (y - low) / span) * size:.1f}"

    lines = []
    if y_range is not None:
        # The y range's ends, written inside the plot's right edge.
        lines.append(f"<text x='{pad + size - 4}' y='{pad + 12}' text-anchor='end' font-size='10' fill='#6b7280'>"
                     f"{high:,.0f}</text><text x='{pad + size - 4}' y='{pad + size - 4}' text-anchor='end' "
                     f"font-size='10' fill='#6b7280'>{low:,.0f}</text>")
        if low < 0 < high:
            zero = pad + (1 - (0 - low) / span) * size
            lines.append(f"<line x1='{pad}' y1='{zero:.1f}' x2='{pad + size}' y2='{zero:.1f}' stroke='#9ca3af' "
                         "stroke-dasharray='4'/>")
    if diagonal:
        lines.append(f"<line x1='{pad}' y1='{pad + size}' x2='{pad + size}' y2='{pad}' stroke='#9ca3af' "
                     "stroke-dasharray='4'/>")
    legend = []
    for i, (name, (xs, ys)) in enumerate(series.items()):
        colour = colours[i % len(colours)]
        lines.append(f"<polyline fill='none' stroke='{colour}' stroke-width='2' "
                     f"points='{' '.join(point(x, y) for x, y in zip(xs, ys, strict=True))}'/>")
        legend.append(f"<text x='{pad + 8}' y='{pad + 16 + 16 * i}' fill='{colour}' font-size='12'>"
                      f"{escape(name)}</text>")
    axes = (f"<rect x='{pad}' y='{pad}' width='{size}' height='{size}' fill='none' stroke='#d1d5db'/>"
            f"<text x='{pad + size / 2}' y='{pad + size + 28}' text-anchor='middle' font-size='12'>"
            f"{escape(x_label)}</text>"
            f"<text x='12' y='{pad + size / 2}' font-size='12' transform='rotate(-90 12 {pad + size / 2})' "
            f"text-anchor='middle'>{escape(y_label)}</text>"
            f"<text x='{pad + size / 2}' y='24' text-anchor='middle' font-size='13'>{escape(title)}</text>")
    return (f"<svg xmlns='http://www.w3.org/2000/svg' width='{size + 2 * pad}' height='{size + 2 * pad}'>"
            f"{axes}{''.join(lines)}{''.join(legend)}</svg>")
