"""Batch inference, function by function: loading parts, validation errors, skip counts, drift,
ranking and decisions, writing the list, and nothing written when anything fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from churnops.batch.drift import DriftPolicy, batch_drift
from churnops.batch.errors import BatchDataError, BatchInputError, BatchValidationError
from churnops.batch.inputs import iter_file_chunks, open_batch, write_synthetic_batch
from churnops.batch.output import CSV_NAME, PARQUET_DIR, publish, ranks
from churnops.batch.scoring import PROBABILITY, Model, ScoredBatch, score_batch
from churnops.batch.validation import validate_batch
from churnops.data.profile import build_reference_profile
from churnops.data.schema import load_schema
from churnops.data.synthetic import DriftSpec, SyntheticSpec, generate_customers
from churnops.data.validation import validate_and_clean
from churnops.modeling.training import CandidateSpec, build_pipeline
from churnops.monitoring.drift import detect_data_drift

SCHEMA = load_schema("synthetic")
TARGETING = {"offer_cost": 20.0, "acceptance_rate": 0.3}


def customers(rows: int = 1000, seed: int = 5, **drift: float) -> pd.DataFrame:
    frame = generate_customers(SyntheticSpec(rows=rows, seed=seed, drift=DriftSpec(**drift)))
    return frame.drop(columns=[SCHEMA.target.column])


@pytest.fixture(scope="module")
def training_frame() -> pd.DataFrame:
    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=3000, seed=3)), SCHEMA)
    return cleaned


@pytest.fixture(scope="module")
def model(training_frame: pd.DataFrame) -> Model:
    candidate = CandidateSpec(estimator="sklearn.linear_model.LogisticRegression", params={"max_iter": 1000})
    pipeline = build_pipeline(SCHEMA, candidate, 42).fit(training_frame[SCHEMA.feature_names],
                                                         training_frame[SCHEMA.target.column])
    return Model.build(pipeline, SCHEMA, reasons=True)


def targeting(**changes: object):
    from churnops.modeling.targeting import TargetingConfig

    return TargetingConfig.model_validate({**TARGETING, **changes})


# ----------------------------------------------------------------------------------------- loading


def test_a_folder_of_parquet_parts_is_read_in_chunks_of_at_most_chunk_rows(tmp_path: Path) -> None:
    folder = write_synthetic_batch(tmp_path / "in", rows=2500, seed=7, schema=SCHEMA, part_rows=1000)
    (folder / ".hidden.parquet").write_bytes(b"not read: dot-names are skipped")
    batch = open_batch(folder, SCHEMA)
    assert [Path(f).name for f in batch.files] == ["part-00000.parquet", "part-00001.parquet", "part-00002.parquet"]
    assert batch.rows == 2500 and batch.format == "parquet"
    sizes = [len(c) for f in batch.files for c in iter_file_chunks(f, "parquet", SCHEMA, chunk_rows=300)]
    assert sum(sizes) == 2500 and max(sizes) == 300
    chunk = next(iter_file_chunks(batch.files[0], "parquet", SCHEMA, chunk_rows=300))
    assert list(chunk.columns) == [SCHEMA.id_column, *SCHEMA.feature_names]  # no target, nothing extra


def test_csv_and_parquet_inputs_give_the_same_cleaned_rows(tmp_path: Path) -> None:
    frame = customers(400)
    frame.to_csv(tmp_path / "batch.csv", index=False)
    frame.to_parquet(tmp_path / "batch.parquet", index=False)
    cleaned = {}
    for name in ("batch.csv", "batch.parquet"):
        clean, report = validate_batch(open_batch(tmp_path / name, SCHEMA), SCHEMA, "fail", tmp_path / f"clean-{name}",
                                       chunk_rows=150)
        assert report.rows_valid == 400 and len(clean.parts) == 3
        cleaned[name] = pa.concat_tables([pa.ipc.open_file(p).read_all() for p in clean.parts]).to_pandas()
    pd.testing.assert_frame_equal(cleaned["batch.csv"], cleaned["batch.parquet"])


def _parquet(path: Path, frame: pd.DataFrame) -> Path:
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    return path


@pytest.mark.parametrize(("case", "column", "message"), [
    ("missing column", "tenure_months", "required column is missing"),
    ("wrong type", "monthly_charges", "wrong type bool"),
    ("unknown id type", "customer_id", "unknown customer id type double"),
    ("empty file", None, "the file is empty"),
    ("header only", None, "header but no rows"),
    ("no rows", None, "holds no rows"),
])
def test_bad_input_names_the_file_and_the_column(tmp_path: Path, case: str, column: str | None,
                                                 message: str) -> None:
    frame = customers(50)
    if case == "missing column":
        path = tmp_path / "batch.csv"
        frame.drop(columns=[column]).to_csv(path, index=False)
    elif case == "wrong type":
        path = _parquet(tmp_path / "batch.parquet", frame.assign(monthly_charges=frame["monthly_charges"] > 50))
    elif case == "unknown id type":
        path = _parquet(tmp_path / "batch.parquet", frame.assign(customer_id=np.arange(50) + 0.5))
    elif case == "empty file":
        path = tmp_path / "batch.csv"
        path.write_bytes(b"")
    elif case == "header only":
        path = tmp_path / "batch.csv"
        frame.head(0).to_csv(path, index=False)
    else:
        path = _parquet(tmp_path / "batch.parquet", frame.head(0))
    with pytest.raises(BatchInputError) as caught:
        open_batch(path, SCHEMA)
    assert str(path) in str(caught.value) and message in str(caught.value)
    assert caught.value.column == column
    if column:
        assert f"column '{column}'" in str(caught.value)


def test_an_integer_customer_id_is_accepted_as_text(tmp_path: Path) -> None:
    frame = customers(30).assign(customer_id=np.arange(30))
    path = _parquet(tmp_path / "ids.parquet", frame)
    clean, _ = validate_batch(open_batch(path, SCHEMA), SCHEMA, "fail", tmp_path / "clean")
    ids = pa.ipc.open_file(clean.parts[0]).read_all().column("customer_id").to_pylist()
    assert ids[:3] == ["0", "1", "2"]


def test_a_folder_without_data_files_or_mixing_formats_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BatchInputError, match=r"holds no \.csv or \.parquet"):
        open_batch(tmp_path, SCHEMA)
    customers(10).to_csv(tmp_path / "a.csv", index=False)
    customers(10).to_parquet(tmp_path / "b.parquet", index=False)
    with pytest.raises(BatchInputError, match="mixes CSV and Parquet"):
        open_batch(tmp_path, SCHEMA)
    with pytest.raises(BatchInputError, match="no such file"):
        open_batch(tmp_path / "absent.csv", SCHEMA)


# -------------------------------------------------------------------------------------- validation


def test_invalid_rows_fail_with_training_s_per_rule_message_naming_file_rows_and_column(tmp_path: Path) -> None:
    frame = customers(600)
    frame.loc[10:14, "contract_type"] = "Lifetime"
    frame.to_csv(tmp_path / "batch.csv", index=False)
    with pytest.raises(BatchValidationError) as caught:
        validate_batch(open_batch(tmp_path / "batch.csv", SCHEMA), SCHEMA, "fail", tmp_path / "clean",
                       chunk_rows=250)
    message = str(caught.value)
    assert f"{tmp_path / 'batch.csv'} (rows 1-250)" in message
    assert "column 'contract_type': rule 'allowed_categories' violated: observed 5 values outside the domain" in message
    assert "target" not in message and "churned" not in message  # the batch has no target


def test_skip_drops_and_counts_bad_rows_by_column_and_rule(tmp_path: Path) -> None:
    frame = customers(1000)
    frame.loc[0:4, "contract_type"] = "Lifetime"              # 5 outside the domain
    frame.loc[5:7, "customer_id"] = None                      # 3 without an id
    frame.loc[8:9, "customer_id"] = frame.loc[20, "customer_id"]  # 2 duplicates of row 20
    frame["total_charges"] = frame["total_charges"].astype(object)
    frame.loc[30:49, "total_charges"] = "n/a"                 # 20 unparseable: 2% > 1% allowed
    frame.to_csv(tmp_path / "batch.csv", index=False)
    clean, report = validate_batch(open_batch(tmp_path / "batch.csv", SCHEMA), SCHEMA, "skip", tmp_path / "clean")
    assert report.skipped_by_rule() == {"contract_type: allowed_categories": 5, "customer_id: id_present": 3,
                                        "customer_id: duplicate_id": 2, "total_charges: numeric_type": 20}
    assert report.rows_in == 1000 and report.rows_skipped == 30 and report.rows_valid == clean.rows == 970
    kept = pa.ipc.open_file(clean.parts[0]).read_all().to_pandas()
    assert kept["customer_id"].notna().all() and kept["customer_id"].is_unique
    assert set(kept["contract_type"].dropna()) <= set(SCHEMA.categorical[1].categories)


def test_missing_rates_are_judged_over_the_whole_batch(tmp_path: Path) -> None:
    frame = customers(1000)
    frame.loc[:199, "age"] = None  # 20% > max_missing 5%, all in the first chunk
    frame.to_parquet(tmp_path / "batch.parquet", index=False)
    with pytest.raises(BatchValidationError, match=r"column 'age': rule 'max_missing_rate' violated: observed 0\.2000"):
        validate_batch(open_batch(tmp_path / "batch.parquet", SCHEMA), SCHEMA, "skip", tmp_path / "clean",
                       chunk_rows=400)


# ------------------------------------------------------------------------------------------- drift


def test_streaming_drift_matches_monitoring_on_the_same_rows(tmp_path: Path, training_frame: pd.DataFrame) -> None:
    profile = build_reference_profile(training_frame, SCHEMA)
    drifted = customers(3000, severity=1.5)
    drifted.to_parquet(tmp_path / "batch.parquet", index=False)
    clean, _ = validate_batch(open_batch(tmp_path / "batch.parquet", SCHEMA), SCHEMA, "fail", tmp_path / "clean",
                              chunk_rows=700)
    streamed = batch_drift(clean, profile, SCHEMA, DriftPolicy(severe_share=0.25))
    cleaned = pa.concat_tables([pa.ipc.open_file(p).read_all() for p in clean.parts]).to_pandas()
    cleaned[SCHEMA.categorical_names] = cleaned[SCHEMA.categorical_names].astype(object)
    whole = detect_data_drift(cleaned, profile, SCHEMA, streamed.policy.thresholds)
    assert streamed.result.drifted_features == whole.drifted_features and whole.drifted_features
    for mine, theirs in zip(streamed.result.features, whole.features, strict=True):
        assert mine.reasons == theirs.reasons
        assert mine.psi == pytest.approx(theirs.psi, abs=1e-9) if theirs.psi is not None else mine.psi is None
    assert streamed.verdict == "severe"


# ------------------------------------------------------------------------------ ranking and deciding


def _scored(probabilities: list[float], gains: list[float]) -> ScoredBatch:
    return ScoredBatch(parts=[], probabilities=np.array(probabilities), net_gain=np.array(gains), top_k=0,
                       scorer_path="hand-made", reasons_method=None)


def test_ranks_follow_expected_net_gain_and_each_policy_cuts_the_list() -> None:
    scored = _scored([0.9, 0.2, 0.6, 0.6, 0.05], [50.0, -5.0, 80.0, 80.0, -19.0])
    rank, mask = ranks(scored, targeting(decision="value"), f1_threshold=0.5, value_threshold=0.15)
    assert rank.tolist() == [3, 4, 1, 2, 5]  # ties by probability, then position
    assert mask.tolist() == [True, True, True, True, False]
    _, f1 = ranks(scored, targeting(decision="f1"), f1_threshold=0.5, value_threshold=0.15)
    assert f1.tolist() == [True, False, True, True, False]
    _, budget = ranks(scored, targeting(decision="budget", max_contacts=2), f1_threshold=0.5, value_threshold=0.15)
    assert budget.tolist() == [False, False, True, True, False]
    _, spend = ranks(scored, targeting(decision="budget", max_spend=100.0), f1_threshold=0.5, value_threshold=0.15)
    assert spend.tolist() == [True, False, True, True, False]  # 5 contacts affordable, only 3 gain


# --------------------------------------------------------------------------------------- writing


@pytest.fixture
def scored_batch(tmp_path: Path, model: Model) -> ScoredBatch:
    customers(2500, seed=9).to_parquet(tmp_path / "batch.parquet", index=False)
    clean, _ = validate_batch(open_batch(tmp_path / "batch.parquet", SCHEMA), SCHEMA, "fail", tmp_path / "clean",
                              chunk_rows=1000)
    return score_batch(clean, model, targeting(), 3, tmp_path / "scored")


def test_scores_are_the_pipeline_s_own_and_reasons_are_explained(scored_batch: ScoredBatch, model: Model,
                                                                tmp_path: Path) -> None:
    cleaned = customers(2500, seed=9)  # clean already: the synthetic generator without defects
    expected = model.pipeline.predict_proba(cleaned[SCHEMA.feature_names])[:, 1]
    np.testing.assert_allclose(scored_batch.probabilities, expected, atol=1e-9)
    assert scored_batch.scorer_path.startswith("compiled") and scored_batch.reasons_method == "linear-exact-log-odds"
    value = cleaned["monthly_charges"].to_numpy() * 12
    np.testing.assert_allclose(scored_batch.net_gain, expected * value * 0.3 - 20.0)


def test_the_list_is_written_sorted_by_rank_with_every_column(scored_batch: ScoredBatch, tmp_path: Path) -> None:
    config = targeting()
    whole, figures = publish(scored_batch, config, 0.5, 0.2, "customer_id", tmp_path / "one")
    parts, _ = publish(scored_batch, config, 0.5, 0.2, "customer_id", tmp_path / "parts", part_rows=1000)
    assert whole.columns == ["rank", "customer_id", PROBABILITY, "contact", "expected_net_gain",
                             "reason_1", "reason_2", "reason_3",
                             "reason_1_contribution", "reason_2_contribution", "reason_3_contribution"]
    assert [Path(f).name for f in parts.parquet_files] == ["part-00000.parquet", "part-00001.parquet",
                                                          "part-00002.parquet"]
    one, split = whole.to_pandas(), parts.to_pandas()
    pd.testing.assert_frame_equal(one, split)  # bucketed by rank range == sorted in memory
    assert one["rank"].tolist() == list(range(1, 2501))
    assert one["expected_net_gain"].is_monotonic_decreasing
    assert one["contact"].sum() == figures.contacts == (one[PROBABILITY] >= 0.2).sum()
    assert figures.expected_net_gain == pytest.approx(one.loc[one["contact"], "expected_net_gain"].sum(), abs=0.01)
    csv = pd.read_csv(tmp_path / "one" / CSV_NAME, keep_default_na=False)
    assert csv["customer_id"].tolist() == one["customer_id"].tolist() and len(csv) == 2500
    assert (one["reason_1_contribution"].fillna(np.inf) >= one["reason_2_contribution"].fillna(0)).all()
    assert sum(figures.score_histogram) == 2500 and figures.top_reasons


def test_nothing_is_written_when_writing_fails_or_the_output_is_taken(scored_batch: ScoredBatch,
                                                                      tmp_path: Path) -> None:
    output = tmp_path / "list"
    broken = ScoredBatch(**{**scored_batch.__dict__, "parts": [*scored_batch.parts[:-1], str(tmp_path / "gone")]})
    with pytest.raises(OSError):
        publish(broken, targeting(), 0.5, 0.2, "customer_id", output)
    assert not output.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".list")]
    output.mkdir()
    (output / "keep.txt").write_text("someone's file")
    with pytest.raises(BatchDataError, match="already holds files"):
        publish(scored_batch, targeting(), 0.5, 0.2, "customer_id", output)
    assert sorted(p.name for p in output.iterdir()) == ["keep.txt"]
    assert not (output / PARQUET_DIR).exists()
