"""Value-based targeting against a hand-made example of five customers.

monthly charges 20, 10, 5, 30, unknown; multiplier 12 -> values 240, 120, 60, 360, 0.
acceptance 0.5, offer cost 10.
p(churn)         0.25, 0.5, 0.9, 0.1, 0.8
expected gain    0.25*240*0.5-10 = 20, 0.5*120*0.5-10 = 20, 0.9*60*0.5-10 = 17, 0.1*360*0.5-10 = 8, -10
churned (y)      1, 0, 1, 0, 1
realised gain    240*0.5-10 = 110, -10, 60*0.5-10 = 20, -10, 0-10 = -10
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from churnops.data.schema import DatasetSchema, load_schema
from churnops.modeling.targeting import (
    CustomerValue,
    TargetingConfig,
    best_value_threshold,
    contact_mask,
    customer_values,
    expected_net_gain,
    rank_order,
    realised_net_gain,
    targeting_report,
)

PROBABILITIES = np.array([0.25, 0.5, 0.9, 0.1, 0.8])
CHURNED = np.array([1, 0, 1, 0, 1])
FRAME = pd.DataFrame({"monthly_charges": [20.0, 10.0, 5.0, 30.0, np.nan], "tenure_months": [1, 2, 3, 4, 5]})


def config(**overrides: object) -> TargetingConfig:
    return TargetingConfig.model_validate({"value": {"multiplier": 12}, "offer_cost": 10, "acceptance_rate": 0.5,
                                           **overrides})


@pytest.fixture(scope="module")
def schema() -> DatasetSchema:
    return load_schema("synthetic")


def test_values_and_net_gains_match_the_hand_computation(schema: DatasetSchema) -> None:
    values = customer_values(FRAME, config(), schema)
    assert values.tolist() == [240, 120, 60, 360, 0]  # the unknown value counts as 0
    assert expected_net_gain(PROBABILITIES, values, config()) == pytest.approx([20, 20, 17, 8, -10])
    assert realised_net_gain(CHURNED, values, config()).tolist() == [110, -10, 20, -10, -10]


def test_rank_breaks_equal_gains_by_probability() -> None:
    gains = np.array([20, 20, 17, 8, -10.0])
    assert rank_order(gains, PROBABILITIES).tolist() == [1, 0, 2, 3, 4]
    # Equal gain and equal p: input order.
    assert rank_order(np.array([5.0, 5.0, 5.0]), np.array([0.3, 0.3, 0.3])).tolist() == [0, 1, 2]


@pytest.mark.parametrize(("overrides", "contacted"), [
    ({"decision": "f1"}, [1, 2, 4]),                           # p >= 0.5
    ({"decision": "value"}, [0, 1, 2, 4]),                     # p >= 0.25
    ({"decision": "budget", "max_contacts": 2}, [0, 1]),       # the two gains of 20
    ({"decision": "budget", "max_spend": 25}, [0, 1]),         # 25 / 10 buys two offers
    ({"decision": "budget", "max_spend": 35}, [0, 1, 2]),
    ({"decision": "budget", "max_contacts": 3, "max_spend": 20}, [0, 1]),  # the tighter limit wins
    ({"decision": "budget", "max_contacts": 10}, [0, 1, 2, 3]),  # never a negative expected gain
])
def test_each_policy_contacts_the_hand_computed_customers(
    schema: DatasetSchema, overrides: dict, contacted: list[int],
) -> None:
    chosen = config(**overrides)
    gains = expected_net_gain(PROBABILITIES, customer_values(FRAME, chosen, schema), chosen)
    mask = contact_mask(PROBABILITIES, gains, chosen, f1_threshold=0.5, value_threshold=0.25)
    assert np.flatnonzero(mask).tolist() == contacted


def test_value_threshold_maximises_realised_gain(schema: DatasetSchema) -> None:
    # By p: 0.9 (+20), 0.8 (-10), 0.5 (-10), 0.25 (+110), 0.1 (-10) -> running 20, 10, 0, 110, 100.
    values = customer_values(FRAME, config(), schema)
    assert best_value_threshold(CHURNED, PROBABILITIES, values, config()) == (0.25, 110.0)


def test_value_threshold_never_splits_equal_probabilities() -> None:
    # The first two share p = 0.6: +50 and -10 -> only "both or neither", i.e. 40, then -10 -> 30.
    values = np.array([120.0, 120.0, 120.0])
    threshold, gain = best_value_threshold(np.array([1, 0, 0]), np.array([0.6, 0.6, 0.2]), values,
                                           config(offer_cost=10))
    assert (threshold, gain) == (0.6, 40.0)


def test_value_threshold_contacts_no_one_when_nothing_pays() -> None:
    threshold, gain = best_value_threshold(np.array([0, 0]), np.array([0.9, 0.4]), np.array([100.0, 100.0]),
                                           config())
    assert gain == 0.0 and threshold > 1.0


def test_report_compares_the_model_with_simple_policies(schema: DatasetSchema) -> None:
    values = customer_values(FRAME, config(), schema)
    report = targeting_report(CHURNED, PROBABILITIES, values, config(), "monthly_charges",
                              f1_threshold=0.5, value_threshold=0.25)
    # Ranked 1, 0, 2, 3, 4: realised running gain 0, -10, 100, 120, 110, 100.
    assert report.curve_share == [0, 0.2, 0.4, 0.6, 0.8, 1.0]
    assert report.curve_net_gain == [0, -10, 100, 120, 110, 100]
    assert (report.best_share, report.best_net_gain) == (0.6, 120)
    assert (report.model.contacts, report.model.net_gain, report.model.spend) == (4, 110, 40)
    assert (report.everyone.contacts, report.everyone.net_gain) == (5, 100)
    assert (report.no_one.contacts, report.no_one.net_gain) == (0, 0)
    assert (report.random.contacts, report.random.net_gain) == (4, 80)  # 4 / 5 of everyone's 100
    assert report.lift_over_random == 30
    assert report.policies["f1"].net_gain == 0  # customers 1, 2, 4: -10 + 20 - 10
    assert "budget" not in report.policies


def test_profit_curve_is_thinned_and_keeps_its_peak() -> None:
    rng = np.random.default_rng(0)
    n = 5000
    p = rng.random(n)
    y = (rng.random(n) < p).astype(int)
    report = targeting_report(y, p, np.full(n, 100.0), config(), "monthly_charges", 0.5, 0.5)
    assert len(report.curve_share) <= 201
    assert max(report.curve_net_gain) == report.best_net_gain
    assert report.curve_share[0] == 0 and report.curve_share[-1] == 1


def test_schema_value_column_must_be_a_numeric_feature(schema: DatasetSchema) -> None:
    assert schema.value_column == "monthly_charges"
    assert load_schema("telco").value_column == "MonthlyCharges"
    data = schema.model_dump()
    for bad in ("contract_type", "no_such_column"):
        with pytest.raises(ValidationError, match=f"value_column '{bad}' must name a numeric feature"):
            DatasetSchema.model_validate({**data, "value_column": bad})


def test_bad_targeting_input_is_named(schema: DatasetSchema) -> None:
    with pytest.raises(ValidationError, match="'budget' needs max_contacts or max_spend"):
        config(decision="budget")
    with pytest.raises(ValidationError, match="acceptance_rate"):
        config(acceptance_rate=1.5)
    with pytest.raises(ValueError, match="'contract_type' is not a numeric feature"):
        customer_values(FRAME, config(value=CustomerValue(column="contract_type")), schema)
    with pytest.raises(ValueError, match="'monthly_charges' is missing from the data"):
        customer_values(FRAME.drop(columns="monthly_charges"), config(), schema)
    with pytest.raises(ValueError, match="negative values"):
        customer_values(FRAME.assign(monthly_charges=[-1.0, 1, 1, 1, 1]), config(), schema)
    with pytest.raises(ValueError, match="must be numeric"):
        customer_values(FRAME.assign(monthly_charges=list("abcde")), config(), schema)
    with pytest.raises(ValueError, match="value_column in the dataset schema"):
        customer_values(FRAME, config(), schema.model_copy(update={"value_column": None}))


def test_a_config_column_overrides_the_schema(schema: DatasetSchema) -> None:
    chosen = config(value={"column": "tenure_months", "multiplier": 2})
    assert customer_values(FRAME, chosen, schema).tolist() == [2, 4, 6, 8, 10]
