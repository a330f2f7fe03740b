"""Evidently 0.7 reports: data drift (DataDriftPreset) and data summary (DataSummaryPreset).

Column types come from the dataset schema through an explicit ``DataDefinition`` (Evidently's
guess changes with the row count), and the drift methods are fixed (normed Wasserstein for
numerics, Jensen-Shannon for categoricals) so a verdict means the same at 500 and at 1M rows.
Results are read by metric type and column from the snapshot, never by position. Above
``max_rows`` both datasets are sampled for the report, and the report says so; the project's
drift decision is made elsewhere (churnops.monitoring.drift) on every row.
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from churnops.data.schema import DatasetSchema
from churnops.reporting import html

DRIFT_METRIC = "evidently:metric_v2:DriftedColumnsCount"
VALUE_DRIFT_METRIC = "evidently:metric_v2:ValueDrift"


class ReportSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    max_rows: int = Field(100_000, ge=1_000, description="sample both datasets above this many rows")
    seed: int = 0
    num_method: str = "wasserstein"
    cat_method: str = "jensenshannon"
    # Evidently's dataset-level rule: drift when this share of columns drifted.
    drift_share: float = Field(0.5, gt=0, le=1)


class ColumnDrift(BaseModel):
    column: str
    method: str
    threshold: float
    score: float
    drifted: bool


class EvidentlyReport(BaseModel):
    """One Evidently report: its self-contained HTML, its JSON snapshot and the figures read from it."""

    kind: Literal["data_drift", "data_summary"]
    title: str
    html: str
    snapshot: dict[str, Any] = Field(default_factory=dict)
    window_rows: int
    current_rows: int
    reference_rows: int
    sampled: bool = False
    note: str = ""
    drift_share: float | None = None
    drifted_columns: list[str] = Field(default_factory=list)
    columns: list[ColumnDrift] = Field(default_factory=list)


def data_definition(schema: DatasetSchema, columns: list[str]) -> Any:
    from evidently import DataDefinition

    return DataDefinition(
        numerical_columns=[c for c in schema.numeric_names if c in columns],
        categorical_columns=[c for c in schema.categorical_names if c in columns],
    )


def _sample(frame: pd.DataFrame, max_rows: int, seed: int) -> pd.DataFrame:
    return frame.sample(n=max_rows, random_state=seed) if len(frame) > max_rows else frame


def _prepare(frame: pd.DataFrame, schema: DatasetSchema, columns: list[str]) -> pd.DataFrame:
    """Numerics as float, categoricals as plain text (Evidently handles object columns best)."""
    out = pd.DataFrame(index=frame.index)
    for column in columns:
        if column in schema.numeric_names:
            out[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
        else:
            values = frame[column].astype(object)
            out[column] = values.where(values.notna(), None).map(lambda v: v if v is None else str(v))
    return out


def _with_banner(report_html: str, note: str) -> str:
    """Put ``note`` at the top of Evidently's page, where nobody can miss it."""
    if not note:
        return report_html
    banner = ("<div style='font-family:system-ui,sans-serif;background:#fef3c7;border:1px solid #f59e0b;"
              f"padding:8px 12px;margin:8px;border-radius:6px'>{html.fmt(note)}</div>")
    match = re.search(r"<body[^>]*>", report_html)
    if not match:
        return banner + report_html
    return report_html[:match.end()] + banner + report_html[match.end():]


def read_drift(snapshot: dict[str, Any]) -> tuple[float | None, list[ColumnDrift]]:
    """Dataset drift share and per-column verdicts, found by metric type and column name."""
    share = None
    scores: dict[str, tuple[str, float, float]] = {}
    for metric in snapshot.get("metrics", []):
        config = metric.get("config", {})
        if config.get("type") == DRIFT_METRIC:
            share = float(metric["value"]["share"])
        elif config.get("type") == VALUE_DRIFT_METRIC:
            scores[config["column"]] = (str(config.get("method")), float(config.get("threshold") or 0.0),
                                        float(metric["value"]))
    verdicts: dict[str, bool] = {}
    for test in snapshot.get("tests", []):
        params = test.get("metric_config", {}).get("params", {})
        if params.get("type") == VALUE_DRIFT_METRIC:
            verdicts[params["column"]] = str(test.get("status")).upper().endswith("FAIL")
    columns = [ColumnDrift(column=c, method=m, threshold=t, score=s,
                           # Both configured methods are distances: at or above the threshold is drift.
                           drifted=verdicts.get(c, s >= t))
               for c, (m, t, s) in scores.items()]
    return share, columns


def _placeholder(kind: Literal["data_drift", "data_summary"], title: str, reason: str, window_rows: int,
                 reference_rows: int) -> EvidentlyReport:
    page = html.page(title, f"<p>{html.fmt(reason)}</p>")
    return EvidentlyReport(kind=kind, title=title, html=page, window_rows=window_rows, current_rows=0,
                           reference_rows=reference_rows, note=reason)


def build_reports(current: pd.DataFrame, reference: pd.DataFrame, schema: DatasetSchema,
                  settings: ReportSettings, window_rows: int | None = None) -> tuple[EvidentlyReport, EvidentlyReport]:
    """The data-drift and data-summary reports of ``current`` against ``reference``.

    ``window_rows``: the rows of the window when ``current`` is already a sample of it (the
    monitoring pipeline's scan draws at most ``max_rows``); the report states both sizes.
    """
    drift_title, summary_title = "Data drift (Evidently)", "Data summary (Evidently)"
    window_rows = len(current) if window_rows is None else window_rows
    columns = [c for c in schema.feature_names if c in current.columns and c in reference.columns
               and current[c].notna().any()]
    if current.empty or not columns:
        reason = ("The monitoring window holds no predictions." if current.empty
                  else "No feature column of the model is present in the inference log.")
        return (_placeholder("data_drift", drift_title, reason, window_rows, len(reference)),
                _placeholder("data_summary", summary_title, reason, window_rows, len(reference)))

    from evidently import Dataset, Report
    from evidently.presets import DataDriftPreset, DataSummaryPreset

    sampled_current = _sample(current, settings.max_rows, settings.seed)
    sampled_reference = _sample(reference, settings.max_rows, settings.seed)
    sampled = len(sampled_current) < window_rows or len(sampled_reference) < len(reference)
    note = ""
    if sampled:
        note = (f"Sampled for this report (uniformly, without replacement): {len(sampled_current):,} of "
                f"{window_rows:,} window rows and "
                f"{len(sampled_reference):,} of {len(reference):,} reference rows (seed {settings.seed}). "
                "The monitoring decision (churnops drift monitor) used every row of the window.")
    definition = data_definition(schema, columns)
    current_data = Dataset.from_pandas(_prepare(sampled_current, schema, columns), data_definition=definition)
    reference_data = Dataset.from_pandas(_prepare(sampled_reference, schema, columns), data_definition=definition)

    drift_snapshot = Report(
        [DataDriftPreset(num_method=settings.num_method, cat_method=settings.cat_method,
                         drift_share=settings.drift_share)],
        include_tests=True,
    ).run(current_data=current_data, reference_data=reference_data)
    summary_snapshot = Report([DataSummaryPreset()]).run(current_data=current_data, reference_data=reference_data)

    # Through JSON: the snapshot's dict holds numpy scalars and enums.
    drift_json = json.loads(drift_snapshot.json())
    share, column_drift = read_drift(drift_json)
    common = {"window_rows": window_rows, "current_rows": len(sampled_current),
              "reference_rows": len(sampled_reference), "sampled": sampled, "note": note}
    drift_report = EvidentlyReport(
        kind="data_drift", title=drift_title, html=_with_banner(drift_snapshot.get_html_str(as_iframe=False), note),
        snapshot=drift_json, drift_share=share, drifted_columns=[c.column for c in column_drift if c.drifted],
        columns=column_drift, **common,
    )
    summary_report = EvidentlyReport(
        kind="data_summary", title=summary_title,
        html=_with_banner(summary_snapshot.get_html_str(as_iframe=False), note),
        snapshot=json.loads(summary_snapshot.json()), **common,
    )
    return drift_report, summary_report
