"""One format for every benchmark figure, and the table `make bench` prints at the end.

A benchmark script calls ``report(name, value, target, passed, unit)`` once per figure. That prints

    figure: value unit (target: ...) PASS|MISS

and appends the figure as one JSON line to ``bench/out/figures.jsonl``. ``make bench`` clears that
file, runs every benchmark, then prints the collected table and exits non-zero if any figure missed:

    .venv/bin/python bench/report.py --reset
    .venv/bin/python bench/report.py --summary

``at_most`` and ``at_least`` are ``report`` with the comparison and target text written for you.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

FIGURES = Path(__file__).resolve().parent / "out" / "figures.jsonl"


def _format_value(value: float) -> str:
    """Three significant digits for small figures, thousands separators for large ones."""
    if math.isnan(value):
        return "nan"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.1f}"


def format_line(name: str, value: float, target: str, passed: bool, unit: str = "") -> str:
    """The one-line form of a figure: ``name: value unit (target: ...) PASS|MISS``."""
    shown = _format_value(value) + (f" {unit}" if unit else "")
    return f"{name}: {shown} (target: {target}) {'PASS' if passed else 'MISS'}"


def report(name: str, value: float, target: str, passed: bool, unit: str = "",
           figures: Path = FIGURES, **details: Any) -> dict[str, Any]:
    """Print one figure against its target and append it to ``figures`` (JSON lines).

    ``details`` (JSON-serialisable) are kept in the record, not printed: the raw timings behind a ratio.
    """
    if not name or ":" in name:
        raise ValueError(f"figure name must be non-empty and contain no ':', got {name!r}")
    record = {"name": name, "value": float(value), "unit": unit, "target": target, "passed": bool(passed),
              **details}
    print(format_line(name, float(value), target, bool(passed), unit), flush=True)
    figures.parent.mkdir(parents=True, exist_ok=True)
    with figures.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
    return record


def at_most(name: str, value: float, limit: float, unit: str = "", figures: Path = FIGURES,
            **details: Any) -> dict[str, Any]:
    """``report`` for a figure that must not exceed ``limit`` (a ratio, a latency, a wall time)."""
    target = f"<= {_format_value(limit)}" + (f" {unit}" if unit else "")
    return report(name, value, target, value <= limit, unit, figures, **details)


def at_least(name: str, value: float, limit: float, unit: str = "", figures: Path = FIGURES,
             **details: Any) -> dict[str, Any]:
    """``report`` for a figure that must reach ``limit`` (a throughput)."""
    target = f">= {_format_value(limit)}" + (f" {unit}" if unit else "")
    return report(name, value, target, value >= limit, unit, figures, **details)


def load(figures: Path = FIGURES) -> list[dict[str, Any]]:
    """Every figure reported since the last reset, in order."""
    if not figures.exists():
        return []
    return [json.loads(line) for line in figures.read_text(encoding="utf-8").splitlines() if line.strip()]


def summary_table(records: list[dict[str, Any]]) -> str:
    """The figures as an aligned text table, one row each, with a PASS/MISS count at the end."""
    rows = [(r["name"], _format_value(r["value"]) + (f" {r['unit']}" if r["unit"] else ""), r["target"],
             "PASS" if r["passed"] else "MISS") for r in records]
    header = ("figure", "value", "target", "result")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, *rows]]
    missed = sum(not r["passed"] for r in records)
    lines.append(f"{len(records) - missed} PASS, {missed} MISS")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--reset", action="store_true", help="forget the figures collected so far")
    action.add_argument("--summary", action="store_true", help="print the table; exit 1 if any MISS or none")
    parser.add_argument("--figures", type=Path, default=FIGURES, help="the JSON-lines file (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.reset:
        args.figures.unlink(missing_ok=True)
        return 0
    records = load(args.figures)
    if not records:
        print(f"no figures in {args.figures}: did the benchmarks run?", file=sys.stderr)
        return 1
    print(summary_table(records))
    return 0 if all(r["passed"] for r in records) else 1


if __name__ == "__main__":
    sys.exit(main())
