"""Traffic for the running service: realistic synthetic customers, optionally drifted.

Customers come from ``churnops.data.synthetic`` with a drift level (``none``/``low``/``high``) that
shifts numerics, changes the category mix and changes how customers churn (concept drift).
Each request carries its own ``request_id``, so the outcomes the simulator knows can be
written to the feedback log keyed by request id, closing the monitoring loop.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pandas as pd
import requests
from pydantic import BaseModel, ConfigDict, Field

from churnops.data.schema import DatasetSchema
from churnops.data.synthetic import DriftSpec


class SimulatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    endpoint: str = "/predict"
    batch_size: int = Field(1, ge=1, description="customers per request (1: one JSON object per request)")
    concurrency: int = Field(4, ge=1, le=256)
    timeout_seconds: float = Field(10.0, gt=0)
    seed: int | None = Field(None, description="null: a fresh seed each run, so customers differ between runs")
    label_share: float = Field(1.0, ge=0, le=1, description="share of served customers whose outcome is written")
    drift_levels: dict[str, DriftSpec] = Field(default_factory=lambda: {
        "none": DriftSpec(),
        "low": DriftSpec(severity=0.5, concept=0.5),
        "high": DriftSpec(severity=1.5, concept=1.5),
    })


class TrafficResult(BaseModel):
    url: str
    customers: int
    requests: int
    served: int
    failed: int
    errors: dict[str, int] = Field(default_factory=dict)
    seconds: float
    p50_ms: float | None = None
    p95_ms: float | None = None
    model_versions: dict[str, int] = Field(default_factory=dict)

    def describe(self) -> str:
        rate = self.customers / self.seconds if self.seconds else 0.0
        text = (f"{self.served:,} of {self.customers:,} customers served by {self.url} in {self.seconds:.1f} s "
                f"({rate:,.0f}/s, {self.requests:,} requests")
        if self.p50_ms is not None:
            text += f", p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms"
        text += ")"
        if self.errors:
            text += "; failures: " + ", ".join(f"{k} x{v}" for k, v in self.errors.items())
        return text


def request_payloads(customers: pd.DataFrame, schema: DatasetSchema,
                     request_ids: Sequence[str]) -> list[dict[str, Any]]:
    """One JSON object per customer: the schema's features, the customer id and a request id."""
    columns = ([schema.id_column] if schema.id_column and schema.id_column in customers.columns else [])
    columns += schema.feature_names
    missing = [c for c in schema.feature_names if c not in customers.columns]
    if missing:
        raise ValueError(f"simulated customers lack features {missing} of dataset schema '{schema.name}'")
    records = customers[columns].to_dict(orient="records")
    for record, request_id in zip(records, request_ids, strict=True):
        record["request_id"] = request_id
    return records


def new_request_ids(count: int) -> list[str]:
    return [f"sim-{uuid.uuid4().hex}" for _ in range(count)]


def _returned_items(body: Any) -> list[dict[str, Any]]:
    """The service answers one object, or a list of them for a list (docs/contracts.md)."""
    items = body if isinstance(body, list) else [body]
    return [item for item in items if isinstance(item, dict)]


def send_traffic(url: str, payloads: list[dict[str, Any]],
                 settings: SimulatorSettings) -> tuple[TrafficResult, np.ndarray]:
    """POST ``payloads`` (in batches, concurrently); return the result and which payloads were served."""
    target = url.rstrip("/") + settings.endpoint
    batches = [list(range(i, min(i + settings.batch_size, len(payloads))))
               for i in range(0, len(payloads), settings.batch_size)]
    served = np.zeros(len(payloads), dtype=bool)
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    versions: Counter[str] = Counter()
    lock = threading.Lock()
    local = threading.local()

    def session() -> requests.Session:
        if not hasattr(local, "session"):
            local.session = requests.Session()
        return local.session

    def send(batch: list[int]) -> None:
        body: Any = payloads[batch[0]] if settings.batch_size == 1 else [payloads[i] for i in batch]
        started = time.perf_counter()
        try:
            response = session().post(target, json=body, timeout=settings.timeout_seconds)
        except requests.RequestException as error:
            with lock:
                errors[type(error).__name__] += 1
            return
        elapsed = (time.perf_counter() - started) * 1000
        with lock:
            latencies.append(elapsed)
            if not response.ok:
                errors[f"HTTP {response.status_code}"] += 1
                return
            served[batch] = True
            try:
                for item in _returned_items(response.json()):
                    if item.get("model_version") is not None:
                        versions[str(item["model_version"])] += 1
            except ValueError:
                errors["unparseable response body"] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        list(pool.map(send, batches))
    seconds = time.perf_counter() - started
    result = TrafficResult(
        url=target, customers=len(payloads), requests=len(batches), served=int(served.sum()),
        failed=int((~served).sum()), errors=dict(errors), seconds=seconds,
        p50_ms=float(np.percentile(latencies, 50)) if latencies else None,
        p95_ms=float(np.percentile(latencies, 95)) if latencies else None,
        model_versions=dict(versions),
    )
    return result, served


def labelled_subset(served: np.ndarray, label_share: float, seed: int) -> np.ndarray:
    """Which served customers get an outcome written (all, or a random share)."""
    if label_share >= 1.0:
        return served
    rng = np.random.default_rng(seed + 1)
    return served & (rng.random(len(served)) < label_share)
