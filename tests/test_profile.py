import pytest

from churnops.data.profile import bin_shares, build_reference_profile
from tests.support import clean_customers


def test_reference_profile_matches_the_data():
    frame, schema = clean_customers(rows=4000)
    profile = build_reference_profile(frame, schema)
    assert profile.rows == 4000 and profile.target_rate == pytest.approx(frame["churned"].mean())
    assert set(profile.numeric) == set(schema.numeric_names)
    assert set(profile.categorical) == set(schema.categorical_names)
    charges = profile.numeric["monthly_charges"]
    assert charges.mean == pytest.approx(frame["monthly_charges"].mean())
    assert charges.quantiles["p50"] == pytest.approx(frame["monthly_charges"].median())
    assert sum(charges.bin_shares) == pytest.approx(1.0)
    # Decile bins of the reference hold about a tenth of it each.
    assert max(charges.bin_shares) < 0.13
    contract = profile.categorical["contract_type"]
    assert sum(contract.frequencies.values()) == pytest.approx(1.0)
    assert contract.frequencies["Month-to-month"] == pytest.approx((frame["contract_type"] == "Month-to-month").mean())


def test_profile_round_trips_as_json():
    frame, schema = clean_customers(rows=800)
    profile = build_reference_profile(frame, schema)
    assert type(profile).model_validate_json(profile.model_dump_json()) == profile


def test_bin_shares_of_shifted_values_move_to_the_top_bin():
    frame, schema = clean_customers(rows=3000)
    edges = build_reference_profile(frame, schema).numeric["monthly_charges"].bin_edges
    shares = bin_shares(frame["monthly_charges"] + 500, edges)
    assert shares[-1] == pytest.approx(1.0)
