"""A seeded generator of a subscription service's customer base with a churn signal.

The churn probability follows a logistic model of contract, tenure, support tickets,
usage, payment method and price, so a classifier has something real to learn. Knobs
inject the defects validation must catch or clean, and distribution drift for monitoring.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

CONTRACTS = ["Month-to-month", "One year", "Two year"]
PAYMENT_METHODS = ["Electronic check", "Mailed check", "Bank transfer", "Credit card"]
PLANS = ["Basic", "Standard", "Premium"]
INTERNET = ["DSL", "Fiber optic", "None"]
PLAN_PRICE = {"Basic": 30.0, "Standard": 60.0, "Premium": 95.0}
NUMERIC_COLUMNS = [
    "age",
    "tenure_months",
    "monthly_charges",
    "total_charges",
    "support_tickets",
    "logins_last_30d",
    "avg_session_minutes",
]


class DefectSpec(BaseModel):
    """Shares of rows (or values) to spoil; all zero by default."""

    model_config = ConfigDict(extra="forbid")

    missing_rate: float = Field(0.0, ge=0, le=1)
    missing_columns: list[str] = Field(default_factory=lambda: ["age", "monthly_charges"])
    out_of_range_rate: float = Field(0.0, ge=0, le=1)
    out_of_range_columns: list[str] = Field(default_factory=lambda: ["age"])
    category_noise_rate: float = Field(0.0, ge=0, le=1)
    duplicate_rate: float = Field(0.0, ge=0, le=1)
    wrong_type_rate: float = Field(0.0, ge=0, le=1)
    wrong_type_columns: list[str] = Field(default_factory=lambda: ["total_charges"])
    unknown_category_rate: float = Field(0.0, ge=0, le=1)


class DriftSpec(BaseModel):
    """Distribution shift: 0 is none, 1 is severe."""

    model_config = ConfigDict(extra="forbid")

    severity: float = Field(0.0, ge=0, le=3)
    # Which features shift; None shifts a default mix of numerics and categoricals.
    features: list[str] | None = None
    # Change how customers churn, not only who they are (concept drift).
    concept: float = Field(0.0, ge=0, le=3)


class SyntheticSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rows: int = Field(10_000, ge=1)
    seed: int = 42
    defects: DefectSpec = Field(default_factory=DefectSpec)
    drift: DriftSpec = Field(default_factory=DriftSpec)


DEFAULT_DRIFT_FEATURES = ["monthly_charges", "support_tickets", "contract_type", "payment_method"]


def _shifted_probabilities(base: list[float], shift: float, towards: int) -> np.ndarray:
    """Move probability mass towards category ``towards`` by ``shift`` (0..1)."""
    probs = np.asarray(base, dtype=float)
    target = np.zeros_like(probs)
    target[towards] = 1.0
    mixed = (1 - min(shift, 0.9)) * probs + min(shift, 0.9) * target
    return mixed / mixed.sum()


def generate_customers(spec: SyntheticSpec | None = None) -> pd.DataFrame:
    """Generate ``spec.rows`` customers, vectorised (1M rows in a few seconds)."""
    spec = spec or SyntheticSpec()
    rng = np.random.default_rng(spec.seed)
    n = spec.rows
    drift = spec.drift
    drifted = set(drift.features or DEFAULT_DRIFT_FEATURES) if drift.severity > 0 else set()

    def shift(feature: str) -> float:
        return drift.severity if feature in drifted else 0.0

    contract_p = _shifted_probabilities([0.55, 0.25, 0.20], shift("contract_type") / 2, 0)
    payment_p = _shifted_probabilities([0.35, 0.20, 0.22, 0.23], shift("payment_method") / 2, 0)
    plan_p = _shifted_probabilities([0.35, 0.40, 0.25], shift("service_plan") / 2, 2)
    internet_p = _shifted_probabilities([0.35, 0.45, 0.20], shift("internet_service") / 2, 1)

    contract = rng.choice(len(CONTRACTS), size=n, p=contract_p)
    payment = rng.choice(len(PAYMENT_METHODS), size=n, p=payment_p)
    plan = rng.choice(len(PLANS), size=n, p=plan_p)
    internet = rng.choice(len(INTERNET), size=n, p=internet_p)
    paperless = rng.random(n) < 0.6
    gender = rng.choice(["Female", "Male"], size=n)

    age = np.clip(rng.normal(45 + 8 * shift("age"), 14, n), 18, 90).round()
    tenure_scale = np.array([14.0, 30.0, 45.0])[contract] * (1 - 0.3 * min(shift("tenure_months"), 2))
    tenure = np.clip(rng.exponential(tenure_scale), 0, 72).round()
    base_price = np.vectorize(PLAN_PRICE.__getitem__)(np.asarray(PLANS)[plan])
    internet_extra = np.array([10.0, 25.0, 0.0])[internet]
    monthly = base_price + internet_extra + rng.normal(0, 6, n) + 15 * shift("monthly_charges")
    monthly = np.clip(monthly, 10, 200).round(2)
    total = np.round(monthly * tenure * rng.normal(1.0, 0.03, n), 2)
    tickets = rng.poisson(1.0 + 0.8 * (contract == 0) + 1.5 * shift("support_tickets"), n)
    logins = rng.poisson(np.clip(18 - 4 * (plan == 0) - 3 * shift("logins_last_30d"), 1, None), n)
    session = np.clip(rng.gamma(4, 6 - min(shift("avg_session_minutes"), 3), n), 0.5, 240).round(1)

    logit = (
        -1.6
        + 1.5 * (contract == 0)
        - 1.2 * (contract == 2)
        - 0.045 * tenure
        + 0.35 * tickets
        - 0.06 * logins
        + 0.6 * (payment == 0)
        + 0.012 * (monthly - 65)
        + 0.4 * (internet == 1)
        - 0.008 * (age - 45)
        + 0.2 * paperless
    )
    if drift.concept:
        # Churn driven by price more than by contract: the old model's ranking degrades.
        logit = logit - 1.2 * drift.concept * (contract == 0) + 0.05 * drift.concept * (monthly - 65)
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)

    frame = pd.DataFrame(
        {
            "customer_id": [f"C{spec.seed:04d}-{i:07d}" for i in range(n)],
            "age": age.astype(int),
            "gender": gender,
            "tenure_months": tenure.astype(int),
            "contract_type": np.asarray(CONTRACTS)[contract],
            "payment_method": np.asarray(PAYMENT_METHODS)[payment],
            "service_plan": np.asarray(PLANS)[plan],
            "internet_service": np.asarray(INTERNET)[internet],
            "paperless_billing": np.where(paperless, "Yes", "No"),
            "monthly_charges": monthly,
            "total_charges": total,
            "support_tickets": tickets.astype(int),
            "logins_last_30d": logins.astype(int),
            "avg_session_minutes": session,
            "churned": churned,
        }
    )
    return inject_defects(frame, spec.defects, rng)


def inject_defects(frame: pd.DataFrame, defects: DefectSpec, rng: np.random.Generator) -> pd.DataFrame:
    """Spoil a clean frame the way real exports get spoiled."""
    n = len(frame)
    frame = frame.copy()

    def pick(rate: float) -> np.ndarray:
        return rng.random(n) < rate

    if defects.out_of_range_rate:
        for column in defects.out_of_range_columns:
            mask = pick(defects.out_of_range_rate)
            frame[column] = frame[column].astype(float)
            frame.loc[mask, column] = rng.choice([-5.0, 999.0], size=int(mask.sum()))
    if defects.missing_rate:
        for column in defects.missing_columns:
            frame[column] = frame[column].astype(float) if frame[column].dtype.kind in "iu" else frame[column]
            frame.loc[pick(defects.missing_rate), column] = np.nan
    if defects.wrong_type_rate:
        # As in a CSV export: one bad cell makes the whole column text.
        for column in defects.wrong_type_columns:
            text = frame[column].astype(object).where(frame[column].isna(), frame[column].astype(str))
            mask = pick(defects.wrong_type_rate)
            text[mask] = rng.choice(["n/a", "unknown", "#VALUE!"], size=int(mask.sum()))
            frame[column] = text
    if defects.category_noise_rate:
        variants = {
            "contract_type": ["month-to-month ", "MONTH-TO-MONTH", "monthly", " One Year", "two-year"],
            "payment_method": ["electronic check", "E-check", "credit card ", "BANK TRANSFER"],
            "service_plan": [" basic", "PREMIUM", "standard "],
        }
        for column, spellings in variants.items():
            mask = pick(defects.category_noise_rate)
            frame.loc[mask, column] = rng.choice(spellings, size=int(mask.sum()))
    if defects.unknown_category_rate:
        frame.loc[pick(defects.unknown_category_rate), "contract_type"] = "Lifetime"
    if defects.duplicate_rate:
        duplicates = frame[pick(defects.duplicate_rate)]
        frame = pd.concat([frame, duplicates], ignore_index=True)
        frame = frame.sample(frac=1.0, random_state=int(rng.integers(1 << 31))).reset_index(drop=True)
    return frame
