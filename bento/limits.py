"""ASGI middleware: refuse request bodies above a size limit with 413 and a JSON reason.

A declared Content-Length above the limit is refused before the body is read. A body sent
without a length (chunked) is read up to the limit and refused as soon as it passes it.
"""

from __future__ import annotations

import json
import typing as t

Scope = dict[str, t.Any]
Message = dict[str, t.Any]
Receive = t.Callable[[], t.Awaitable[Message]]
Send = t.Callable[[Message], t.Awaitable[None]]
ASGIApp = t.Callable[[Scope, Receive, Send], t.Awaitable[None]]


class BodySizeLimit:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers", []):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await self._refuse(send, 400, "invalid Content-Length header")
                    return
        if declared is not None:
            if declared > self.max_bytes:
                await self._too_large(send, declared)
                return
            await self.app(scope, receive, send)
            return
        # No declared length: buffer up to the limit, then replay the body to the app.
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._too_large(send, size)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        await self.app(scope, _replay([{"type": "http.request", "body": body, "more_body": False}], receive), send)

    async def _too_large(self, send: Send, size: int) -> None:
        await self._refuse(send, 413, f"request body of {size} bytes exceeds the limit of {self.max_bytes} bytes "
                                      "(limits.max_body_bytes in configs/serving.yaml)")

    @staticmethod
    async def _refuse(send: Send, status: int, message: str) -> None:
        body = json.dumps({"error": message, "detail": [{"loc": ["body"], "msg": message,
                                                         "type": "payload_too_large" if status == 413 else "invalid"}]})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body.encode()})


def _replay(messages: list[Message], then: Receive | None = None) -> Receive:
    pending = list(messages)

    async def receive() -> Message:
        if pending:
            return pending.pop(0)
        if then is not None:
            return await then()
        return {"type": "http.disconnect"}

    return receive
