"""/predict?explain=true: the service returns the reason codes batch scoring computes.

In-process tests drive ServingRuntime; one module-scoped real `bentoml serve` (slow) checks the
HTTP query parameters and that the Bento ships the explain module."""

from __future__ import annotations

import json
import os
import uuid

import pandas as pd
import pytest
import requests
import yaml

from churnops.core.settings import StatePaths
from churnops.modeling.explain import LINEAR_METHOD, TREE_SHAP_PROBABILITY, explainer_for
from churnops.serving.config import ServingConfig
from churnops.serving.contract import RequestError
from churnops.serving.packaging import ModelCard, write_model_files
from churnops.serving.runtime import ServingRuntime, explain_option
from tests.test_serving_unit import SCHEMA, fit, records

THRESHOLD = 0.4


@pytest.fixture(scope="module")
def training_frame():
    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean

    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=2500, seed=3)), SCHEMA)
    return cleaned


@pytest.fixture(scope="module")
def logistic(training_frame):
    return fit(training_frame, "sklearn.linear_model.LogisticRegression", max_iter=1000)


def card() -> ModelCard:
    return ModelCard(model_name="churn_classifier", model_version="1", model_version_id=str(uuid.uuid4()),
                     stage="production", threshold=THRESHOLD, metrics={"f1": 0.6}, dataset="synthetic")


def make_runtime(tmp_path, pipeline) -> ServingRuntime:
    folder = tmp_path / f"model-{uuid.uuid4().hex[:6]}"
    folder.mkdir()
    write_model_files(folder, pipeline, SCHEMA, card())
    config = ServingConfig.model_validate({"inference_log": {"enabled": False},
                                           "limits": {"max_predict_customers": 50, "max_batch_rows": 500}})
    return ServingRuntime(folder, "churn_classifier:test", config, StatePaths(tmp_path / "home"))


def batch_reasons(pipeline, rows: list[dict], k: int) -> tuple[list[list[dict]], str]:
    """What batch scoring computes for the same rows: the DataFrame a user (or the batch pipeline) has."""
    frame = pd.DataFrame(rows)[SCHEMA.feature_names].astype({n: float for n in SCHEMA.numeric_names})
    explainer = explainer_for(pipeline, SCHEMA)
    return explainer.top_reasons(frame, k).rows(), explainer.method


@pytest.mark.parametrize(("query", "expected"), [
    ("", 0), (b"", 0), ("explain=true", 3), (b"explain=true&top_k=5", 5), ("explain=1&top_k=10", 10),
    ("explain=false", 0), ("explain=TRUE&top_k=1", 1), ("other=1", 0),
])
def test_explain_option_reads_the_query(query, expected):
    assert explain_option(query) == expected


@pytest.mark.parametrize(("query", "field", "words"), [
    ("explain=maybe", "explain", "explain=true or false"),
    ("explain=true&top_k=0", "top_k", "from 1 to 10"),
    ("explain=true&top_k=11", "top_k", "from 1 to 10"),
    ("explain=true&top_k=three", "top_k", "'three'"),
    ("explain=true&top_k=", "top_k", "from 1 to 10"),
    ("explain=true&top_k=-2", "top_k", "from 1 to 10"),
    ("top_k=3", "top_k", "explain=true"),
])
def test_bad_explain_options_are_a_400_naming_the_parameter(query, field, words):
    with pytest.raises(RequestError) as raised:
        explain_option(query)
    error = raised.value
    assert error.status == 400 and error.detail[0]["loc"] == ["query", field] and words in error.detail[0]["msg"]


def test_explained_predictions_equal_the_batch_reasons(tmp_path, logistic):
    runtime = make_runtime(tmp_path, logistic)
    rows = records(40, seed=21)
    rows[0]["monthly_charges"] = None  # unknown: imputed, labelled "missing"
    rows[1]["contract_type"] = "monthly"  # a synonym: the canonical category in the label
    answer = json.loads(runtime.predict(json.dumps(rows).encode(), "same-id", explain=4).body)
    expected, method = batch_reasons(logistic, [{**r, "contract_type": "Month-to-month"} if i == 1 else r
                                                for i, r in enumerate(rows)], 4)
    assert method == LINEAR_METHOD
    assert [p["reasons"] for p in answer] == expected
    assert all(p["reasons_method"] == LINEAR_METHOD for p in answer)
    assert any(p["reasons"] for p in answer) and all(len(p["reasons"]) <= 4 for p in answer)
    assert all(r["label"].startswith(f"{r['feature']} = ") and r["contribution"] > 0
               for p in answer for r in p["reasons"])
    one = json.loads(runtime.predict(json.dumps(rows[2]).encode(), None, explain=3).body)
    assert one["reasons"] == batch_reasons(logistic, [rows[2]], 3)[0][0]
    # Explaining does not change the prediction itself.
    plain = json.loads(runtime.predict(json.dumps(rows).encode(), "same-id").body)
    assert [{k: v for k, v in p.items() if k not in ("reasons", "reasons_method")} for p in answer] == plain


def test_without_the_flag_nothing_is_explained(tmp_path, logistic):
    runtime = make_runtime(tmp_path, logistic)
    rows = records(5, seed=22)
    for _ in range(3):
        answer = json.loads(runtime.predict(json.dumps(rows).encode(), None).body)
        assert all("reasons" not in p and "reasons_method" not in p for p in answer)
    assert runtime._explainer is None  # never built: the flag-less path does no extra work
    runtime.predict(json.dumps(rows[0]).encode(), None, explain=1)
    assert runtime._explainer is not None


def test_a_forest_is_explained_with_tree_shap_equal_to_batch(tmp_path, training_frame):
    forest = fit(training_frame, "sklearn.ensemble.RandomForestClassifier", n_estimators=10, min_samples_leaf=20)
    runtime = make_runtime(tmp_path, forest)
    rows = records(15, seed=23)
    answer = json.loads(runtime.predict(json.dumps(rows).encode(), None, explain=3).body)
    expected, method = batch_reasons(forest, rows, 3)
    assert method == TREE_SHAP_PROBABILITY and {p["reasons_method"] for p in answer} == {method}
    assert [p["reasons"] for p in answer] == expected


def test_a_model_without_a_reason_method_still_serves_and_says_why(tmp_path, training_frame):
    runtime = make_runtime(tmp_path, fit(training_frame, "sklearn.naive_bayes.GaussianNB"))
    body = json.dumps(records(1, seed=24)[0]).encode()
    assert "churn_probability" in json.loads(runtime.predict(body, None).body)
    with pytest.raises(RequestError) as raised:
        runtime.predict(body, None, explain=3)
    assert raised.value.status == 501 and "GaussianNB" in raised.value.detail[0]["msg"]


# ------------------------------------------------------------------------------ the real service


@pytest.fixture(scope="module")
def served(tmp_path_factory, logistic):
    from churnops.platform import deployment
    from churnops.platform.ports import free_port

    model_tag = deployment.save_bento_model(logistic, SCHEMA, card())
    bento_tag = deployment.build_bento(model_tag, card())
    home = tmp_path_factory.mktemp("explain-serving-home")
    paths = StatePaths(home)
    config = home / "serving.yaml"
    config.write_text(yaml.safe_dump({"inference_log": {"enabled": False}}))
    record = deployment.start_service(paths, bento_tag, "1", port=free_port(), extra_env={
        "BENTOML_HOME": os.environ["BENTOML_HOME"], "CHURNOPS_SERVING_CONFIG": str(config)})
    try:
        yield record
    finally:
        deployment.stop_service(paths)


@pytest.mark.slow
def test_served_reasons_equal_batch_reasons_and_bad_options_are_400(served, logistic):
    rows = records(20, seed=25)
    url = f"{served.url}/predict"
    explained = requests.post(url, params={"explain": "true", "top_k": "2"}, json=rows, timeout=30)
    assert explained.status_code == 200, explained.text
    expected, method = batch_reasons(logistic, rows, 2)
    assert [p["reasons"] for p in explained.json()] == expected
    assert {p["reasons_method"] for p in explained.json()} == {method}
    default = requests.post(url, params={"explain": "true"}, json=rows[0], timeout=30).json()
    assert default["reasons"] == batch_reasons(logistic, rows[:1], 3)[0][0]

    plain = requests.post(url, json=rows, timeout=30)
    assert plain.status_code == 200 and all("reasons" not in p for p in plain.json())
    for params in ({"explain": "true", "top_k": "0"}, {"explain": "true", "top_k": "x"}, {"explain": "sometimes"}):
        refused = requests.post(url, params=params, json=rows[0], timeout=30)
        assert refused.status_code == 400, (params, refused.text)
        assert refused.json()["detail"][0]["loc"][0] == "query", refused.json()
