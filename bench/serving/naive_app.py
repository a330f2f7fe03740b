"""The baseline: a minimal FastAPI app that serves the model the naive way (the course lab's
api.py): a pydantic body, a one-row DataFrame per request, ``Pipeline.predict_proba``.

    NAIVE_MODEL=pipeline.joblib NAIVE_THRESHOLD=0.4 uvicorn bench.serving.naive_app:app
"""

from __future__ import annotations

import os

import joblib
import pandas as pd
from fastapi import FastAPI
from pydantic import BaseModel

model = joblib.load(os.environ["NAIVE_MODEL"])
threshold = float(os.environ.get("NAIVE_THRESHOLD", "0.5"))
app = FastAPI(title="naive churn API")


class Customer(BaseModel):
    customer_id: str | None = None
    age: float | None
    tenure_months: float | None
    monthly_charges: float | None
    total_charges: float | None
    support_tickets: float | None
    logins_last_30d: float | None
    avg_session_minutes: float | None
    gender: str | None
    contract_type: str | None
    payment_method: str | None
    service_plan: str | None
    internet_service: str | None
    paperless_billing: str | None


@app.post("/predict")
def predict(customer: Customer) -> dict:
    frame = pd.DataFrame([customer.model_dump(exclude={"customer_id"})])
    probability = float(model.predict_proba(frame)[0][1])
    return {"churn_probability": probability, "label": int(probability >= threshold)}


@app.post("/predict_batch")
def predict_batch(customers: list[Customer]) -> dict:
    frame = pd.DataFrame([c.model_dump(exclude={"customer_id"}) for c in customers])
    probabilities = model.predict_proba(frame)[:, 1]
    return {"churn_probability": probabilities.tolist(), "label": (probabilities >= threshold).astype(int).tolist()}
