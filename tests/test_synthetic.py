import numpy as np
import pandas as pd
import pytest

from churnops.data.synthetic import DefectSpec, DriftSpec, SyntheticSpec, generate_customers


def test_same_seed_same_data_and_realistic_churn():
    first = generate_customers(SyntheticSpec(rows=3000, seed=1))
    second = generate_customers(SyntheticSpec(rows=3000, seed=1))
    pd.testing.assert_frame_equal(first, second)
    assert len(first) == 3000 and first["customer_id"].is_unique
    assert 0.15 < first["churned"].mean() < 0.40


def test_churn_signal_follows_contract_and_tenure():
    frame = generate_customers(SyntheticSpec(rows=20_000, seed=3))
    by_contract = frame.groupby("contract_type")["churned"].mean()
    assert by_contract["Month-to-month"] > 2 * by_contract["Two year"]
    short, long = frame[frame.tenure_months < 6], frame[frame.tenure_months > 36]
    assert short["churned"].mean() > long["churned"].mean()


def test_defect_knobs_inject_what_they_say():
    frame = generate_customers(SyntheticSpec(rows=5000, seed=2, defects=DefectSpec(
        missing_rate=0.1, duplicate_rate=0.05, wrong_type_rate=0.05, unknown_category_rate=0.05,
        category_noise_rate=0.1, out_of_range_rate=0.05)))
    assert frame["monthly_charges"].isna().mean() == pytest.approx(0.1, abs=0.02)
    assert frame["customer_id"].duplicated().sum() > 150
    assert frame["total_charges"].isin(["n/a", "unknown", "#VALUE!"]).sum() > 150
    assert (frame["contract_type"] == "Lifetime").sum() > 150
    assert ((frame["age"] < 18) | (frame["age"] > 100)).sum() > 100
    assert frame["service_plan"].str.strip().str.lower().isin(["basic", "premium", "standard"]).all()


def test_drift_shifts_only_the_chosen_features():
    base = generate_customers(SyntheticSpec(rows=20_000, seed=4))
    drifted = generate_customers(SyntheticSpec(rows=20_000, seed=4, drift=DriftSpec(
        severity=1.0, features=["monthly_charges", "contract_type"])))
    assert drifted["monthly_charges"].mean() - base["monthly_charges"].mean() > 10
    monthly_share = {name: (frame["contract_type"] == "Month-to-month").mean()
                     for name, frame in (("base", base), ("drifted", drifted))}
    assert monthly_share["drifted"] > monthly_share["base"] + 0.1
    assert abs(drifted["age"].mean() - base["age"].mean()) < 0.5
    assert np.isclose(drifted["logins_last_30d"].mean(), base["logins_last_30d"].mean(), rtol=0.03)
