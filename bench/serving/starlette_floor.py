"""The HTTP floor: a bare Starlette endpoint under uvicorn (httptools, uvloop) that reads the body
and answers a constant JSON object. What any Python ASGI service costs per request before it
does anything; bench/serving/bench_lean.py measures the churn service against it.

    uvicorn bench.serving.starlette_floor:app --host 127.0.0.1 --port 8000 --no-access-log
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


async def predict(request: Request) -> Response:
    await request.body()
    return Response(b'{"ok":true}', media_type="application/json")


async def healthz(request: Request) -> Response:
    return Response(b"\n")


app = Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                        Route("/predict_batch", predict, methods=["POST"]),
                        Route("/healthz", healthz)])
