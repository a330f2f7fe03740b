"""The lean scoring routes (bento/lean_route.py) and the Arrow batch body (churnops/serving/arrow_body.py).

In process: the front door's dispatch, the lean chain with the real API-key and body-size
middlewares, a handler's crash answered as BentoML would, and the Arrow parser against the JSON
one. On a real `bentoml serve`: the lean routes are installed and answer every good and bad
request exactly as BentoML's path of the same Bento does (CHURNOPS_LEAN_ROUTES=off), Arrow and CSV
batches score as JSON does, and the access log keeps its lines.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
import requests
import yaml

from bento.api_key_auth import ApiKeyAuth
from bento.lean_route import SERVER_ERROR_BODY, FrontDoor, HttpAnswer, LeanRequest, LeanRoutes, lean_chain
from bento.limits import BodySizeLimit
from churnops.serving.arrow_body import ARROW_STREAM_TYPES, parse_arrow_batch
from churnops.serving.contract import RequestContract, RequestError
from tests.test_serving_unit import BAD_BODIES, SCHEMA, fit, records

ARROW = next(iter(ARROW_STREAM_TYPES))
KEY = "k" * 24


# -- in process: plain ASGI calls against the real middlewares

def call(app: Any, method: str, path: str, body: bytes = b"", headers: list[tuple[bytes, bytes]] | None = None,
         chunks: int = 1) -> tuple[int, dict[bytes, bytes], bytes]:
    """One request through an ASGI app; the body sent in ``chunks`` messages."""
    scope = {"type": "http", "method": method, "path": path, "headers": headers or [], "query_string": b"",
             "client": ("127.0.0.1", 5000), "scheme": "http"}
    size = max(1, -(-len(body) // chunks))
    pieces = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
                for i, piece in enumerate(pieces)]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), body_out


class Recorder:
    """An ASGI app standing for BentoML's stack: records that it was called."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.paths.append(scope["path"])
        await send({"type": "http.response.start", "status": 299, "headers": []})
        await send({"type": "http.response.body", "body": b"stack"})


def echo_routes() -> LeanRoutes:
    routes = LeanRoutes(access_log=True, server_header="BentoML Service/test")

    async def echo(request: LeanRequest) -> HttpAnswer:
        return HttpAnswer(200, json.dumps({"path": request.path, "size": len(request.body),
                                           "id": request.header(b"x-request-id")}).encode(), ((b"x-request-id", b"r"),))

    async def crash(request: LeanRequest) -> HttpAnswer:
        raise RuntimeError("boom")

    routes.bind({"/predict": echo, "/predict_batch": crash})
    return routes


def test_front_door_sends_only_posts_to_lean_paths_down_the_lean_chain():
    routes, stack = echo_routes(), Recorder()
    door = FrontDoor(routes, routes.handlers, stack)
    status, headers, body = call(door, "POST", "/predict", b"x" * 10, [(b"x-request-id", b"abc")], chunks=3)
    assert status == 200 and json.loads(body) == {"path": "/predict", "size": 10, "id": "abc"}
    assert headers[b"server"] == b"BentoML Service/test" and headers[b"content-length"] == str(len(body)).encode()
    for method, path in (("GET", "/predict"), ("POST", "/model_info"), ("POST", "/predict/"), ("GET", "/metrics")):
        assert call(door, method, path)[0] == 299
    assert stack.paths == ["/predict", "/model_info", "/predict/", "/metrics"]


def test_a_crashing_handler_answers_bentomls_500_body_and_logs_the_access_line(caplog):
    chain = lean_chain(echo_routes(), [])
    with caplog.at_level("INFO", logger="bentoml.access"):
        status, _, body = call(chain, "POST", "/predict_batch", b"{}")
    assert status == 500 and body == SERVER_ERROR_BODY
    assert "error" in json.loads(body)
    line = next(r.getMessage() for r in caplog.records if r.name == "bentoml.access")
    assert "method=POST,path=/predict_batch" in line and "status=500" in line and f"length={len(body)}" in line


def test_lean_chain_keeps_the_services_middlewares_in_order():
    routes = echo_routes()
    chain = lean_chain(routes, [(ApiKeyAuth, {"keys": [KEY]}), (BodySizeLimit, {"max_bytes": 1024})])
    status, headers, body = call(chain, "POST", "/predict", b"{}")
    assert status == 401 and json.loads(body)["detail"][0]["type"] == "missing_api_key"
    assert headers[b"www-authenticate"] == b"Bearer"
    authorised = [(b"authorization", f"Bearer {KEY}".encode())]
    assert call(chain, "POST", "/predict", b"{}", authorised)[0] == 200
    too_big = call(chain, "POST", "/predict", b"x" * 2000, [*authorised, (b"content-length", b"2000")])
    assert too_big[0] == 413 and json.loads(too_big[2])["detail"][0]["type"] == "payload_too_large"
    chunked_too_big = call(chain, "POST", "/predict", b"x" * 2000, authorised, chunks=4)
    assert chunked_too_big[0] == 413


# -- the Arrow body

CONTRACT = RequestContract(SCHEMA, 1000, 100)


def arrow_body(rows: list[dict], **columns: pa.Array) -> bytes:
    """The rows as an Arrow IPC stream, as a client with pandas would send them; ``columns`` replace some."""
    import pandas as pd

    table = pa.Table.from_pandas(pd.DataFrame(rows), preserve_index=False)
    for name, values in columns.items():
        table = table.set_column(table.column_names.index(name), name, values)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue()


def refusal(body: bytes) -> RequestError:
    with pytest.raises(RequestError) as raised:
        parse_arrow_batch(body, CONTRACT.rules, CONTRACT.max_batch_rows)
    assert raised.value.status == 400
    return raised.value


def test_arrow_batch_parses_to_the_same_arrays_as_json():
    rows = records(40, seed=5)
    rows[3]["age"] = None
    rows[4]["contract_type"] = None
    rows[5]["contract_type"] = "monthly"  # a declared synonym
    rows[6]["request_id"] = "own-id"
    from_json = CONTRACT.parse_batch(json.dumps(rows).encode())
    from_arrow = parse_arrow_batch(arrow_body(rows), CONTRACT.rules, CONTRACT.max_batch_rows)
    assert np.array_equal(from_json.numeric, from_arrow.numeric, equal_nan=True)
    assert np.array_equal(from_json.codes, from_arrow.codes)
    assert from_json.customer_ids == from_arrow.customer_ids and from_json.request_ids == from_arrow.request_ids
    # Dictionary-encoded strings (what pandas categoricals become) read the same.
    encoded = pa.array([r["gender"] for r in rows]).dictionary_encode()
    dictionary = parse_arrow_batch(arrow_body(rows, gender=encoded), CONTRACT.rules, CONTRACT.max_batch_rows)
    assert np.array_equal(dictionary.codes, from_json.codes)


@pytest.mark.parametrize(("change", "loc", "kind"), [
    ({"age": 140}, [2, "age"], "less_than_equal"),
    ({"support_tickets": 2.5}, [2, "support_tickets"], "multiple_of"),
    ({"monthly_charges": float("nan")}, [2, "monthly_charges"], "finite_number"),
    ({"total_charges": float("inf")}, [2, "total_charges"], "finite_number"),
    ({"contract_type": "Weekly"}, [2, "contract_type"], "literal_error"),
    ({"request_id": ""}, [2, "request_id"], "string_length"),
])
def test_arrow_batch_names_the_bad_row_and_column(change, loc, kind):
    rows = records(5, seed=8)
    rows[2].update(change)
    # The changed columns built by Arrow itself: pandas would turn NaN into null.
    error = refusal(arrow_body(rows, **{name: pa.array([row.get(name) for row in rows]) for name in change}))
    assert error.detail[0]["loc"] == loc and error.detail[0]["type"] == kind, error.body()


def test_arrow_batch_refuses_wrong_shapes_and_types():
    rows = records(3, seed=9)
    assert refusal(arrow_body([{**r, "colour": "red"} for r in rows])).detail[0]["loc"] == ["colour"]
    missing = refusal(arrow_body([{k: v for k, v in r.items() if k != "tenure_months"} for r in rows]))
    assert missing.detail[0] == {"loc": ["tenure_months"], "msg": "Field required", "type": "missing"}
    as_text = refusal(arrow_body(rows, age=pa.array([str(r["age"]) for r in rows])))
    assert as_text.detail[0]["loc"] == ["age"] and as_text.detail[0]["type"] == "float_type"
    assert refusal(arrow_body(rows, gender=pa.array([1, 2, 3]))).detail[0]["type"] == "string_type"
    assert refusal(b"not arrow at all").detail[0]["type"] == "arrow_invalid"
    assert refusal(arrow_body(rows)[:-40]).detail[0]["loc"] == ["body"]  # cut short
    assert refusal(arrow_body(records(101, seed=1))).detail[0]["type"] == "too_long"
    empty = pa.Table.from_pylist(rows).slice(0, 0)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, empty.schema) as writer:
        writer.write_table(empty)
    assert refusal(sink.getvalue()).detail[0]["type"] == "too_short"


# -- a real `bentoml serve`: lean routes against BentoML's path of the same Bento

@pytest.fixture(scope="module")
def two_servers(tmp_path_factory):
    """The same Bento served twice: lean routes (the default) and CHURNOPS_LEAN_ROUTES=off."""
    from churnops.core.settings import StatePaths
    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean
    from churnops.platform import deployment
    from churnops.platform.ports import free_port
    from churnops.serving.packaging import ModelCard

    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=1500, seed=4)), SCHEMA)
    pipeline = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=1000)
    card = ModelCard(model_name="churn_classifier", model_version="1", model_version_id=str(uuid.uuid4()),
                     stage="production", threshold=0.4, dataset="synthetic")
    bento_tag = deployment.build_bento(deployment.save_bento_model(pipeline, SCHEMA, card), card)
    served = {}
    for name, lean in (("lean", "on"), ("bentoml", "off")):
        home = tmp_path_factory.mktemp(f"serving-{name}")
        config = home / "serving.yaml"
        config.write_text(yaml.safe_dump({"limits": {"max_body_bytes": 200_000, "max_predict_customers": 50,
                                                     "max_batch_rows": 1000}}))
        paths = StatePaths(home)
        record = deployment.start_service(paths, bento_tag, "1", port=free_port(), extra_env={
            "BENTOML_HOME": os.environ["BENTOML_HOME"], "CHURNOPS_SERVING_CONFIG": str(config),
            "CHURNOPS_CUSTOMER_SALT": "lean-test-salt", "CHURNOPS_LEAN_ROUTES": lean})
        served[name] = (record, paths)
    try:
        yield served
    finally:
        for _, paths in served.values():
            deployment.stop_service(paths)


def _answer(url: str, path: str, body: bytes, content_type: str = "application/json") -> tuple[int, Any]:
    response = requests.post(url + path, data=body, timeout=30,
                             headers={"Content-Type": content_type, "X-Request-ID": "same-id"})
    return response.status_code, response.json()


@pytest.mark.slow
def test_lean_routes_answer_as_bentomls_path_does(two_servers):
    (lean, _), (bento, _) = two_servers["lean"], two_servers["bentoml"]
    rows = records(20, seed=12)
    cases: dict[str, tuple[str, bytes, str]] = {
        "one": ("/predict", json.dumps(rows[0]).encode(), "application/json"),
        "list": ("/predict", json.dumps(rows).encode(), "application/json"),
        "batch": ("/predict_batch", json.dumps(rows).encode(), "application/json"),
        "wrong media type": ("/predict_batch", b"x", "application/xml"),
        "empty list": ("/predict", b"[]", "application/json"),
        **{f"bad: {name}": ("/predict", body, "application/json") for name, (body, _) in BAD_BODIES.items()},
    }
    for name, (path, body, content_type) in cases.items():
        assert _answer(lean.url, path, body, content_type) == _answer(bento.url, path, body, content_type), name
    too_big = requests.post(lean.url + "/predict", data=b"x" * 300_000, timeout=30)
    assert too_big.status_code == 413 and too_big.headers["connection"] == "close"
    one = requests.post(lean.url + "/predict", json=rows[0], headers={"X-Request-ID": "echo-me"}, timeout=30)
    assert one.headers["x-request-id"] == "echo-me" and one.headers["server"].startswith("BentoML Service/")
    log = Path(lean.log_file).read_text()
    assert "lean routes installed" in log and "path=/predict," in log and "status=413" in log
    assert "lean routes installed" not in Path(bento.log_file).read_text()


@pytest.mark.slow
def test_arrow_and_csv_batches_score_as_json_does(two_servers):
    import pandas as pd

    record, _ = two_servers["lean"]
    rows = records(200, seed=21)
    status, from_json = _answer(record.url, "/predict_batch", json.dumps(rows).encode())
    assert status == 200
    csv = pd.DataFrame(rows).to_csv(index=False).encode()
    for body, content_type in ((arrow_body(rows), ARROW), (csv, "text/csv")):
        status, answer = _answer(record.url, "/predict_batch", body, content_type)
        assert status == 200 and answer["label"] == from_json["label"], content_type
        assert np.allclose(answer["churn_probability"], from_json["churn_probability"], rtol=0, atol=1e-12)
    rows[7]["age"] = 140
    status, refused = _answer(record.url, "/predict_batch", arrow_body(rows), ARROW)
    assert status == 400 and refused["detail"][0]["loc"] == [7, "age"]
    status, refused = _answer(record.url, "/predict_batch", b"x", "application/xml")
    assert status == 415 and ARROW in refused["detail"][0]["msg"]
