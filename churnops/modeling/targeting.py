"""Value-based targeting: whom to contact with a retention offer, and what it is worth.

Expected net gain of contacting a customer = p(churn) x value x acceptance - offer cost: the
value kept when a would-be churner accepts the offer, minus what the offer costs whoever gets
it. Realised net gain of a contact list (known outcomes y) = sum over contacted of
y x value x acceptance - cost. Three decision policies cut the list:

- ``f1``: p >= the F1-maximising threshold (the classifier's label);
- ``value``: p >= the value-maximising threshold, tuned on out-of-fold training probabilities;
- ``budget``: best expected net gain first, only customers with a positive expected gain,
  within ``max_contacts`` and/or ``max_spend`` (each contact costs ``offer_cost``).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from churnops.data.schema import DatasetSchema

Decision = Literal["f1", "value", "budget"]
PROFIT_CURVE_POINTS = 200


class CustomerValue(BaseModel):
    """The value of keeping a customer: a numeric column times a horizon multiplier."""

    model_config = ConfigDict(extra="forbid")

    column: str | None = None  # None -> the dataset schema's `value_column`
    multiplier: float = Field(12.0, gt=0)  # e.g. monthly charges x 12 months


class TargetingConfig(BaseModel):
    """The ``targeting:`` block of the training and batch configs."""

    model_config = ConfigDict(extra="forbid")

    value: CustomerValue = Field(default_factory=CustomerValue)
    offer_cost: float = Field(ge=0)
    acceptance_rate: float = Field(gt=0, le=1)  # share of contacted would-be churners who stay
    max_contacts: int | None = Field(None, ge=0)
    max_spend: float | None = Field(None, ge=0)
    decision: Decision = "value"

    @model_validator(mode="after")
    def _budget_needs_a_limit(self) -> TargetingConfig:
        if self.decision == "budget" and self.max_contacts is None and self.max_spend is None:
            raise ValueError("targeting decision 'budget' needs max_contacts or max_spend")
        return self

    @property
    def contact_limit(self) -> int | None:
        """The most contacts the budget allows (None: no limit)."""
        limits = []
        if self.max_contacts is not None:
            limits.append(self.max_contacts)
        if self.max_spend is not None and self.offer_cost > 0:
            # A small tolerance so 100.0 / 0.1 buys 1000 contacts, not 999.
            limits.append(int(np.floor(self.max_spend / self.offer_cost + 1e-9)))
        return min(limits) if limits else None


def value_column(config: TargetingConfig, schema: DatasetSchema) -> str:
    """The column customer value comes from: the config's, else the schema's ``value_column``."""
    column = config.value.column or schema.value_column
    if column is None:
        raise ValueError(f"targeting needs a customer value column: set targeting.value.column or "
                         f"value_column in the dataset schema '{schema.name}'")
    if column not in schema.numeric_names:
        raise ValueError(f"targeting value column '{column}' is not a numeric feature of the dataset "
                         f"schema '{schema.name}' (numeric features: {', '.join(schema.numeric_names)})")
    return column


def customer_values(frame: pd.DataFrame, config: TargetingConfig, schema: DatasetSchema) -> np.ndarray:
    """Value of keeping each customer = column x multiplier; a missing value counts as 0."""
    column = value_column(config, schema)
    if column not in frame.columns:
        raise ValueError(f"targeting value column '{column}' is missing from the data "
                         f"(columns: {', '.join(map(str, frame.columns))})")
    raw = frame[column]
    if not pd.api.types.is_numeric_dtype(raw):
        raise ValueError(f"targeting value column '{column}' must be numeric, got dtype {raw.dtype}")
    values = raw.to_numpy(dtype=float, na_value=np.nan)
    if np.nanmin(values, initial=0.0) < 0:
        raise ValueError(f"targeting value column '{column}' has negative values "
                         f"(smallest {np.nanmin(values):g}); a customer's value cannot be negative")
    # An unknown value is assumed worth nothing: such a customer is never contacted for value.
    return np.nan_to_num(values, nan=0.0) * config.value.multiplier


def expected_net_gain(probabilities: np.ndarray, values: np.ndarray, config: TargetingConfig) -> np.ndarray:
    """Per customer: p x value x acceptance - cost."""
    return np.asarray(probabilities, dtype=float) * values * config.acceptance_rate - config.offer_cost


def realised_net_gain(y_true: np.ndarray, values: np.ndarray, config: TargetingConfig) -> np.ndarray:
    """Per customer, had they been contacted: y x value x acceptance - cost."""
    return np.asarray(y_true, dtype=float) * values * config.acceptance_rate - config.offer_cost


def rank_order(net_gain: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
    """Indices by descending expected net gain; ties by descending p, then by position."""
    return np.lexsort((-np.asarray(probabilities, dtype=float), -np.asarray(net_gain, dtype=float)))


def contact_mask(
    probabilities: np.ndarray, net_gain: np.ndarray, config: TargetingConfig,
    f1_threshold: float, value_threshold: float,
) -> np.ndarray:
    """Whom the configured decision policy contacts (boolean mask in input order)."""
    probabilities = np.asarray(probabilities, dtype=float)
    if config.decision == "f1":
        return probabilities >= f1_threshold
    if config.decision == "value":
        return probabilities >= value_threshold
    order = rank_order(net_gain, probabilities)
    worth_it = order[np.asarray(net_gain, dtype=float)[order] > 0]
    limit = config.contact_limit
    chosen = worth_it if limit is None else worth_it[:limit]
    mask = np.zeros(len(probabilities), dtype=bool)
    mask[chosen] = True
    return mask


def best_value_threshold(
    y_true: np.ndarray, probabilities: np.ndarray, values: np.ndarray, config: TargetingConfig,
) -> tuple[float, float]:
    """The cut-off t (contact p >= t) maximising realised net gain, and that gain.

    Cuts fall only between distinct probabilities, so every customer with the same p gets the
    same decision. When no cut gains anything, t = 1.0 + 1e-9: contact no one.
    """
    probabilities = np.asarray(probabilities, dtype=float)
    order = np.argsort(-probabilities, kind="stable")
    gains = np.cumsum(realised_net_gain(np.asarray(y_true)[order], values[order], config))
    sorted_p = probabilities[order]
    # The last index of each run of equal probabilities: the only places a threshold can cut.
    cut_ends = np.flatnonzero(np.r_[sorted_p[1:] != sorted_p[:-1], True]) if len(sorted_p) else np.array([], int)
    if cut_ends.size == 0 or gains[cut_ends].max() <= 0:
        return 1.0 + 1e-9, 0.0
    best = cut_ends[int(np.argmax(gains[cut_ends]))]
    return float(sorted_p[best]), float(gains[best])


class PolicyOutcome(BaseModel):
    """What one contact list achieves on labelled data."""

    contacts: int
    share_contacted: float
    spend: float
    net_gain: float


class TargetingReport(BaseModel):
    """Test-set profit curve and the model vs simple policies at the same number of contacts."""

    config: TargetingConfig
    value_column: str
    f1_threshold: float
    value_threshold: float
    customers: int
    # Net gain realised when contacting the top share of customers ranked by expected net gain.
    curve_share: list[float]
    curve_net_gain: list[float]
    best_share: float
    best_net_gain: float
    model: PolicyOutcome  # the configured decision
    everyone: PolicyOutcome
    no_one: PolicyOutcome
    random: PolicyOutcome  # expected value of contacting as many customers at random
    policies: dict[str, PolicyOutcome] = Field(default_factory=dict)  # f1 / value / budget, where applicable

    @property
    def lift_over_random(self) -> float:
        return self.model.net_gain - self.random.net_gain


def _outcome(mask: np.ndarray, realised: np.ndarray, config: TargetingConfig) -> PolicyOutcome:
    contacts = int(mask.sum())
    return PolicyOutcome(contacts=contacts, share_contacted=round(contacts / max(len(mask), 1), 6),
                         spend=round(contacts * config.offer_cost, 4), net_gain=round(float(realised[mask].sum()), 4))


def _thin_curve(share: np.ndarray, gain: np.ndarray) -> tuple[list[float], list[float]]:
    if len(share) > PROFIT_CURVE_POINTS:
        keep = np.unique(np.r_[np.linspace(0, len(share) - 1, PROFIT_CURVE_POINTS).astype(int), np.argmax(gain)])
        share, gain = share[keep], gain[keep]
    return np.round(share, 6).tolist(), np.round(gain, 4).tolist()


def targeting_report(
    y_true: np.ndarray, probabilities: np.ndarray, values: np.ndarray, config: TargetingConfig,
    value_column_name: str, f1_threshold: float, value_threshold: float,
) -> TargetingReport:
    """Profit curve and policy comparison on labelled (test) data."""
    y_true = np.asarray(y_true)
    probabilities = np.asarray(probabilities, dtype=float)
    n = len(y_true)
    if n == 0:
        raise ValueError("targeting report needs at least one customer")
    expected = expected_net_gain(probabilities, values, config)
    realised = realised_net_gain(y_true, values, config)
    order = rank_order(expected, probabilities)
    share = np.arange(n + 1) / n
    gain = np.r_[0.0, np.cumsum(realised[order])]
    best = int(np.argmax(gain))
    curve_share, curve_gain = _thin_curve(share, gain)

    mask = contact_mask(probabilities, expected, config, f1_threshold, value_threshold)
    policies = {"f1": _outcome(probabilities >= f1_threshold, realised, config),
                "value": _outcome(probabilities >= value_threshold, realised, config)}
    if config.contact_limit is not None:
        policies["budget"] = _outcome(contact_mask(probabilities, expected, config.model_copy(
            update={"decision": "budget"}), f1_threshold, value_threshold), realised, config)
    model = _outcome(mask, realised, config)
    everyone = _outcome(np.ones(n, dtype=bool), realised, config)
    # A random list of k customers realises, in expectation, k / n of contacting everyone.
    random = model.model_copy(update={"net_gain": round(everyone.net_gain * model.contacts / n, 4)})
    return TargetingReport(
        config=config, value_column=value_column_name, f1_threshold=f1_threshold,
        value_threshold=value_threshold, customers=n, curve_share=curve_share, curve_net_gain=curve_gain,
        best_share=round(float(share[best]), 6), best_net_gain=round(float(gain[best]), 4),
        model=model, everyone=everyone, no_one=_outcome(np.zeros(n, dtype=bool), realised, config),
        random=random, policies=policies,
    )
