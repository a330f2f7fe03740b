"""The framework's floor: a BentoML endpoint that parses the JSON body and does nothing else,
with the same service options (workers, access log, metrics) as bento/service.py."""

from __future__ import annotations

import typing as t

import bentoml

from churnops.serving.config import load_serving_config

CONFIG = load_serving_config()


@bentoml.service(
    name="floor_service",
    workers=CONFIG.service.workers,
    traffic={"timeout": CONFIG.service.timeout_seconds},
    logging={"access": {"enabled": CONFIG.service.access_log}},
)
class FloorService:
    @bentoml.api(route="/predict")
    async def predict(self, body: dict[str, t.Any], /) -> dict[str, t.Any]:
        return {"ok": True}
