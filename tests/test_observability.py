"""Alert rules (deploy/prometheus/alerts.yml) and the Grafana dashboard (deploy/grafana/churn-service.json)
against what the service really exports, and the inference log writer's Prometheus metrics.

The slow test starts the real service, sends predictions and a refused request, scrapes /metrics
and checks that every metric, label and label value the rules and the dashboard select exists
there, so a renamed metric or label (a BentoML upgrade, a typo) fails here rather than leaving
an alert that can never fire. promtool, when installed (Debian's ``prometheus`` package), also
checks the rules' syntax and runs their unit tests (deploy/prometheus/alerts*_test.yml).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import yaml

from churnops.core.settings import StatePaths
from churnops.platform.ports import free_port
from churnops.serving.inference_log import InferenceLogWriter
from churnops.serving.log_metrics import PENDING_ROWS, ROWS_WRITTEN, WRITE_FAILURES, InferenceLogMetrics
from churnops.serving.packaging import ModelCard
from tests.test_serving_unit import CONTRACT, GOOD, SCHEMA, fit, records

ROOT = Path(__file__).resolve().parents[1]
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
ALERT_TESTS = [ROOT / "deploy" / "prometheus" / name for name in ("alerts_test.yml", "alerts_shift_test.yml")]
DASHBOARD = ROOT / "deploy" / "grafana" / "churn-service.json"
DATASOURCE_UIDS = {"${datasource}", "$datasource"}

# Series Prometheus writes itself for every target, and labels it adds from the target: in no /metrics.
PROMETHEUS_SERIES = {"up", "scrape_duration_seconds", "scrape_samples_scraped",
                     "scrape_samples_post_metric_relabeling", "scrape_series_added"}
TARGET_LABELS = {"job", "instance"}

# -- a small PromQL reader: enough to find every selector (metric name and label matchers)

PROMQL_FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan", "atanh", "avg_over_time",
    "ceil", "changes", "clamp", "clamp_max", "clamp_min", "cos", "cosh", "count_over_time", "day_of_month",
    "day_of_week", "day_of_year", "days_in_month", "deg", "delta", "deriv", "double_exponential_smoothing", "exp",
    "floor", "histogram_avg", "histogram_count", "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta", "increase", "irate", "label_join",
    "label_replace", "last_over_time", "ln", "log10", "log2", "mad_over_time", "max_over_time", "min_over_time",
    "minute", "month", "pi", "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate", "resets",
    "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_by_label", "sort_by_label_desc", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time", "timestamp", "vector", "year",
}
AGGREGATIONS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
                "quantile", "limitk", "limit_ratio"}
LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"offset", "bool", "and", "or", "unless", "atan2", "inf", "nan"}

_TOKEN = re.compile(r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{?\w+\}?)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
  | (?P<number>0x[0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<op>=~|!~|!=|==|>=|<=|[=<>+\-*/%^@{}()\[\],])
  | (?P<space>\s+)
""", re.VERBOSE)


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str


@dataclass
class Selector:
    metric: str
    matchers: list[Matcher] = field(default_factory=list)


def _tokens(expr: str) -> list[tuple[str, str]]:
    tokens, position = [], 0
    while position < len(expr):
        match = _TOKEN.match(expr, position)
        if match is None:
            raise ValueError(f"cannot read PromQL at {expr[position:position + 30]!r} in {expr!r}")
        position = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    return tokens


def _closing(tokens: list[tuple[str, str]], start: int, opening: str, closing: str) -> int:
    """The index of the token that closes the bracket at ``start``."""
    depth = 0
    for index in range(start, len(tokens)):
        if tokens[index] == ("op", opening):
            depth += 1
        elif tokens[index] == ("op", closing):
            depth -= 1
            if depth == 0:
                return index
    raise ValueError(f"unbalanced {opening!r} in PromQL")


def _matchers(tokens: list[tuple[str, str]]) -> list[Matcher]:
    """``label op "value"`` triples, comma-separated, as inside ``{...}``."""
    matchers = []
    for index in range(0, len(tokens), 4):
        part = tokens[index:index + 3]
        well_formed = len(part) == 3 and part[0][0] == "name" and part[2][0] == "string"
        if not well_formed or part[1][1] not in ("=", "!=", "=~", "!~"):
            raise ValueError(f"cannot read label matchers {' '.join(t for _, t in tokens)!r}")
        matchers.append(Matcher(part[0][1], part[1][1], part[2][1][1:-1]))
    return matchers


def promql_selectors(expr: str) -> list[Selector]:
    """Every series selector of a PromQL expression: metric names with their label matchers.
    Function, aggregation and keyword names are told apart from metric names; an unknown
    function name is an error rather than a metric."""
    tokens = _tokens(expr)
    selectors: list[Selector] = []
    index = 0
    while index < len(tokens):
        kind, text = tokens[index]
        following = tokens[index + 1] if index + 1 < len(tokens) else ("", "")
        if kind == "op" and text == "[":  # a range or subquery: durations and variables only
            index = _closing(tokens, index, "[", "]") + 1
            continue
        if kind == "op" and text == "{":
            raise ValueError(f"a selector without a metric name in {expr!r}")
        if kind != "name":
            index += 1
            continue
        if text in LABEL_LIST_KEYWORDS:
            index = _closing(tokens, index + 1, "(", ")") + 1 if following == ("op", "(") else index + 1
        elif text in KEYWORDS or text in AGGREGATIONS:
            index += 1
        elif following == ("op", "("):
            if text not in PROMQL_FUNCTIONS:
                raise ValueError(f"unknown PromQL function {text!r} in {expr!r}")
            index += 1
        elif following == ("op", "{"):
            end = _closing(tokens, index + 1, "{", "}")
            selectors.append(Selector(text, _matchers(tokens[index + 2:end])))
            index = end + 1
        else:
            selectors.append(Selector(text))
            index += 1
    return selectors


# -- what the files use

def alert_rules() -> list[dict[str, Any]]:
    return [rule for group in yaml.safe_load(ALERTS.read_text())["groups"] for rule in group["rules"]]


def dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def all_panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Panels and the panels of collapsed rows."""
    for panel in panels:
        yield panel
        yield from all_panels(panel.get("panels", []))


LABEL_VALUES = re.compile(r"^\s*label_values\((?P<query>.+),\s*(?P<label>\w+)\s*\)\s*$")


def used_selectors() -> list[tuple[str, Selector, str | None]]:
    """(where, selector, label it must carry) for every selector the rules and the dashboard use."""
    used: list[tuple[str, Selector, str | None]] = []
    for rule in alert_rules():
        used += [(f"alert {rule['alert']}", s, None) for s in promql_selectors(rule["expr"])]
    board = dashboard()
    for panel in all_panels(board["panels"]):
        for target in panel.get("targets", []):
            used += [(f"panel {panel['title']!r}", s, None) for s in promql_selectors(target["expr"])]
    for variable in board["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = LABEL_VALUES.match(query)
        assert match, f"variable {variable['name']}: only label_values(selector, label) is checked, not {query!r}"
        used += [(f"variable ${variable['name']}", s, match["label"]) for s in promql_selectors(match["query"])]
    return used


# -- fast checks of the files

def test_the_promql_reader_finds_metrics_and_matchers_not_functions_labels_or_durations():
    expr = ('abs(sum by (job, le) (rate(a_total{job="x", endpoint=~"/p|/q"}[5m] offset 1d)) / '
            'histogram_quantile(0.99, sum without (pid) (increase(b_bucket{le!="+Inf"}[$__rate_interval]))))'
            ' > 0.1 and on (job) group_left (x) c_gauge * 2 unless absent(up{instance="h:1", code="5.."})')
    selectors = promql_selectors(expr)
    assert [s.metric for s in selectors] == ["a_total", "b_bucket", "c_gauge", "up"]
    assert selectors[0].matchers == [Matcher("job", "=", "x"), Matcher("endpoint", "=~", "/p|/q")]
    assert selectors[1].matchers == [Matcher("le", "!=", "+Inf")]
    with pytest.raises(ValueError, match="unknown PromQL function 'rat'"):
        promql_selectors("rat(a_total[5m])")


def test_alert_rules_have_the_rule_file_structure_and_cover_the_service():
    document = yaml.safe_load(ALERTS.read_text())
    assert set(document) == {"groups"} and document["groups"], "a rule file is {groups: [...]}"
    names = [group["name"] for group in document["groups"]]
    assert len(set(names)) == len(names)
    rules = alert_rules()
    alerts = [rule["alert"] for rule in rules]
    assert len(set(alerts)) == len(alerts), "alert names must be unique"
    for rule in rules:
        where = f"alert {rule.get('alert')!r}"
        assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}, where
        assert re.fullmatch(r"[A-Z][A-Za-z0-9]+", rule["alert"]), where
        assert isinstance(rule["expr"], str) and rule["expr"].strip(), where
        assert re.fullmatch(r"(\d+(ms|[smhdwy]))+", rule["for"]), where
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, where
        assert rule["annotations"]["summary"].strip() and rule["annotations"]["description"].strip(), where
        assert promql_selectors(rule["expr"]), f"{where} selects no series"
    # The five things issue 14 asked to alert on, each by the metric it watches.
    watched = {s.metric for rule in rules for s in promql_selectors(rule["expr"])}
    assert {"up", "bentoml_service_request_total", "bentoml_service_request_duration_seconds_bucket",
            "churn_predictions_total", f"{WRITE_FAILURES}_total"} <= watched
    shift = next(rule["expr"] for rule in rules if rule["alert"] == "ChurnPredictedShareShift")
    assert "offset 1d" in shift and 'label="1"' in shift


def test_dashboard_has_unique_panel_ids_a_tidy_grid_and_uses_the_datasource_variable():
    board = dashboard()
    assert board["schemaVersion"] >= 36 and board["uid"] and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    panels = list(all_panels(board["panels"]))
    ids = [panel["id"] for panel in panels]
    assert len(set(ids)) == len(ids), f"duplicate panel ids: {sorted(i for i in ids if ids.count(i) > 1)}"
    occupied: dict[tuple[int, int], str] = {}
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        for x in range(grid["x"], grid["x"] + grid["w"]):
            for y in range(grid["y"], grid["y"] + grid["h"]):
                assert (x, y) not in occupied, f"{panel['title']!r} overlaps {occupied[x, y]!r}"
                occupied[x, y] = panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["targets"], f"{panel['title']!r} has no query"
        assert panel["datasource"]["uid"] in DATASOURCE_UIDS, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in DATASOURCE_UIDS, panel["title"]
            assert target["expr"].strip() and promql_selectors(target["expr"]), panel["title"]
        refs = [target["refId"] for target in panel["targets"]]
        assert len(set(refs)) == len(refs), panel["title"]
    for variable in variables.values():
        if variable["type"] == "query":
            assert variable["datasource"]["uid"] in DATASOURCE_UIDS, variable["name"]
    titles = " | ".join(panel["title"].lower() for panel in panels)
    for wanted in ("request rate", "error", "p99", "by label", "distribution", "churn share", "pending rows"):
        assert wanted in titles, wanted


def _promtool() -> str:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian: apt-get install prometheus)")
    return promtool


def test_promtool_accepts_the_rules_their_unit_tests_pass_and_the_dashboard_queries_parse(tmp_path):
    promtool = _promtool()
    for command in (["check", "rules", str(ALERTS)], ["test", "rules", *map(str, ALERT_TESTS)]):
        done = subprocess.run([promtool, *command], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
    # The dashboard's queries as recording rules, Grafana's variables given values, for promtool to parse.
    values = {"$__rate_interval": "1m", "$__range": "6h", "$job": "churn-service", "$instance": ".*"}
    rules = []
    for number, panel in enumerate(p for p in all_panels(dashboard()["panels"]) if p.get("targets")):
        for target in panel["targets"]:
            expr = target["expr"]
            for variable, value in values.items():
                expr = expr.replace(variable, value)
            assert "$" not in expr, f"{panel['title']!r}: a Grafana variable this test does not know: {expr}"
            rules.append({"record": f"dashboard:panel{number}:{target['refId']}", "expr": expr})
    checked = tmp_path / "dashboard-queries.yml"
    checked.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([promtool, "check", "rules", str(checked)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


# -- the writer's metrics, in process

def _sample(name: str) -> float:
    import prometheus_client

    return prometheus_client.REGISTRY.get_sample_value(name) or 0.0


def _wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_log_writer_metrics_count_failed_writes_pending_and_written_rows(tmp_path):
    metrics = InferenceLogMetrics()
    written, failures = _sample(f"{ROWS_WRITTEN}_total"), _sample(f"{WRITE_FAILURES}_total")
    directory = tmp_path / "log"
    writer = InferenceLogWriter(directory, SCHEMA, "m", "1", None, flush_rows=1, flush_seconds=0.01,
                                stats_observer=metrics.observe)
    blocker = directory / "date=2026-01-02"
    blocker.write_text("a file where the day's folder should be")  # every write now fails
    batch = CONTRACT.parse_batch(json.dumps(records(3)).encode())
    day = np.datetime64("2026-01-02T12:00:00", "ns").astype(np.int64).item()
    writer.append(batch, ["a", "b", "c"], np.full(3, 0.5), np.ones(3, dtype=np.int64), timestamp_ns=day)
    _wait_for(lambda: _sample(f"{WRITE_FAILURES}_total") > failures and _sample(PENDING_ROWS) == 3)
    assert _sample(f"{ROWS_WRITTEN}_total") == written
    blocker.unlink()
    assert writer.flush(timeout=20)
    _wait_for(lambda: _sample(f"{ROWS_WRITTEN}_total") == written + 3)
    assert _sample(PENDING_ROWS) == 0
    assert _sample(f"{WRITE_FAILURES}_total") - failures == writer.stats.write_errors
    writer.close()


def test_a_failing_stats_observer_never_stops_the_log(tmp_path):
    calls = threading.Event()

    def broken(*_: object) -> None:
        calls.set()
        raise RuntimeError("metrics backend gone")

    writer = InferenceLogWriter(tmp_path / "log", SCHEMA, "m", "1", None, flush_rows=1, flush_seconds=0.01,
                                stats_observer=broken)
    batch = CONTRACT.parse_batch(json.dumps(records(2)).encode())
    for n in range(3):
        writer.append(batch, [f"r{n}-0", f"r{n}-1"], np.full(2, 0.2), np.zeros(2, dtype=np.int64))
        assert writer.flush(timeout=20)
    writer.close()
    assert calls.is_set() and writer.stats.rows_written == 6 and writer.stats.write_errors == 0


# -- against the real service

@dataclass
class Scrape:
    families: dict[str, Any]  # sample name -> its family (prometheus_client's parser)
    labels: dict[str, dict[str, set[str]]]  # sample name -> label -> values seen
    values: dict[tuple[str, frozenset[tuple[str, str]]], float]
    rows_sent: int


@pytest.fixture(scope="module")
def scrape(tmp_path_factory) -> Iterator[Scrape]:
    from prometheus_client.parser import text_string_to_metric_families

    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean
    from churnops.platform import deployment

    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=1000, seed=3)), SCHEMA)
    pipeline = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=1000)
    card = ModelCard(model_name="churn_classifier", model_version="1", model_version_id=str(uuid.uuid4()),
                     stage="production", threshold=0.4, metrics={"f1": 0.6}, dataset="synthetic",
                     trained_at="2026-01-01T00:00:00+00:00")
    bento_tag = deployment.build_bento(deployment.save_bento_model(pipeline, SCHEMA, card), card)
    home = tmp_path_factory.mktemp("observability-home")
    paths = StatePaths(home)
    config = home / "serving.yaml"
    config.write_text(yaml.safe_dump({"inference_log": {"flush_seconds": 0.2}}))  # rows reach disk at once
    record = deployment.start_service(paths, bento_tag, "1", port=free_port(), extra_env={
        "BENTOML_HOME": os.environ["BENTOML_HOME"], "CHURNOPS_SERVING_CONFIG": str(config),
        "CHURNOPS_CUSTOMER_SALT": "observability-test-salt",
    })
    try:
        batch = records(200, seed=7)
        for body in (GOOD, GOOD, GOOD, records(5, seed=8)):
            assert requests.post(f"{record.url}/predict", json=body, timeout=30).status_code == 200
        assert requests.post(f"{record.url}/predict_batch", json=batch, timeout=30).status_code == 200
        assert requests.post(f"{record.url}/predict", json={"no such": "field"}, timeout=30).status_code == 400
        rows_sent = 3 + 5 + len(batch)

        def scraped() -> str:
            return requests.get(f"{record.url}/metrics", timeout=30).text

        deadline = time.monotonic() + 15
        text = scraped()
        while f"{ROWS_WRITTEN}_total {float(rows_sent)}" not in text and time.monotonic() < deadline:
            time.sleep(0.2)
            text = scraped()
    finally:
        deployment.stop_service(paths)
    families: dict[str, Any] = {}
    labels: dict[str, dict[str, set[str]]] = {}
    values: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            families[sample.name] = family
            for label, value in sample.labels.items():
                labels.setdefault(sample.name, {}).setdefault(label, set()).add(value)
            values[sample.name, frozenset(sample.labels.items())] = sample.value
    yield Scrape(families, labels, values, rows_sent)


def _total(scrape: Scrape, name: str, **selected: str) -> float:
    return sum(value for (sample, labels), value in scrape.values.items()
               if sample == name and set(selected.items()) <= labels)


@pytest.mark.slow
def test_every_metric_label_and_value_the_alerts_and_dashboard_use_is_exported(scrape):
    used = used_selectors()
    metrics = {selector.metric for _, selector, _ in used}
    assert len(metrics) >= 10, sorted(metrics)  # the reader found the selectors
    problems = []
    for where, selector, needed_label in used:
        name = selector.metric
        if name in PROMETHEUS_SERIES:
            continue
        family = scrape.families.get(name)
        if family is None:
            problems.append(f"{where}: {name} is not in /metrics")
            continue
        expected_type = "histogram" if name.endswith(("_bucket", "_sum", "_count")) else (
            "counter" if name.endswith("_total") else None)
        if expected_type and family.type != expected_type:
            problems.append(f"{where}: {name} belongs to the {family.type} {family.name}, not a {expected_type}")
        seen = scrape.labels.get(name, {})
        for label in [m.label for m in selector.matchers] + ([needed_label] if needed_label else []):
            if label not in TARGET_LABELS and label not in seen:
                problems.append(f"{where}: {name} has no label {label!r} (it has {sorted(seen)})")
        for matcher in selector.matchers:
            if matcher.label in TARGET_LABELS or "$" in matcher.value or matcher.label not in seen:
                continue
            options = seen[matcher.label]
            matched = (matcher.op == "=" and matcher.value in options) or (
                matcher.op == "=~" and any(re.fullmatch(matcher.value, option) for option in options))
            if matcher.op in ("=", "=~") and not matched:
                problems.append(f"{where}: {name}{{{matcher.label}{matcher.op}{matcher.value!r}}} "
                                f"matches none of {sorted(options)}")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_the_scrape_counts_what_the_service_did(scrape):
    rows = scrape.rows_sent
    # Every prediction is counted once by label, once in the probability histogram and once on disk.
    assert _total(scrape, "churn_predictions_total") == rows
    assert _total(scrape, "churn_predictions_total", endpoint="predict_batch") == 200
    assert _total(scrape, "churn_probability_count") == rows
    assert _total(scrape, f"{ROWS_WRITTEN}_total") == rows
    assert _total(scrape, f"{WRITE_FAILURES}_total") == 0 and _total(scrape, PENDING_ROWS) == 0
    assert scrape.labels[PENDING_ROWS].keys() == {"pid"}  # one series per worker process
    # BentoML counts requests per endpoint and status: 4 answered /predict calls and the refused one.
    assert _total(scrape, "bentoml_service_request_total", endpoint="/predict", http_response_code="200") == 4
    assert _total(scrape, "bentoml_service_request_total", endpoint="/predict", http_response_code="400") == 1
    assert _total(scrape, "bentoml_service_request_duration_seconds_count", endpoint="/predict_batch") == 1
