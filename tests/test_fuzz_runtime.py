"""Every malformed request is a 4xx, in-process: hypothesis drives ServingRuntime with JSON and
CSV bodies and X-Request-ID headers, and each answer must be a result or a RequestError with a
4xx status, never another exception (which the service would turn into a 500).

The schema-driven fuzz of the running service is tests/test_fuzz_service.py; CSV bodies are not
in the OpenAPI document (it has one media type per endpoint), so they are fuzzed here.
"""

from __future__ import annotations

import csv
import io
import json
import typing as t

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnops.core.settings import StatePaths
from churnops.data.synthetic import SyntheticSpec, generate_customers
from churnops.data.validation import validate_and_clean
from churnops.serving.config import ServingConfig
from churnops.serving.contract import REQUEST_ID_FIELD, RequestError
from churnops.serving.packaging import ModelCard, write_model_files
from churnops.serving.runtime import Answer, ServingRuntime
from tests.test_serving_unit import GOOD, SCHEMA, fit

MAX_CUSTOMERS, MAX_ROWS = 5, 20
# No example database: nothing is written into the working tree, and runs are reproducible.
FUZZ = settings(max_examples=300, deadline=None, database=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
FIELDS = [*SCHEMA.numeric_names, *SCHEMA.categorical_names, SCHEMA.id_column, REQUEST_ID_FIELD]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory) -> t.Iterator[ServingRuntime]:
    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=1000, seed=3)), SCHEMA)
    logistic = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=1000)
    folder = tmp_path_factory.mktemp("model")
    card = ModelCard(model_name="churn_classifier", model_version="1", stage="production", threshold=0.4,
                     metrics={"f1": 0.6}, dataset="synthetic")
    write_model_files(folder, logistic, SCHEMA, card)
    config = ServingConfig.model_validate({"inference_log": {"flush_seconds": 0.05}, "limits": {
        "max_predict_customers": MAX_CUSTOMERS, "max_batch_rows": MAX_ROWS}})
    serving = ServingRuntime(folder, "churn_classifier:fuzz", config, StatePaths(tmp_path_factory.mktemp("home")))
    yield serving
    serving.close()


def answered_or_refused(call: t.Callable[[], Answer]) -> int:
    """200 for an answer, the status for a refusal; anything else fails the test."""
    try:
        call()
    except RequestError as error:
        assert 400 <= error.status < 500, error.body()
        assert error.message and json.dumps(error.body())
        return error.status
    return 200


# ----------------------------------------------------------------------------------- strategies

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
good_values = st.sampled_from(sorted({json.dumps(v) for v in GOOD.values()})).map(json.loads)


@st.composite
def customer_records(draw: st.DrawFn) -> dict[str, t.Any]:
    """A mostly valid record: some fields dropped, some replaced, some added."""
    record = dict(GOOD)
    for name in draw(st.lists(st.sampled_from(FIELDS), max_size=3)):
        record.pop(name, None)
    for name in draw(st.lists(st.sampled_from(FIELDS) | st.text(max_size=8), max_size=3)):
        record[name] = draw(json_values | good_values)
    return record


def json_bodies() -> st.SearchStrategy[bytes]:
    documents = st.one_of(customer_records(), st.lists(customer_records(), max_size=MAX_ROWS + 2), json_values)
    encoded = documents.map(lambda d: json.dumps(d).encode())
    # Byte-level damage: truncation, stray bytes, invalid UTF-8.
    damaged = st.tuples(encoded, st.integers(0, 400), st.binary(max_size=4)).map(
        lambda c: c[0][:c[1]] + c[2] + c[0][c[1]:])
    return st.one_of(encoded, damaged, st.binary(max_size=64))


cells = st.one_of(good_values.map(str), st.text(max_size=12), st.just(""), st.sampled_from(
    ["nan", "inf", "-inf", "1e999", "-0", "0x10", " 26", "26.5", "None", "null", '"', "\n", "1,2"]))


@st.composite
def csv_bodies(draw: st.DrawFn) -> bytes:
    """A header drawn from the schema's fields (repeats and strangers allowed), rows of cells."""
    header = draw(st.lists(st.sampled_from(FIELDS) | st.text(max_size=8), min_size=1, max_size=len(FIELDS) + 2))
    if draw(st.booleans()):
        header = [*FIELDS, *header[:2]]
    rows = draw(st.lists(st.lists(cells, min_size=len(header) - 1, max_size=len(header) + 1), max_size=MAX_ROWS + 2))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n"])))
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode(draw(st.sampled_from(["utf-8", "utf-16", "latin-1"])), "replace")


request_ids = st.one_of(st.none(), st.text(max_size=140), st.text(alphabet=st.characters(max_codepoint=255)))


# The exact /predict_batch requests the fuzzing found answered 500, with the field the refusal
# must name: (Content-Type, body, field).
FOUND_BY_FUZZING = {
    # msgspec raises UnicodeDecodeError (not DecodeError) for invalid UTF-8 in an object key.
    "invalid UTF-8 in a JSON key": ("application/json", b'[{"\x80a": 1}]', "body"),
    # Arrow keeps repeated column names, then refuses to look the column up (KeyError).
    "repeated numeric CSV column": ("text/csv", b"age,age\n30,31\n", "age"),
    # Arrow decodes column names only when asked for them (UnicodeDecodeError).
    "invalid UTF-8 in a CSV header": ("text/csv", b"\x80\n1\n", "body"),
    # Answered 200 with the last of the two values: as ambiguous as the numeric case.
    "repeated text CSV column": ("text/csv", (",".join([*GOOD, "customer_id"]) + "\n"
                                              + ",".join(map(str, [*GOOD.values(), "C-2"])) + "\n").encode(),
                                 "customer_id"),
}


# ----------------------------------------------------------------------------------------- tests


@pytest.mark.parametrize("case", sorted(FOUND_BY_FUZZING))
def test_requests_found_by_fuzzing_are_refused_naming_the_problem(runtime, case):
    content_type, body, field = FOUND_BY_FUZZING[case]
    with pytest.raises(RequestError) as error:
        runtime.predict_batch(body, content_type, None)
    assert error.value.status == 400, error.value.body()
    assert field in {str(part) for d in error.value.detail for part in d["loc"]}, error.value.body()
    assert all(len(d["msg"]) > 5 for d in error.value.detail), error.value.body()



@FUZZ
@given(body=json_bodies(), request_id=request_ids)
def test_predict_answers_or_refuses_with_a_4xx(runtime, body, request_id):
    answered_or_refused(lambda: runtime.predict(body, request_id))


@FUZZ
@given(body=json_bodies(), request_id=request_ids)
def test_json_batch_answers_or_refuses_with_a_4xx(runtime, body, request_id):
    answered_or_refused(lambda: runtime.predict_batch(body, "application/json", request_id))


@FUZZ
@given(body=csv_bodies() | st.binary(max_size=64))
def test_csv_batch_answers_or_refuses_with_a_4xx(runtime, body):
    answered_or_refused(lambda: runtime.predict_batch(body, "text/csv", None))
