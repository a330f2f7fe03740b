"""The framework's floor: a BentoML endpoint that parses the JSON body and does nothing else,
with the same service options (``ServiceOptions.bentoml_options``: workers, timeout, access
log) as bento/service.py."""

from __future__ import annotations

import typing as t

import bentoml

from churnops.serving.config import load_serving_config

CONFIG = load_serving_config()


@bentoml.service(name="floor_service", **CONFIG.service.bentoml_options())
class FloorService:
    @bentoml.api(route="/predict")
    async def predict(self, body: dict[str, t.Any], /) -> dict[str, t.Any]:
        return {"ok": True}
