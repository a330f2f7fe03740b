"""Production and a challenger on the same live traffic, and the rule that promotes or rolls back.

During a rollout (``churnops.serving.rollout``) both versions score every request: the answer in
the inference log, the other model's score under ``<log dir>/_shadow/``, same request ids. Since
the rollout started, every request whose outcome came back (feedback log: by request id, else
customer key) is one *pair*: the two versions' probabilities on the same customer at the same time.
On those pairs:

* each version's live F1, ROC-AUC, precision and recall with a 95 % bootstrap interval;
* the **paired** bootstrap of (challenger − production), the rule's evidence
  (``churnops.modeling.comparison``: the same resamples for both, so the interval is of the
  difference and much narrower than the two intervals side by side suggest);
* error rate and scoring latency per version, from the service's rollout counters.

:func:`decide_rollout` turns that into promote / rollback / wait (:class:`RolloutRules`).
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, ConfigDict, Field

from churnops.modeling.comparison import BootstrapConfig, Interval, Scored, metric_intervals, paired_differences
from churnops.monitoring.feedback import OutcomeIndex
from churnops.monitoring.inference_log import list_partitions, read_log_file
from churnops.serving.rollout import shadow_log_dir, stats_dir
from churnops.serving.rollout_stats import read_rollout_stats

PAIR_COLUMNS = ["request_id", "timestamp", "model_version", "customer_key", "probability"]
RolloutAction = Literal["promote", "rollback", "wait", "none"]


class RolloutRules(BaseModel):
    """``parameters.rollout`` of configs/monitoring.yaml: when live evidence decides."""

    model_config = ConfigDict(extra="forbid")

    metric: Literal["f1", "roc_auc"] = "f1"
    min_labelled: int = Field(200, ge=10, description="labelled requests scored by both versions before deciding")
    tolerance: float = Field(0.01, ge=0, le=1, description="promote when the lower bound >= -tolerance")
    # Roll back when the upper bound < -max_loss. The default is the tolerance: a challenger proven worse by
    # more than the tolerance can never meet the promotion rule, and every canary request it answers is worse.
    max_loss: float = Field(0.01, ge=0, le=1, description="roll back when the upper bound < -max_loss")
    max_error_rate: float = Field(0.01, ge=0, le=1)
    max_p99_latency_ms: float = Field(50.0, gt=0)
    max_latency_ratio: float = Field(3.0, ge=1, description="challenger p99 / production p99")
    # The ratio rule only applies above this p99: below it, a timer's noise (one pause) is the whole ratio.
    latency_floor_ms: float = Field(5.0, ge=0)
    comparison: BootstrapConfig = Field(default_factory=lambda: BootstrapConfig(resamples=1000, seed=0))


class Rollout(BaseModel):
    """The running rollout, from the deployment record (``churnops.platform.deployment``)."""

    production_version: str
    challenger_version: str
    rollout_id: str
    mode: str
    started_at: str
    canary_percent: float | None = None


class VersionLive(BaseModel):
    version: str
    role: str
    threshold: float
    metrics: dict[str, float] = Field(default_factory=dict)
    intervals: dict[str, Interval] = Field(default_factory=dict)
    requests: int = 0
    served_rows: int = 0
    errors: int = 0
    error_rate: float = 0.0
    p50_latency_ms: float | None = None
    p99_latency_ms: float | None = None


class LiveComparison(BaseModel):
    rollout: Rollout | None = None
    since: str | None = None
    production_rows: int = 0  # rows each version scored since the rollout started
    challenger_rows: int = 0
    pairs: int = 0  # requests both scored
    labelled_pairs: int = 0  # ... whose outcome came back
    production: VersionLive | None = None
    challenger: VersionLive | None = None
    differences: dict[str, Interval] = Field(default_factory=dict)  # challenger - production, paired
    note: str = ""


class RolloutDecision(BaseModel):
    action: RolloutAction
    reasons: list[str] = Field(default_factory=list)
    production_version: str | None = None
    challenger_version: str | None = None
    rollout_id: str | None = None
    # What the promotion step did with the decision (the gate may still refuse a promotion).
    applied: bool = False
    outcome: str = ""

    def key_figures(self) -> dict[str, object]:
        return {"rollout_action": self.action, "rollout_reasons": self.reasons, "rollout_applied": self.applied,
                "challenger_version": self.challenger_version, "rollout_outcome": self.outcome}


def _scored_rows(folder: Path, since: pd.Timestamp, versions: set[str]) -> pd.DataFrame:
    """Rows of ``versions`` logged in ``folder`` since ``since`` (request id per row, probability)."""
    parts: list[pd.DataFrame] = []
    for day, files in list_partitions(folder):
        if pd.Timestamp(day, tz="UTC") + pd.Timedelta(days=1) <= since:
            continue
        for path in files:
            try:  # only these columns decompressed; a batch row's id comes back as "<request id>-<row>"
                table = read_log_file(path, PAIR_COLUMNS)
            except (OSError, KeyError, pa.ArrowException):
                continue
            keep = pc.and_(pc.greater_equal(table.column("timestamp"),
                                            pa.scalar(since.value, pa.timestamp("ns", tz="UTC"))),
                           pc.is_in(table.column("model_version").cast(pa.string()),
                                    value_set=pa.array(sorted(versions))))
            table = table.filter(keep)
            if table.num_rows:
                frame = table.to_pandas()
                frame["model_version"] = frame["model_version"].astype(str)
                frame["request_id"] = frame["request_id"].astype(str)
                parts.append(frame)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PAIR_COLUMNS)


def paired_outcomes(log_dir: Path, feedback: pd.DataFrame, rollout: Rollout) -> tuple[pd.DataFrame, dict[str, int]]:
    """One row per labelled request scored by both versions since the rollout started:
    ``outcome``, ``production`` and ``challenger`` probabilities; and row counts."""
    since = pd.Timestamp(datetime.fromisoformat(rollout.started_at))
    since = since.tz_localize("UTC") if since.tzinfo is None else since.tz_convert("UTC")
    versions = {rollout.production_version, rollout.challenger_version}
    rows = pd.concat([_scored_rows(log_dir, since, versions), _scored_rows(shadow_log_dir(log_dir), since, versions)],
                     ignore_index=True)
    counts = {"production_rows": int((rows["model_version"] == rollout.production_version).sum()),
              "challenger_rows": int((rows["model_version"] == rollout.challenger_version).sum())}
    if rows.empty:
        return pd.DataFrame(columns=["request_id", "outcome", "production", "challenger"]), {**counts, "pairs": 0}
    rows = rows.drop_duplicates(["request_id", "model_version"], keep="last")
    wide = rows.pivot(index="request_id", columns="model_version", values="probability")
    keys = rows.drop_duplicates("request_id").set_index("request_id")["customer_key"]
    wide = wide.dropna(subset=[v for v in versions if v in wide.columns]) if len(versions & set(wide.columns)) == 2 \
        else wide.iloc[0:0]
    counts["pairs"] = len(wide)
    pairs = pd.DataFrame({"request_id": wide.index.astype(str),
                          "customer_key": keys.reindex(wide.index).to_numpy(),
                          "production": wide[rollout.production_version].to_numpy(dtype=float) if len(wide) else [],
                          "challenger": wide[rollout.challenger_version].to_numpy(dtype=float) if len(wide) else []})
    joined = OutcomeIndex(feedback).join(pairs)
    labelled = joined[joined["outcome"].notna()].reset_index(drop=True)
    return labelled[["request_id", "outcome", "production", "challenger"]], counts


def compare_live(log_dir: Path, feedback: pd.DataFrame, rollout: Rollout, thresholds: dict[str, float],
                 rules: RolloutRules) -> LiveComparison:
    """The live comparison of the rollout's two versions (see the module docstring)."""
    pairs, counts = paired_outcomes(Path(log_dir), feedback, rollout)
    result = LiveComparison(rollout=rollout, since=rollout.started_at, labelled_pairs=len(pairs), **counts)
    stats = read_rollout_stats(stats_dir(Path(log_dir)), rollout.rollout_id)
    sides: dict[str, VersionLive] = {}
    for role, version in (("production", rollout.production_version), ("challenger", rollout.challenger_version)):
        live = VersionLive(version=version, role=role, threshold=thresholds[version])
        counters = stats.versions.get(version) if stats is not None else None
        if counters is not None:
            live.requests, live.served_rows, live.errors = counters.requests, counters.served_rows, counters.errors
            live.error_rate = counters.error_rate
            live.p50_latency_ms = counters.latency_quantile_ms(0.5)
            live.p99_latency_ms = counters.latency_quantile_ms(0.99)
        sides[role] = live
    result.production, result.challenger = sides["production"], sides["challenger"]
    outcome = pairs["outcome"].to_numpy(dtype=np.int8)
    if len(pairs) < 2 or len(np.unique(outcome)) < 2:
        result.note = f"{len(pairs)} labelled requests scored by both versions: too few (or one class) to compare"
        return result
    for role in ("production", "challenger"):
        live = sides[role]
        intervals = metric_intervals(outcome, pairs[role].to_numpy(), live.threshold, rules.comparison)
        live.intervals = {m: intervals[m] for m in ("f1", "roc_auc", "precision", "recall")}
        live.metrics = {m: float(i.estimate) for m, i in live.intervals.items() if i.estimate is not None}
    differences = paired_differences(
        outcome, Scored(pairs["challenger"].to_numpy(), sides["challenger"].threshold),
        {"production": Scored(pairs["production"].to_numpy(), sides["production"].threshold)}, rules.comparison)
    result.differences = differences["production"]
    return result


def decide_rollout(comparison: LiveComparison, rules: RolloutRules) -> RolloutDecision:
    """Promote when the lower bound of the paired interval of (challenger − production) on the
    rule's metric is ≥ −tolerance over ≥ ``min_labelled`` labelled pairs; roll back when its upper
    bound is < −max_loss, or the challenger's error rate or latency breaches its bound; else wait."""
    rollout = comparison.rollout
    if rollout is None or comparison.challenger is None or comparison.production is None:
        return RolloutDecision(action="none", reasons=["no challenger is served beside production"])
    common = {"production_version": rollout.production_version, "challenger_version": rollout.challenger_version,
              "rollout_id": rollout.rollout_id}
    challenger, production = comparison.challenger, comparison.production
    breaches: list[str] = []
    if challenger.requests and challenger.error_rate > rules.max_error_rate:
        breaches.append(f"challenger error rate {challenger.error_rate:.2%} > {rules.max_error_rate:.2%} "
                        f"({challenger.errors:,} of {challenger.requests:,} requests)")
    if challenger.p99_latency_ms is not None:
        if challenger.p99_latency_ms > rules.max_p99_latency_ms:
            breaches.append(f"challenger p99 scoring latency {challenger.p99_latency_ms:g} ms > "
                            f"{rules.max_p99_latency_ms:g} ms")
        elif (production.p99_latency_ms and challenger.p99_latency_ms >= rules.latency_floor_ms
              and challenger.p99_latency_ms > rules.max_latency_ratio * production.p99_latency_ms):
            breaches.append(f"challenger p99 scoring latency {challenger.p99_latency_ms:g} ms > "
                            f"{rules.max_latency_ratio:g} x production's {production.p99_latency_ms:g} ms")
    difference = comparison.differences.get(rules.metric)
    evidence = None
    if difference is not None:
        evidence = (f"live {rules.metric} difference (challenger v{rollout.challenger_version} - production "
                    f"v{rollout.production_version}) {difference.describe()} ({difference.confidence:.0%} paired "
                    f"bootstrap, {difference.resamples} resamples) on {comparison.labelled_pairs:,} labelled requests")
    if difference is not None and comparison.labelled_pairs >= rules.min_labelled and difference.high < -rules.max_loss:
        breaches.append(f"{evidence}: upper bound {difference.high:+.4f} < -{rules.max_loss}")
    if breaches:
        return RolloutDecision(action="rollback", reasons=breaches, **common)
    if difference is None or comparison.labelled_pairs < rules.min_labelled:
        return RolloutDecision(action="wait", reasons=[
            f"{comparison.labelled_pairs:,} labelled requests scored by both versions, {rules.min_labelled:,} needed"
            + (f"; so far {evidence}" if evidence else "")], **common)
    if difference.low >= -rules.tolerance:
        return RolloutDecision(action="promote", reasons=[f"{evidence}: lower bound {difference.low:+.4f} >= "
                                                          f"-{rules.tolerance}"], **common)
    return RolloutDecision(action="wait", reasons=[
        f"{evidence}: lower bound {difference.low:+.4f} < -{rules.tolerance} and upper bound "
        f"{difference.high:+.4f} >= -{rules.max_loss}: not yet decided"], **common)


def render_live_comparison(comparison: LiveComparison, decision: RolloutDecision | None = None) -> str:
    """HTML sections: the decision, then both versions side by side with their intervals."""
    from html import escape

    from churnops.reporting import html

    if comparison.rollout is None or comparison.production is None or comparison.challenger is None:
        return html.heading("Live comparison") + "<p>No challenger is served beside production.</p>"
    rollout = comparison.rollout
    share = f" ({rollout.canary_percent:g} % of customers)" if rollout.canary_percent else ""
    parts = [html.heading(f"Live comparison: challenger v{rollout.challenger_version} ({rollout.mode}{share}) "
                          f"vs production v{rollout.production_version}")]
    if decision is not None:
        parts.append(html.cards({"action": decision.action.upper(), "applied": decision.applied,
                                 "labelled requests (both scored)": comparison.labelled_pairs,
                                 "since": rollout.started_at}))
        parts.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in [*decision.reasons, decision.outcome] if r)
                     + "</ul>")

    def cell(live: VersionLive, metric: str) -> str:
        interval = live.intervals.get(metric)
        return "-" if interval is None else f"{interval.estimate:.4f} [{interval.low:.4f}, {interval.high:.4f}]"

    rows = []
    for metric in ("f1", "roc_auc", "precision", "recall"):
        difference = comparison.differences.get(metric)
        rows.append([metric, cell(comparison.production, metric), cell(comparison.challenger, metric),
                     difference.describe() if difference is not None else "-"])
    for label, attribute in (("requests", "requests"), ("rows answered", "served_rows"), ("errors", "errors"),
                             ("p50 scoring ms", "p50_latency_ms"), ("p99 scoring ms", "p99_latency_ms")):
        rows.append([label, html.fmt(getattr(comparison.production, attribute)),
                     html.fmt(getattr(comparison.challenger, attribute)), ""])
    parts.append(html.table(["", f"production v{rollout.production_version}",
                             f"challenger v{rollout.challenger_version}", "difference (paired, 95 %)"], rows))
    if comparison.note:
        parts.append(f"<p>{escape(comparison.note)}</p>")
    return "".join(parts)


def format_console(comparison: LiveComparison, decision: RolloutDecision) -> str:
    """The terminal lines of a rollout's judgement."""
    rollout = comparison.rollout
    if rollout is None or comparison.production is None or comparison.challenger is None:
        return "Rollout: no challenger is served beside production."
    share = f", {rollout.canary_percent:g} % of customers" if rollout.canary_percent else ""
    lines = [f"Rollout {rollout.rollout_id}: challenger v{rollout.challenger_version} ({rollout.mode}{share}) vs "
             f"production v{rollout.production_version}, {comparison.labelled_pairs:,} labelled requests scored by "
             f"both since {rollout.started_at}"]
    for live in (comparison.production, comparison.challenger):
        f1 = live.intervals.get("f1")
        auc = live.intervals.get("roc_auc")
        text = (f"F1 {f1.estimate:.3f} [{f1.low:.3f}, {f1.high:.3f}], ROC-AUC {auc.estimate:.3f} "
                f"[{auc.low:.3f}, {auc.high:.3f}]") if f1 is not None and auc is not None else "no labelled pairs yet"
        latency = f", p99 scoring {live.p99_latency_ms:g} ms" if live.p99_latency_ms is not None else ""
        lines.append(f"  {live.role:<10} v{live.version}: {text}; {live.requests:,} requests, {live.errors} errors"
                     f"{latency}")
    lines.append(f"  ROLLOUT: {decision.action.upper()} - " + "; ".join(decision.reasons))
    if decision.outcome:
        lines.append(f"  {decision.outcome}")
    return "\n".join(lines)
