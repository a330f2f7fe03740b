"""bench/report.py: the one-line figure format and the `make bench` summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.report import at_least, at_most, format_line, load, main, report, summary_table


def test_report_prints_one_line_and_appends_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures = tmp_path / "out" / "figures.jsonl"
    report("training ratio", 1.234, "<= 1.3", True, "x", figures, pipeline_s=[10.0])
    report("serving c=8", 2500.0, ">= 3,000 req/s", False, "req/s", figures)
    assert capsys.readouterr().out.splitlines() == [
        "training ratio: 1.23 x (target: <= 1.3) PASS",
        "serving c=8: 2,500 req/s (target: >= 3,000 req/s) MISS",
    ]
    records = [json.loads(line) for line in figures.read_text().splitlines()]
    assert records[0] == {"name": "training ratio", "value": 1.234, "unit": "x", "target": "<= 1.3",
                          "passed": True, "pipeline_s": [10.0]}
    assert records[1]["passed"] is False


def test_at_most_and_at_least_decide_against_the_limit(tmp_path: Path) -> None:
    figures = tmp_path / "figures.jsonl"
    assert at_most("ratio", 1.3, 1.3, figures=figures)["passed"]
    assert not at_most("ratio", 1.31, 1.3, figures=figures)["passed"]
    assert at_least("rows/s", 500_000, 500_000, "rows/s", figures=figures)["target"] == ">= 500,000 rows/s"
    assert not at_least("rows/s", 499_999, 500_000, figures=figures)["passed"]
    assert len(load(figures)) == 4


def test_bad_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="figure name"):
        report("a: b", 1.0, "<= 1", True, figures=tmp_path / "f.jsonl")


def test_summary_exits_non_zero_on_a_miss_or_no_figures(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    figures = tmp_path / "figures.jsonl"
    assert main(["--summary", "--figures", str(figures)]) == 1
    at_most("training ratio", 1.2, 1.3, "x", figures)
    assert main(["--summary", "--figures", str(figures)]) == 0
    at_least("serving c=8", 10.0, 3000, "req/s", figures)
    assert main(["--summary", "--figures", str(figures)]) == 1
    table = capsys.readouterr().out
    assert "serving c=8" in table and "1 PASS, 1 MISS" in table
    assert main(["--reset", "--figures", str(figures)]) == 0
    assert not figures.exists()


def test_format_line_matches_the_table() -> None:
    assert format_line("x", 0.5, "<= 1", True) == "x: 0.5 (target: <= 1) PASS"
    assert summary_table([{"name": "x", "value": 0.5, "unit": "", "target": "<= 1", "passed": True}]).endswith(
        "1 PASS, 0 MISS")
