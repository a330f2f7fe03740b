"""Cleaning counts every repair; each defect type fails with its column and rule named."""

import numpy as np
import pandas as pd
import pytest

from churnops.data.schema import load_schema
from churnops.data.sources import load_raw
from churnops.data.synthetic import DefectSpec, SyntheticSpec, generate_customers
from churnops.data.validation import DataValidationError, validate_and_clean

SCHEMA = load_schema("synthetic")


def customers(rows: int = 3000, **defects) -> pd.DataFrame:
    return generate_customers(SyntheticSpec(rows=rows, seed=11, defects=DefectSpec(**defects)))


def violations_of(frame: pd.DataFrame, schema=SCHEMA) -> dict[tuple[str, str], str]:
    with pytest.raises(DataValidationError) as caught:
        validate_and_clean(frame, schema)
    message = str(caught.value)
    found = {(v.column, v.rule): v.observed for v in caught.value.report.violations}
    for column, rule in found:
        assert f"column '{column}': rule '{rule}'" in message
    return found


def actions_of(report) -> dict[tuple[str, str], int]:
    return {(a.column, a.action): a.count for a in report.actions}


def test_clean_data_passes_untouched():
    frame = customers()
    cleaned, report = validate_and_clean(frame, SCHEMA)
    assert report.passed and report.actions == [] and report.rows_out == 3000
    assert cleaned["churned"].isin([0, 1]).all()


def test_fixable_defects_are_repaired_and_counted():
    frame = customers(category_noise_rate=0.1, duplicate_rate=0.02, wrong_type_rate=0.005,
                      out_of_range_rate=0.01, missing_rate=0.01)
    cleaned, report = validate_and_clean(frame, SCHEMA)
    actions = actions_of(report)
    assert actions[("customer_id", "duplicate_id_dropped")] == frame["customer_id"].duplicated().sum()
    assert cleaned["customer_id"].is_unique
    assert actions[("total_charges", "unparseable_to_missing")] > 0
    assert actions[("age", "out_of_range_to_missing")] > 0
    assert actions[("contract_type", "category_normalised")] > 200
    assert set(cleaned["contract_type"].dropna()) == {"Month-to-month", "One year", "Two year"}
    assert cleaned["total_charges"].dtype == float
    assert cleaned["age"].dropna().between(18, 100).all() and cleaned["age"].isna().sum() > 0


def test_synonyms_case_and_whitespace_normalise():
    frame = customers(rows=600)
    frame.loc[:4, "contract_type"] = ["monthly", " ONE-YEAR", "two-year ", "month  to month", "One year"]
    frame.loc[:1, "payment_method"] = ["E-Check", "credit card"]
    cleaned, report = validate_and_clean(frame, SCHEMA)
    assert cleaned.loc[:4, "contract_type"].tolist() == [
        "Month-to-month", "One year", "Two year", "Month-to-month", "One year"]
    assert cleaned.loc[:1, "payment_method"].tolist() == ["Electronic check", "Credit card"]
    assert actions_of(report)[("contract_type", "category_normalised")] == 4


def test_missing_values_over_the_limit_fail():
    found = violations_of(customers(missing_rate=0.3))
    assert set(found) == {("age", "max_missing_rate"), ("monthly_charges", "max_missing_rate")}
    assert float(found[("age", "max_missing_rate")]) == pytest.approx(0.3, abs=0.03)


def test_unparseable_numbers_fail_with_examples():
    found = violations_of(customers(wrong_type_rate=0.1))
    assert "unknown" in found[("total_charges", "numeric_type")] or "n/a" in found[("total_charges", "numeric_type")]


def test_out_of_range_values_fail_when_the_schema_says_fail():
    schema = SCHEMA.model_copy(deep=True)
    next(f for f in schema.numeric if f.name == "age").out_of_range = "fail"
    found = violations_of(customers(out_of_range_rate=0.05), schema)
    assert "[-5.0, 999.0]" in found[("age", "numeric_range")]


def test_out_of_range_values_clip_when_the_schema_says_clip():
    schema = SCHEMA.model_copy(deep=True)
    next(f for f in schema.numeric if f.name == "age").out_of_range = "clip"
    cleaned, report = validate_and_clean(customers(out_of_range_rate=0.05), schema)
    assert cleaned["age"].between(18, 100).all()
    assert actions_of(report)[("age", "out_of_range_clipped")] > 100


def test_unknown_categories_fail_with_counts():
    found = violations_of(customers(unknown_category_rate=0.05))
    assert "Lifetime" in found[("contract_type", "allowed_categories")]


def test_too_many_duplicate_ids_fail():
    found = violations_of(customers(duplicate_rate=0.2))
    assert ("customer_id", "max_duplicate_share") in found


def test_missing_column_fails_as_required():
    found = violations_of(customers().drop(columns=["tenure_months"]))
    assert ("tenure_months", "required_column") in found


def test_target_rules():
    one_class = customers().assign(churned=0)
    assert ("churned", "target_both_classes") in violations_of(one_class)
    rare = customers()
    rare["churned"] = (np.arange(len(rare)) < 30).astype(int)
    assert ("churned", "target_min_minority_share") in violations_of(rare)
    odd = customers().astype({"churned": object})
    odd.loc[:9, "churned"] = "maybe"
    assert ("churned", "target_values") in violations_of(odd)


def test_too_few_rows_fail():
    assert ("<dataset>", "min_rows") in violations_of(customers(rows=200))


def test_every_violation_is_reported_at_once():
    found = violations_of(customers(missing_rate=0.3, unknown_category_rate=0.05, wrong_type_rate=0.1))
    assert {rule for _, rule in found} >= {"max_missing_rate", "allowed_categories", "numeric_type"}


def test_telco_blank_total_charges_become_missing():
    schema = load_schema("telco")
    raw, _ = load_raw(schema)
    cleaned, report = validate_and_clean(raw, schema)
    assert actions_of(report) == {("TotalCharges", "blank_to_missing"): 11}
    assert cleaned["TotalCharges"].isna().sum() == 11
    assert cleaned["Churn"].mean() == pytest.approx(0.2654, abs=1e-3)
