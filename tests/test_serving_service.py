"""The real service: a Bento built from bento/, `bentoml serve` on a free loopback port,
called with bentoml.SyncHTTPClient and with raw HTTP."""

from __future__ import annotations

import http.client
import json
import os
import threading
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import yaml

from churnops.core.settings import StatePaths
from churnops.platform.ports import free_port
from churnops.serving.packaging import ModelCard
from tests.test_serving_unit import BAD_BODIES, GOOD, SCHEMA, fit, read_log, records, reference_customer_key

pytestmark = pytest.mark.slow

THRESHOLD = 0.4
SALT = "service-test-salt"
MAX_BODY = 200_000
MAX_CUSTOMERS = 50


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean
    from churnops.platform import deployment

    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=2500, seed=3)), SCHEMA)
    pipeline = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=1000)
    card = ModelCard(model_name="churn_classifier", model_version="1", model_version_id=str(uuid.uuid4()),
                     stage="production", threshold=THRESHOLD, metrics={"f1": 0.61, "roc_auc": 0.83},
                     dataset="synthetic", trained_at="2026-01-01T00:00:00+00:00")
    model_tag = deployment.save_bento_model(pipeline, SCHEMA, card)
    bento_tag = deployment.build_bento(model_tag, card)

    home = tmp_path_factory.mktemp("serving-home")
    paths = StatePaths(home)
    config = home / "serving.yaml"
    # Nothing is flushed before shutdown: the log test proves the shutdown flush.
    config.write_text(yaml.safe_dump({
        "limits": {"max_body_bytes": MAX_BODY, "max_predict_customers": MAX_CUSTOMERS, "max_batch_rows": 1000},
        "inference_log": {"flush_rows": 10**6, "flush_seconds": 3600},
    }))
    record = deployment.start_service(paths, bento_tag, "1", port=free_port(), extra_env={
        "BENTOML_HOME": os.environ["BENTOML_HOME"],  # the store the Bento was built in
        "CHURNOPS_SERVING_CONFIG": str(config),
        "CHURNOPS_CUSTOMER_SALT": SALT,
    })
    try:
        yield record, pipeline, paths
    finally:
        deployment.stop_service(paths)


def expected_probabilities(pipeline, rows: list[dict]) -> np.ndarray:
    frame = pd.DataFrame(rows)[SCHEMA.feature_names].astype({n: float for n in SCHEMA.numeric_names})
    return pipeline.predict_proba(frame)[:, 1]


def test_probabilities_and_labels_match_sklearn(served):
    import bentoml

    record, pipeline, _ = served
    rows = records(300, seed=31)
    rows[0]["age"] = None  # unknown: imputed exactly as in training
    expected = expected_probabilities(pipeline, rows)
    expected_labels = (expected >= THRESHOLD).astype(int).tolist()

    with bentoml.SyncHTTPClient(record.url) as client:
        one = client.predict(rows[1])
        assert one["churn_probability"] == pytest.approx(expected[1], abs=1e-6)
        assert one["label"] == expected_labels[1] and one["model_version"] == "1"
        listed = client.predict(rows[:MAX_CUSTOMERS])
        np.testing.assert_allclose([p["churn_probability"] for p in listed], expected[:MAX_CUSTOMERS], atol=1e-6)
        assert [p["label"] for p in listed] == expected_labels[:MAX_CUSTOMERS]
        batch = client.predict_batch(rows)
        np.testing.assert_allclose(batch["churn_probability"], expected, atol=1e-6)
        assert batch["label"] == expected_labels

    raw = requests.post(f"{record.url}/predict_batch", json=rows, timeout=30)
    assert raw.status_code == 200
    np.testing.assert_allclose(raw.json()["churn_probability"], expected, atol=1e-6)
    csv = pd.DataFrame(rows).to_csv(index=False)
    from_csv = requests.post(f"{record.url}/predict_batch", data=csv, headers={"Content-Type": "text/csv"}, timeout=30)
    assert from_csv.status_code == 200, from_csv.text
    np.testing.assert_allclose(from_csv.json()["churn_probability"], expected, atol=1e-6)
    assert from_csv.json()["label"] == expected_labels


def test_request_ids_are_echoed_or_generated(served):
    record, _, _ = served
    echoed = requests.post(f"{record.url}/predict", json=GOOD, headers={"X-Request-ID": "abc-123"}, timeout=10)
    assert echoed.json()["request_id"] == "abc-123" and echoed.headers["X-Request-ID"] == "abc-123"
    own = requests.post(f"{record.url}/predict", json={**GOOD, "request_id": "in-body-7"}, timeout=10)
    assert own.json()["request_id"] == "in-body-7"
    generated = [requests.post(f"{record.url}/predict", json=GOOD, timeout=10) for _ in range(3)]
    ids = [r.json()["request_id"] for r in generated]
    assert len(set(ids)) == 3 and all(len(i) == 32 for i in ids)
    assert all(r.headers["X-Request-ID"] == i for r, i in zip(generated, ids, strict=True))
    listed = requests.post(f"{record.url}/predict", json=[GOOD, GOOD], headers={"X-Request-ID": "L"}, timeout=10)
    assert [p["request_id"] for p in listed.json()] == ["L-0", "L-1"]


def post_raw(url: str, path: str, body: bytes, chunked: bool = False) -> tuple[int, dict]:
    """POST with http.client, so nothing is re-encoded or pre-checked on our side."""
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        try:
            if chunked:
                connection.request("POST", path, body=iter([body[i:i + 65536] for i in range(0, len(body), 65536)]),
                                   headers={"Content-Type": "application/json"}, encode_chunked=True)
            else:
                connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        except (BrokenPipeError, ConnectionResetError):
            # The server may answer (413) and close before the client has sent the whole body;
            # its answer is already in the socket's receive buffer, as urllib3 reads it too.
            pass
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        connection.close()


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_bad_input_gets_a_4xx_naming_the_field(served, case):
    record, _, _ = served
    body, field = BAD_BODIES[case]
    for path, payload in (("/predict", body), ("/predict_batch", b"[" + body + b"]")):
        status, answer = post_raw(record.url, path, payload)
        assert status == 400, (path, status, answer)
        assert any(field in map(str, d["loc"]) for d in answer["detail"]), (path, answer)


def test_empty_oversized_and_too_long_requests_are_refused(served):
    record, _, _ = served
    for path in ("/predict", "/predict_batch"):
        status, answer = post_raw(record.url, path, b"[]")
        assert status == 400 and "at least 1" in json.dumps(answer)
    huge = json.dumps([GOOD] * 1000).encode()
    assert len(huge) > MAX_BODY
    for chunked in (False, True):
        status, answer = post_raw(record.url, "/predict_batch", huge, chunked=chunked)
        assert status == 413 and "exceeds the limit" in answer["error"], answer
    status, answer = post_raw(record.url, "/predict", json.dumps([GOOD] * (MAX_CUSTOMERS + 1)).encode())
    assert status == 400 and f"at most {MAX_CUSTOMERS}" in json.dumps(answer)
    wrong_media = requests.post(f"{record.url}/predict_batch", data=b"<x/>",
                                headers={"Content-Type": "application/xml"}, timeout=10)
    assert wrong_media.status_code == 415


def test_service_stays_up_and_never_answered_5xx(served):
    record, _, _ = served
    assert requests.get(f"{record.url}/readyz", timeout=10).status_code == 200
    assert requests.get(f"{record.url}/healthz", timeout=10).status_code == 200
    assert requests.post(f"{record.url}/predict", json=GOOD, timeout=10).status_code == 200
    metrics = requests.get(f"{record.url}/metrics", timeout=10).text
    server_errors = [line for line in metrics.splitlines()
                     if line.startswith("bentoml_service_request_total") and 'http_response_code="5' in line
                     and not line.endswith(" 0.0")]
    assert not server_errors, server_errors


def test_model_info_swagger_and_metrics(served):
    record, _, _ = served
    info = requests.get(f"{record.url}/model_info", timeout=10).json()
    assert (info["model_name"], info["model_version"], info["stage"], info["threshold"]) == (
        "churn_classifier", "1", "production", THRESHOLD)
    assert info["metrics"] == {"f1": 0.61, "roc_auc": 0.83} and info["trained_at"].startswith("2026-01-01")
    assert set(info["features"]) == set(SCHEMA.feature_names)
    assert info["inference_path"].startswith("compiled LogisticRegression")
    assert requests.get(f"{record.url}/model-info", timeout=10).json() == info

    page = requests.get(f"{record.url}/", timeout=10)
    assert page.status_code == 200 and "swagger" in page.text.lower()
    spec = requests.get(f"{record.url}/docs.json", timeout=10).json()
    assert {"/predict", "/predict_batch", "/model_info"} <= set(spec["paths"])
    body_schema = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    customer = body_schema["oneOf"][0]
    assert set(SCHEMA.feature_names) <= set(customer["properties"])

    requests.post(f"{record.url}/predict_batch", json=records(20, seed=4), timeout=10)
    metrics = requests.get(f"{record.url}/metrics", timeout=10).text
    assert "churn_predictions_total{" in metrics and 'endpoint="predict_batch"' in metrics
    count = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("churn_probability_count"))
    labelled = sum(float(line.split()[-1]) for line in metrics.splitlines()
                   if line.startswith("churn_predictions_total{"))
    assert count == labelled >= 20
    assert "bentoml_service_request_duration_seconds" in metrics


def test_zz_inference_log_has_every_record_after_concurrent_load_and_shutdown(served):
    """Runs last in this module: it stops the server."""
    from churnops.platform import deployment

    record, _, paths = served
    sent: list[str] = []
    lock = threading.Lock()
    failures: list[str] = []

    def client(worker: int) -> None:
        with requests.Session() as session:
            for i in range(25):
                rid = f"load-{worker}-{i}"
                answer = session.post(f"{record.url}/predict", json=GOOD, headers={"X-Request-ID": rid}, timeout=30)
                batch = session.post(f"{record.url}/predict_batch", json=records(4, seed=i),
                                     headers={"X-Request-ID": f"{rid}-b"}, timeout=30)
                if answer.status_code != 200 or batch.status_code != 200:
                    failures.append(f"{answer.status_code} {batch.status_code}")
                with lock:
                    sent.extend([rid, *(f"{rid}-b-{j}" for j in range(4))])

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures
    log_dir = Path(paths.inference_log_dir)
    assert not list(log_dir.rglob("*.arrow")), "flush_seconds is an hour: nothing should be on disk yet"

    deployment.stop_service(paths)
    assert not deployment._is_our_server(record.pid)
    logged = read_log(log_dir)
    assert set(sent) <= set(logged["request_id"])
    assert logged["request_id"].is_unique
    mine = logged.set_index("request_id").loc["load-0-0"]
    assert mine["customer_key"] == reference_customer_key(GOOD["customer_id"], SALT.encode())
    assert mine["model_version"] == "1" and mine["contract_type"] == GOOD["contract_type"]
