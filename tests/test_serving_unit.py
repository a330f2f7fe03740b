"""Serving without a server: request contract, compiled inference, inference log, runtime."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from churnops.core.settings import StatePaths
from churnops.data.schema import load_schema
from churnops.data.synthetic import SyntheticSpec, generate_customers
from churnops.data.validation import validate_and_clean
from churnops.modeling.training import CandidateSpec, build_pipeline
from churnops.monitoring.inference_log import read_log_file
from churnops.serving import inference_log
from churnops.serving.compiled import PipelineScorer, batch_frame, compile_pipeline, sample_batch
from churnops.serving.config import ServingConfig
from churnops.serving.contract import RequestContract, RequestError
from churnops.serving.inference_log import InferenceLogWriter
from churnops.serving.packaging import ModelCard, write_model_files
from churnops.serving.pseudonym import CustomerKeyHasher, customer_key, load_salt
from churnops.serving.runtime import ServingRuntime

SCHEMA = load_schema("synthetic")
LOG_COLUMNS = ["request_id", "timestamp", "model_name", "model_version", "customer_key", "probability", "label"]


@pytest.fixture(scope="module")
def training_frame() -> pd.DataFrame:
    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=2500, seed=3)), SCHEMA)
    return cleaned


def fit(frame: pd.DataFrame, estimator: str, **params):
    candidate = CandidateSpec(estimator=estimator, params=params)
    return build_pipeline(SCHEMA, candidate, 42).fit(frame[SCHEMA.feature_names], frame[SCHEMA.target.column])


@pytest.fixture(scope="module")
def logistic(training_frame):
    return fit(training_frame, "sklearn.linear_model.LogisticRegression", max_iter=1000)


def records(rows: int = 50, seed: int = 11) -> list[dict]:
    """Requests as a client sends them: JSON-native values, ints for int features."""
    frame = generate_customers(SyntheticSpec(rows=rows, seed=seed)).drop(columns=[SCHEMA.target.column])
    out = json.loads(frame.to_json(orient="records"))
    for record in out:
        for feature in SCHEMA.numeric:
            if feature.kind == "int" and record[feature.name] is not None:
                record[feature.name] = int(record[feature.name])
    return out


CONTRACT = RequestContract(SCHEMA, max_predict_customers=20, max_batch_rows=100)
GOOD = records(1)[0]


def with_(**changes) -> dict:
    return {**GOOD, **changes}


def without(field: str) -> dict:
    return {k: v for k, v in GOOD.items() if k != field}


# (body bytes, the field the error must name)
BAD_BODIES = {
    "malformed JSON": (b'{"age": 40,', "body"),
    "missing field": (json.dumps(without("tenure_months")).encode(), "tenure_months"),
    "wrong type (string for a number)": (json.dumps(with_(monthly_charges="70")).encode(), "monthly_charges"),
    "wrong type (bool for a number)": (json.dumps(with_(age=True)).encode(), "age"),
    "wrong type (number for a category)": (json.dumps(with_(gender=1)).encode(), "gender"),
    "fraction for a whole-number feature": (json.dumps(with_(support_tickets=2.5)).encode(), "support_tickets"),
    "out of range": (json.dumps(with_(age=140)).encode(), "age"),
    "unknown category": (json.dumps(with_(contract_type="Weekly")).encode(), "contract_type"),
    "unknown field": (json.dumps(with_(favourite_colour="red")).encode(), "favourite_colour"),
    "NaN": (json.dumps(with_(monthly_charges=float("nan"))).encode(), "monthly_charges"),
    "Infinity": (json.dumps(with_(total_charges=float("inf"))).encode(), "total_charges"),
    "overflowing number": (json.dumps(with_(avg_session_minutes=1.5)).encode().replace(b": 1.5", b": 1e999"),
                           "avg_session_minutes"),
}


def named_fields(error: RequestError) -> set[str]:
    return {str(part) for d in error.detail for part in d["loc"]}


@pytest.mark.parametrize("case", sorted(BAD_BODIES))
def test_each_bad_record_is_refused_naming_the_field_by_both_validators(case):
    body, field = BAD_BODIES[case]
    with pytest.raises(RequestError) as single:
        CONTRACT.parse_predict(body)
    assert single.value.status == 400 and field in named_fields(single.value), single.value.body()
    # In a batch, the bad record comes second (a malformed body stays malformed).
    batch_body = b"[" + (body if case == "malformed JSON" else json.dumps(GOOD).encode() + b"," + body + b"]")
    with pytest.raises(RequestError) as batch:
        CONTRACT.parse_batch(batch_body)
    assert batch.value.status == 400 and field in named_fields(batch.value), batch.value.body()
    if case != "malformed JSON":
        # The second record is the bad one, and the error says so.
        assert any(d["loc"][:1] == [1] for d in batch.value.detail), batch.value.body()
    # Every message is a sentence, not a code.
    assert all(len(d["msg"]) > 5 for d in single.value.detail)


@pytest.mark.parametrize("body", [b"[]", b"  [ ]  "])
def test_empty_lists_are_refused(body):
    for parse in (CONTRACT.parse_predict, CONTRACT.parse_batch):
        with pytest.raises(RequestError) as error:
            parse(body)
        assert error.value.status == 400
        assert "at least 1" in json.dumps(error.value.body())


def test_too_many_records_are_refused():
    many = json.dumps([GOOD] * 21).encode()
    with pytest.raises(RequestError) as error:
        CONTRACT.parse_predict(many)
    assert "at most 20" in json.dumps(error.value.body())
    with pytest.raises(RequestError) as error:
        CONTRACT.parse_batch(json.dumps([GOOD] * 101).encode())
    assert "at most 100" in json.dumps(error.value.body())


def test_good_records_parse_identically_in_both_validators():
    batch_records = records(15, seed=5)
    batch_records[3]["age"] = None  # null means unknown: imputed
    batch_records[4]["contract_type"] = "monthly"  # a declared synonym
    batch_records[5]["request_id"] = "caller-5"
    body = json.dumps(batch_records).encode()
    from_pydantic, many = CONTRACT.parse_predict(body)
    from_msgspec = CONTRACT.parse_batch(body)
    assert many
    np.testing.assert_array_equal(from_pydantic.numeric, from_msgspec.numeric)
    np.testing.assert_array_equal(from_pydantic.codes, from_msgspec.codes)
    assert from_pydantic.customer_ids == from_msgspec.customer_ids == [r["customer_id"] for r in batch_records]
    assert from_msgspec.request_ids[5] == "caller-5" and from_msgspec.request_ids[0] is None
    assert np.isnan(from_msgspec.numeric[3, SCHEMA.numeric_names.index("age")])
    contract_column = SCHEMA.categorical_names.index("contract_type")
    assert from_msgspec.codes[4, contract_column] == 0  # Month-to-month
    one, many = CONTRACT.parse_predict(json.dumps(GOOD).encode())
    assert not many and len(one) == 1


def test_openapi_schema_documents_types_ranges_and_categories():
    schema = CONTRACT.predict_schema()
    customer = schema["$defs"]["Customer"]
    age = customer["properties"]["age"]["anyOf"][0]
    assert (age["minimum"], age["maximum"], age["multipleOf"]) == (18, 100, 1)
    assert set(customer["properties"]["gender"]["anyOf"][0]["enum"]) == {"Female", "Male"}
    assert set(SCHEMA.feature_names) <= set(customer["required"])
    assert customer["additionalProperties"] is False


# ------------------------------------------------------------------------------ compiled scoring

ESTIMATORS = {
    "logistic": ("sklearn.linear_model.LogisticRegression", {"max_iter": 1000}, "compiled LogisticRegression"),
    "forest": ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 30, "max_depth": 6},
               "compiled RandomForestClassifier (trees)"),
    "hist_gradient_boosting": ("sklearn.ensemble.HistGradientBoostingClassifier", {"max_iter": 40},
                               "compiled HistGradientBoostingClassifier"),
    "other estimator": ("sklearn.neighbors.KNeighborsClassifier", {"n_neighbors": 15},
                        "compiled KNeighborsClassifier (estimator.predict_proba)"),
}


@pytest.mark.parametrize("name", sorted(ESTIMATORS))
def test_compiled_scorer_matches_the_pipeline(training_frame, name):
    estimator, params, expected_path = ESTIMATORS[name]
    pipeline = fit(training_frame, estimator, **params)
    scorer = compile_pipeline(pipeline, SCHEMA)
    assert scorer.path.startswith(expected_path), scorer.path
    for batch in (CONTRACT.parse_batch(json.dumps(records(100, seed=8)).encode()), sample_batch(SCHEMA, 300, seed=4)):
        expected = pipeline.predict_proba(batch_frame(batch, SCHEMA))[:, 1]
        np.testing.assert_allclose(scorer(batch), expected, rtol=0, atol=1e-9)
    one, _ = CONTRACT.parse_predict(json.dumps(GOOD).encode())
    assert scorer(one)[0] == pytest.approx(pipeline.predict_proba(batch_frame(one, SCHEMA))[0, 1], abs=1e-9)


def test_unsupported_preprocessing_falls_back_to_the_plain_pipeline(training_frame):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder

    numeric = Pipeline([("impute", SimpleImputer()), ("scale", MinMaxScaler())])
    categorical = Pipeline([("impute", SimpleImputer(strategy="most_frequent")),
                            ("encode", OneHotEncoder(handle_unknown="ignore"))])
    preprocess = ColumnTransformer([("numeric", numeric, SCHEMA.numeric_names),
                                    ("categorical", categorical, SCHEMA.categorical_names)])
    pipeline = Pipeline([("preprocess", preprocess), ("model", LogisticRegression(max_iter=500))])
    pipeline.fit(training_frame[SCHEMA.feature_names], training_frame[SCHEMA.target.column])
    scorer = compile_pipeline(pipeline, SCHEMA)
    assert isinstance(scorer, PipelineScorer) and "MinMaxScaler" in scorer.path
    batch = CONTRACT.parse_batch(json.dumps(records(30, seed=9)).encode())
    np.testing.assert_allclose(scorer(batch), pipeline.predict_proba(batch_frame(batch, SCHEMA))[:, 1])


# ----------------------------------------------------------------------------- inference log


def read_log(directory: Path) -> pd.DataFrame:
    """Every logged row in file order, row ids put together as docs/contracts.md says."""
    files = sorted(directory.glob("date=*/*.arrow"), key=lambda f: (f.parent.name, f.name))
    return pa.concat_tables([read_log_file(f) for f in files]).to_pandas()


def test_inference_log_keeps_every_record_under_concurrent_appends(tmp_path):
    salt = b"test-salt"
    writer = InferenceLogWriter(tmp_path / "log", SCHEMA, "churn_classifier", "7", salt,
                                flush_rows=500, flush_seconds=0.05)
    base = CONTRACT.parse_batch(json.dumps(records(10, seed=2)).encode())

    def client(worker: int) -> None:
        for i in range(150):
            ids = [f"w{worker}-r{i}-{j}" for j in range(len(base))]
            writer.append(base, ids, np.linspace(0, 1, len(base)), np.arange(len(base)) % 2)

    threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.close()
    frame = read_log(tmp_path / "log")
    assert len(frame) == 8 * 150 * 10 == writer.stats.rows_written
    assert frame["request_id"].is_unique
    assert list(frame.columns[:7]) == LOG_COLUMNS
    assert set(SCHEMA.feature_names) <= set(frame.columns)
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert frame["label"].dtype == np.int64 and frame["probability"].dtype == np.float64
    expected_key = reference_customer_key(base.customer_ids[0], salt)
    first = frame[frame["request_id"] == "w0-r0-0"].iloc[0]
    assert first["customer_key"] == expected_key == customer_key(base.customer_ids[0], salt)
    assert base.customer_ids[0] not in set(frame["customer_key"])
    assert first["contract_type"] in SCHEMA.categorical[1].categories
    files = list((tmp_path / "log").glob("date=*/*.arrow"))
    assert files and not list((tmp_path / "log").rglob(".*.tmp"))


def test_inference_log_keeps_row_order_and_ids_across_buffer_growth_and_reuse(tmp_path, monkeypatch):
    # Buffers start at 4 rows, so appends grow them; each flush hands a buffer back for reuse.
    monkeypatch.setattr(inference_log, "KEY_SLICE", 5)  # customer keys hashed in several slices
    writer = InferenceLogWriter(tmp_path / "log", SCHEMA, "m", "1", b"salt", flush_rows=4, flush_seconds=3600)
    sample = records(6, seed=5)
    expected: list[str] = []
    for n in range(3):
        sample[1]["request_id"], sample[4]["request_id"] = f"own{n}-1", f"own{n}-4"
        batch = CONTRACT.parse_batch(json.dumps(sample).encode())
        writer.append(batch, [f"e{n}-{i}" for i in range(6)], np.full(6, 0.1), np.zeros(6, dtype=np.int64))
        writer.append(batch, None, np.linspace(0, 1, 6), np.ones(6, dtype=np.int64), base_id=f"b{n}")
        expected += [f"e{n}-{i}" for i in range(6)]
        expected += [f"b{n}-0", f"own{n}-1", f"b{n}-2", f"b{n}-3", f"own{n}-4", f"b{n}-5"]
        assert writer.flush(timeout=20)
    writer.close()
    frame = read_log(tmp_path / "log")
    assert frame["request_id"].tolist() == expected and writer.stats.rows_written == 36
    # On disk (docs/contracts.md): a derived id is its request's id plus the record's position.
    raw_ids, raw_rows = [], []
    for path in sorted((tmp_path / "log").glob("date=*/*.arrow")):
        with pa.OSFile(str(path)) as source:
            raw = pa.ipc.open_file(source).read_all()
        raw_ids += raw["request_id"].to_pylist()
        raw_rows += raw["request_row"].to_pylist()
    assert raw_ids[5:8] == ["e0-5", "b0", "own0-1"] and raw_rows[5:8] == [None, 0, None]
    by_id = frame.set_index("request_id")
    assert by_id.loc["own2-4", "probability"] == pytest.approx(0.8) and by_id.loc["own2-4", "label"] == 1
    assert by_id.loc["b2-5", "age"] == sample[5]["age"]
    assert by_id.loc["e0-0", "customer_key"] == reference_customer_key(sample[0]["customer_id"], b"salt")
    assert by_id.loc["b2-5", "customer_key"] == reference_customer_key(sample[5]["customer_id"], b"salt")


def test_inference_log_writes_pending_rows_on_close(tmp_path):
    writer = InferenceLogWriter(tmp_path / "log", SCHEMA, "m", "1", None, flush_rows=10**6, flush_seconds=3600)
    batch = CONTRACT.parse_batch(json.dumps(records(5)).encode())
    writer.append(batch, [f"r{i}" for i in range(5)], np.full(5, 0.3), np.zeros(5, dtype=np.int64))
    assert not list((tmp_path / "log").rglob("*.arrow"))
    writer.close()
    frame = read_log(tmp_path / "log")
    assert sorted(frame["request_id"]) == [f"r{i}" for i in range(5)]
    assert frame["customer_key"].isna().all()  # no salt given: nothing derived from the id


def test_inference_log_retries_a_failed_write_without_losing_rows(tmp_path):
    directory = tmp_path / "log"
    writer = InferenceLogWriter(directory, SCHEMA, "m", "1", None, flush_rows=1, flush_seconds=0.01)
    today = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    blocker = directory / f"date={today}"
    blocker.write_text("a file where the day's folder should be")  # every write now fails
    batch = CONTRACT.parse_batch(json.dumps(records(3)).encode())
    writer.append(batch, ["a", "b", "c"], np.full(3, 0.5), np.ones(3, dtype=np.int64))
    deadline = pd.Timestamp.now() + pd.Timedelta(seconds=10)
    while writer.stats.write_errors == 0 and pd.Timestamp.now() < deadline:
        threading.Event().wait(0.02)
    assert writer.stats.write_errors >= 1 and writer.stats.rows_written == 0
    blocker.unlink()
    assert writer.flush(timeout=20)
    writer.close()
    assert sorted(read_log(directory)["request_id"]) == ["a", "b", "c"]


def siphash24(key: bytes, message: bytes) -> int:
    """SipHash-2-4 as specified by Aumasson and Bernstein (2012), written out for the tests."""
    mask = 2**64 - 1

    def rotl(x: int, b: int) -> int:
        return ((x << b) | (x >> (64 - b))) & mask

    k0, k1 = int.from_bytes(key[:8], "little"), int.from_bytes(key[8:], "little")
    v = [k0 ^ 0x736F6D6570736575, k1 ^ 0x646F72616E646F6D, k0 ^ 0x6C7967656E657261, k1 ^ 0x7465646279746573]

    def rounds(count: int) -> None:
        for _ in range(count):
            v[0] = (v[0] + v[1]) & mask; v[1] = rotl(v[1], 13) ^ v[0]; v[0] = rotl(v[0], 32)  # noqa: E702
            v[2] = (v[2] + v[3]) & mask; v[3] = rotl(v[3], 16) ^ v[2]  # noqa: E702
            v[0] = (v[0] + v[3]) & mask; v[3] = rotl(v[3], 21) ^ v[0]  # noqa: E702
            v[2] = (v[2] + v[1]) & mask; v[1] = rotl(v[1], 17) ^ v[2]; v[2] = rotl(v[2], 32)  # noqa: E702

    tail = len(message) % 8
    blocks = [int.from_bytes(message[i:i + 8], "little") for i in range(0, len(message) - tail, 8)]
    blocks.append(int.from_bytes(message[len(message) - tail:], "little") | ((len(message) & 0xFF) << 56))
    for block in blocks:
        v[3] ^= block
        rounds(2)
        v[0] ^= block
    v[2] ^= 0xFF
    rounds(4)
    return v[0] ^ v[1] ^ v[2] ^ v[3]


def pandas_mix(x: int) -> int:
    """The bijective 64-bit finaliser pandas.util.hash_array applies after SipHash."""
    mask = 2**64 - 1
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & mask
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & mask
    return x ^ (x >> 31)


def reference_customer_key(customer_id: str, salt: bytes) -> str:
    """docs/contracts.md's definition of customer_key, computed without pandas."""
    key = bytes(b & 0x7F for b in hashlib.sha256(b"churnops customer key\0" + salt).digest()[:16])
    return f"{pandas_mix(siphash24(key, customer_id.encode())):016x}"


def test_customer_keys_are_siphash_2_4_as_documented():
    # The reference implementation reproduces the SipHash paper's test vectors (key 00..0f).
    key = bytes(range(16))
    assert siphash24(key, b"") == 0x726FDB47DD0E0E31
    assert siphash24(key, bytes(range(15))) == 0xA129CA6149BE45E5
    # pandas computes exactly that (plus its finaliser), so keys stay stable across upgrades.
    messages = [bytes(range(n)) for n in range(40)]
    hashed = pd.util.hash_array(np.array(messages, dtype=object), hash_key=key.decode(), categorize=False)
    assert hashed.tolist() == [pandas_mix(siphash24(key, m)) for m in messages]
    ids = ["C-000123", "C0099-0000001", "kunde-ä-42", "x" * 128, "", None]
    keys = CustomerKeyHasher(b"salt").keys(ids).to_pylist()
    assert keys[:-1] == [reference_customer_key(i, b"salt") for i in ids[:-1]] and keys[-1] is None
    assert all(len(k) == 16 for k in keys[:-1]) and len(set(keys[:-1])) == 5
    assert customer_key("C-000123", b"other salt") != keys[0]


def test_salt_comes_from_the_environment_or_a_private_file(tmp_path, monkeypatch):
    paths = StatePaths(tmp_path)
    monkeypatch.delenv("CHURNOPS_CUSTOMER_SALT", raising=False)
    first = load_salt(paths)
    salt_file = tmp_path / "secrets" / "customer_salt"
    assert salt_file.is_file() and stat.S_IMODE(os.stat(salt_file).st_mode) == 0o600
    assert load_salt(paths) == first and len(first) == 64
    monkeypatch.setenv("CHURNOPS_CUSTOMER_SALT", "from-env")
    assert load_salt(paths) == b"from-env"
    assert customer_key("C1", b"from-env") != customer_key("C1", first)


# ------------------------------------------------------------------------------------ runtime


@pytest.fixture
def runtime(tmp_path, logistic):
    folder = tmp_path / "model"
    folder.mkdir()
    card = ModelCard(model_name="churn_classifier", model_version="3", stage="production", threshold=0.4,
                     metrics={"f1": 0.6, "roc_auc": 0.8}, dataset="synthetic")
    write_model_files(folder, logistic, SCHEMA, card)
    config = ServingConfig.model_validate({"inference_log": {"flush_seconds": 0.05},
                                           "limits": {"max_predict_customers": 20, "max_batch_rows": 500}})
    serving = ServingRuntime(folder, "churn_classifier:test", config, StatePaths(tmp_path / "home"))
    yield serving
    serving.close()


def test_runtime_answers_single_list_json_batch_and_csv_batch(runtime, logistic):
    sample = records(12, seed=21)
    expected = logistic.predict_proba(pd.DataFrame(sample)[SCHEMA.feature_names].astype(
        {n: float for n in SCHEMA.numeric_names}))[:, 1]

    single = json.loads(runtime.predict(json.dumps(sample[0]).encode(), "req-1").body)
    assert single["request_id"] == "req-1" and single["model_version"] == "3" and single["threshold"] == 0.4
    assert single["churn_probability"] == pytest.approx(expected[0], abs=1e-12)
    assert single["label"] == int(expected[0] >= 0.4)

    listed = json.loads(runtime.predict(json.dumps(sample).encode(), "req-2").body)
    assert [p["request_id"] for p in listed] == [f"req-2-{i}" for i in range(12)]
    np.testing.assert_allclose([p["churn_probability"] for p in listed], expected, atol=1e-12)

    sample[2]["request_id"] = "own-2"
    batch = json.loads(runtime.predict_batch(json.dumps(sample).encode(), "application/json", None).body)
    assert batch["rows"] == 12 and len(batch["request_id"]) == 32
    np.testing.assert_allclose(batch["churn_probability"], expected, atol=1e-12)
    assert batch["label"] == [int(p >= 0.4) for p in expected]

    csv = pd.DataFrame(sample).drop(columns=["request_id"]).to_csv(index=False).encode()
    from_csv = json.loads(runtime.predict_batch(csv, "text/csv", "csv-1").body)
    np.testing.assert_allclose(from_csv["churn_probability"], expected, atol=1e-12)
    assert from_csv["request_id"] == "csv-1"

    runtime.log.flush()
    logged = read_log(runtime.log_directory)
    assert len(logged) == 1 + 12 + 12 + 12 and logged["request_id"].is_unique
    # Batch rows: the record's own id, else <request id>-<row>.
    assert {"req-1", "req-2-11", "csv-1-0", "csv-1-11", "own-2", f"{batch['request_id']}-3"} <= set(
        logged["request_id"])
    assert f"{batch['request_id']}-2" not in set(logged["request_id"])


def test_runtime_refuses_bad_csv_naming_the_column(runtime):
    good = pd.DataFrame(records(3))
    cases = {
        "tenure_months": good.drop(columns=["tenure_months"]),
        "monthly_charges": good.astype({"monthly_charges": object}).assign(monthly_charges=["70", "abc", "1"]),
        "total_charges": good.astype({"total_charges": object}).assign(total_charges=["1", "inf", "2"]),
        "gender": good.assign(gender=["Male", "Robot", "Female"]),
        "favourite_colour": good.assign(favourite_colour="red"),
    }
    for field, frame in cases.items():
        with pytest.raises(RequestError) as error:
            runtime.predict_batch(frame.to_csv(index=False).encode(), "text/csv", None)
        assert error.value.status == 400 and field in json.dumps(error.value.body()), (field, error.value.body())
    with pytest.raises(RequestError) as error:
        runtime.predict_batch(good.head(0).to_csv(index=False).encode(), "text/csv", None)
    assert error.value.status == 400


def test_runtime_refuses_unsupported_media_and_bad_request_ids(runtime):
    with pytest.raises(RequestError) as error:
        runtime.predict_batch(b"<xml/>", "application/xml", None)
    assert error.value.status == 415
    with pytest.raises(RequestError) as error:
        runtime.predict(json.dumps(GOOD).encode(), "x" * 500)
    assert error.value.status == 400 and "x-request-id" in json.dumps(error.value.body())


def test_model_info_describes_the_model(runtime):
    info = runtime.model_info()
    assert (info.model_version, info.stage, info.threshold) == ("3", "production", 0.4)
    assert set(info.features) == set(SCHEMA.feature_names)
    assert info.inference_path.startswith("compiled LogisticRegression")


def test_monitoring_reads_what_the_service_writes(tmp_path):
    from churnops.monitoring.inference_log import WindowSpec, conform_features, read_window

    writer = InferenceLogWriter(tmp_path / "log", SCHEMA, "churn_classifier", "4", b"s", flush_seconds=0.05)
    sample = records(30, seed=17)
    sample[0]["age"], sample[1]["gender"] = None, None
    batch = CONTRACT.parse_batch(json.dumps(sample).encode())
    writer.append(batch, None, np.linspace(0, 1, 30), (np.arange(30) % 2).astype(np.int64), base_id="req")
    writer.close()
    frame, summary = read_window(tmp_path / "log", WindowSpec(last=100))
    assert len(frame) == 30 and summary.rows_malformed == 0 and summary.files_skipped == 0
    assert summary.model_versions == {"4": 30}
    assert list(frame["request_id"]) == [f"req-{i}" for i in range(30)]
    features, check = conform_features(frame, SCHEMA)
    assert not check.issues, check.issues
    assert np.isnan(features.loc[0, "age"]) and pd.isna(features.loc[1, "gender"])
    assert list(features["contract_type"].astype(str)[2:5]) == [r["contract_type"] for r in sample[2:5]]


def test_inference_log_splits_rows_at_utc_midnight(tmp_path):
    writer = InferenceLogWriter(tmp_path / "log", SCHEMA, "m", "1", None, flush_rows=10**6, flush_seconds=3600)
    batch = CONTRACT.parse_batch(json.dumps(records(2)).encode())
    before = int(pd.Timestamp("2026-03-01T23:59:59.5", tz="UTC").value)
    after = int(pd.Timestamp("2026-03-02T00:00:00.5", tz="UTC").value)
    writer.append(batch, ["a", "b"], np.full(2, 0.2), np.zeros(2, dtype=np.int64), timestamp_ns=before)
    writer.append(batch, ["c", "d"], np.full(2, 0.9), np.ones(2, dtype=np.int64), timestamp_ns=after)
    writer.close()
    days = {p.name: sorted(id for f in p.iterdir() for id in read_log_file(f)["request_id"].to_pylist())
            for p in (tmp_path / "log").iterdir()}
    assert days == {"date=2026-03-01": ["a", "b"], "date=2026-03-02": ["c", "d"]}
