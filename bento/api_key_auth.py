"""ASGI middleware: require an API key on everything but health probes, metrics and the docs.

Installed by bento/service.py only when a key is configured (``auth:`` in configs/serving.yaml),
so an open service pays nothing. A request is let through when it sends one of the keys as
``Authorization: Bearer <key>`` or ``X-API-Key: <key>``; otherwise it gets 401 with the project's
error body and ``WWW-Authenticate: Bearer``. Paths are denied unless listed open (an unknown
path answers 401, not 404, to a client without a key). Keys are kept only as SHA-256 digests and
compared digest to digest with :func:`hmac.compare_digest`, so the time taken tells neither the
key nor its length.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import typing as t
from collections.abc import Iterable, Sequence

from bento.docs_page import ASSETS_PREFIX, PAGE_PATH, SPEC_PATH

Scope = dict[str, t.Any]
Message = dict[str, t.Any]
Receive = t.Callable[[], t.Awaitable[Message]]
Send = t.Callable[[Message], t.Awaitable[None]]
ASGIApp = t.Callable[[Scope, Receive, Send], t.Awaitable[None]]

# Probes, the docs page and the OpenAPI document: no data behind them.
HEALTH_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/health"})
DOCS_PATHS = frozenset({PAGE_PATH, SPEC_PATH})
METRICS_PATH = "/metrics"
OPEN_PREFIXES = (ASSETS_PREFIX,)
HOW_TO_SEND = "send it as `Authorization: Bearer <key>` or `X-API-Key: <key>`"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def open_paths(protect_metrics: bool) -> frozenset[str]:
    """Paths answered without a key (plus anything under :data:`OPEN_PREFIXES`)."""
    return HEALTH_PATHS | DOCS_PATHS if protect_metrics else HEALTH_PATHS | DOCS_PATHS | {METRICS_PATH}


def is_open(path: str, protect_metrics: bool) -> bool:
    return path in open_paths(protect_metrics) or path.startswith(OPEN_PREFIXES)


def _digest(key: bytes) -> bytes:
    return hashlib.sha256(key).digest()


class ApiKeyAuth:
    def __init__(self, app: ASGIApp, keys: Sequence[str], protect_metrics: bool = False) -> None:
        if not keys:
            raise ValueError("ApiKeyAuth needs at least one key; without keys do not install it")
        self.app = app
        self._digests = tuple(_digest(key.encode("ascii")) for key in keys)
        self._open = open_paths(protect_metrics)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" or scope["path"] in self._open or scope["path"].startswith(OPEN_PREFIXES):
            await self.app(scope, receive, send)
            return
        refused_header = self.refusal(scope["headers"])
        if refused_header is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await self._refuse(send, refused_header)
        else:  # a websocket: closed before it is accepted (the server answers 403)
            await send({"type": "websocket.close", "code": 1008})

    def refusal(self, headers: Iterable[tuple[bytes, bytes]]) -> str | None:
        """None when the headers carry a valid key; else "" when they carry none, or the name of
        the header that carried a wrong one."""
        wrong: str | None = None
        for name, value in headers:
            if name == b"x-api-key":
                token, header = value.strip(), "X-API-Key"
            elif name == b"authorization":
                scheme, _, token = value.strip().partition(b" ")
                header = "Authorization"
                if scheme.lower() != b"bearer":
                    wrong = wrong or header
                    continue
                token = token.strip()
            else:
                continue
            if self._matches(token):
                return None
            wrong = wrong or header
        return wrong or ""

    def _matches(self, token: bytes) -> bool:
        digest = _digest(token)
        matched = False
        for expected in self._digests:  # every key compared: which one matched takes no longer
            matched |= hmac.compare_digest(digest, expected)
        return matched

    @staticmethod
    async def _refuse(send: Send, wrong_header: str) -> None:
        if wrong_header:
            message = f"the API key in the {wrong_header} header is not valid; {HOW_TO_SEND}"
            detail = {"loc": ["header", wrong_header], "msg": "invalid API key", "type": "invalid_api_key"}
            challenge = b'Bearer error="invalid_token"'
        else:
            message = f"this endpoint needs an API key; {HOW_TO_SEND}"
            detail = {"loc": ["header", "Authorization"], "msg": "API key missing", "type": "missing_api_key"}
            challenge = b"Bearer"
        body = json.dumps({"error": message, "detail": [detail]}).encode()
        # Connection: close, as for a 413: the request body, if any, is never read.
        await send({"type": "http.response.start", "status": 401,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"www-authenticate", challenge), (b"connection", b"close")]})
        await send({"type": "http.response.body", "body": body})


def document_api_key(spec: dict[str, t.Any], protect_metrics: bool) -> dict[str, t.Any]:
    """The OpenAPI document with the key's two header forms as security schemes on every
    protected operation, so the docs page offers "Authorize" and sends the key."""
    documented = copy.deepcopy(spec)
    documented.setdefault("components", {}).setdefault("securitySchemes", {}).update({
        "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
        "BearerKey": {"type": "http", "scheme": "bearer", "description": "the API key as a bearer token"},
    })
    for path, item in documented.get("paths", {}).items():
        if is_open(path, protect_metrics):
            continue
        for method, operation in item.items():
            if method in _HTTP_METHODS and isinstance(operation, dict):
                operation["security"] = [{"ApiKeyHeader": []}, {"BearerKey": []}]
                operation.setdefault("responses", {})["401"] = {"description": "API key missing or invalid"}
    return documented
