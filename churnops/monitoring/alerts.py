"""Raising an alert: the console, an append-only alert log (JSON lines) and an optional webhook.

The webhook receives a JSON body with a Slack/Teams-style ``text`` line plus the key figures.
A webhook that fails is recorded in the delivery, never fatal: the alert log still has it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import requests
from pydantic import BaseModel, Field

from churnops.monitoring.decision import MonitoringDecision

logger = logging.getLogger("churnops.monitoring")


class AlertDelivery(BaseModel):
    raised: bool
    channels: list[str] = Field(default_factory=list)
    alert_log: str | None = None
    webhook_url: str | None = None
    webhook_status: str | None = None


def alert_text(decision: MonitoringDecision) -> str:
    reasons = "; ".join(decision.reasons)
    return (f"churnops: {decision.model_name} v{decision.model_version}: {decision.message} "
            f"[{decision.window}, {decision.window_rows:,} predictions]" + (f" - {reasons}" if reasons else ""))


def alert_payload(decision: MonitoringDecision, run_name: str | None) -> dict[str, Any]:
    return {"text": alert_text(decision), "model_name": decision.model_name,
            "model_version": decision.model_version, "checked_at": decision.checked_at.isoformat(),
            "run_name": run_name, "reasons": decision.reasons, **decision.key_figures()}


def dispatch_alert(decision: MonitoringDecision, alert_log: Path, webhook_url: str | None = None,
                   run_name: str | None = None, timeout_seconds: float = 5.0) -> AlertDelivery:
    """Send the alert of ``decision`` if it has one; report where it went."""
    if not decision.alert:
        return AlertDelivery(raised=False)
    payload = alert_payload(decision, run_name)
    body = json.dumps(payload, default=str)
    delivery = AlertDelivery(raised=True, channels=["console"], alert_log=str(alert_log), webhook_url=webhook_url)
    logger.warning("ALERT %s", payload["text"])
    alert_log.parent.mkdir(parents=True, exist_ok=True)
    with alert_log.open("a") as handle:
        handle.write(body + "\n")
    delivery.channels.append("alert_log")
    if webhook_url:
        try:
            response = requests.post(webhook_url, data=body.encode(), headers={"Content-Type": "application/json"},
                                     timeout=timeout_seconds)
            delivery.webhook_status = f"HTTP {response.status_code}"
            if response.ok:
                delivery.channels.append("webhook")
        except requests.RequestException as error:
            delivery.webhook_status = f"failed: {type(error).__name__}: {str(error)[:200]}"
            logger.warning("alert webhook %s failed: %s", webhook_url, delivery.webhook_status)
    return delivery
