"""A lean HTTP path for the scoring endpoints, inside the BentoML service.

Why: BentoML 1.4.39 runs every request, also those of an app mounted with ``@bentoml.asgi_app``,
through its whole middleware stack: OpenTelemetry (four spans per request), request metrics,
the access log, a timeout task, its request context. On one core that costs about 0.8 ms a
request, eight times a bare Starlette endpoint and ten times our own scoring code.

What: :class:`LeanRoutes` answers ``POST /predict`` and ``POST /predict_batch`` as a plain ASGI
callable, in front of that stack; every other request (the probes, ``/metrics``, the docs,
``/model_info``, any other method) goes through BentoML as before. The lean path keeps what the
stack gave these routes:

- the service's own ASGI middlewares (API key, body-size limit), in the service's order;
- BentoML's request metrics, recorded on BentoML's own metric objects (same names, labels and
  series: ``bentoml_service_request_total``, ``..._request_duration_seconds``,
  ``..._last_request_timestamp_seconds``);
- the access log line (logger ``bentoml.access``, BentoML's format) when it is on;
- a 500 with BentoML's body, and the exception logged, for an unexpected error;
- the ``Server`` header BentoML adds to API answers.

How it is installed: :class:`InstallLeanRoutes` is added as one of the service's ASGI middlewares.
BentoML builds its Starlette app, whose ``middleware_stack`` is built on the first call, the
lifespan start-up; at that call the middleware wraps the built stack in :class:`FrontDoor`.
When something it needs is missing (a BentoML or Starlette version that moved it), it logs a
warning and installs nothing: the requests then take BentoML's path, slower but the same.
"""

from __future__ import annotations

import logging
import time
import typing as t
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

logger = logging.getLogger("bentoml.service.churn")
access_logger = logging.getLogger("bentoml.access")

Scope = dict[str, t.Any]
Message = dict[str, t.Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LEAN_METHOD = "POST"
SERVER_ERROR_BODY = b'{"error":"An unexpected error has occurred, please check the server log."}'


@dataclass(frozen=True)
class HttpAnswer:
    """What a handler answers: status, body (JSON) and extra headers."""

    status: int
    body: bytes
    headers: Sequence[tuple[bytes, bytes]] = ()


@dataclass(frozen=True)
class LeanRequest:
    """The parts of a request the handlers read; header names are lower-case bytes."""

    path: str
    body: bytes
    headers: dict[bytes, bytes]
    query_string: bytes

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return None if value is None else value.decode("latin-1")


Handler = Callable[[LeanRequest], Awaitable[HttpAnswer]]


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body; None if the client went away first."""
    message = await receive()
    if message["type"] != "http.request":
        return None
    body = message.get("body", b"")
    if not message.get("more_body", False):
        return body
    chunks = [body]
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


@dataclass
class RequestMetrics:
    """BentoML's request metrics, on the metric objects of its own middleware instance."""

    middleware: t.Any
    labels: Callable[[], dict[str, str]]
    _children: dict[tuple[str, int], tuple[t.Any, t.Any]] = field(default_factory=dict)
    _timestamps: t.Any = None

    def observe(self, endpoint: str, status: int, seconds: float) -> None:
        children = self._children.get((endpoint, status))
        if children is None:
            labels = {"endpoint": endpoint, "http_response_code": status, **self.labels()}
            children = self._children[endpoint, status] = (
                self.middleware.metrics_request_total.labels(**labels),
                self.middleware.metrics_request_duration.labels(**labels))
        children[0].inc()
        children[1].observe(seconds)
        if self._timestamps is None:
            self._timestamps = self.middleware.metrics_last_request_timestamp.labels(**self.labels())
        self._timestamps.set_to_current_time()


class LeanRoutes:
    """The ASGI callable of the lean path: the whole body in, the handler of the path, its answer out."""

    def __init__(self, access_log: bool, server_header: str) -> None:
        self.handlers: dict[str, Handler] = {}
        self.access_log = access_log
        self._server_header = (b"server", server_header.encode("latin-1"))
        self.metrics: RequestMetrics | None = None

    def bind(self, handlers: dict[str, Handler]) -> None:
        """Called by the service instance once it is loaded (its __init__); in place, as
        :class:`FrontDoor` reads the same dict."""
        self.handlers.clear()
        self.handlers.update(handlers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        body = await read_body(receive)
        if body is None:  # the client disconnected: nothing to answer
            return
        # reversed: a repeated header reads as its first value, as Starlette's Headers.get does.
        request = LeanRequest(path, body, dict(reversed(scope["headers"])), scope.get("query_string", b""))
        try:
            answer = await self.handlers[path](request)
        except Exception:
            logger.exception("unexpected error answering %s %s", scope.get("method"), path)
            answer = HttpAnswer(500, SERVER_ERROR_BODY)
        await send({"type": "http.response.start", "status": answer.status, "headers": [
            (b"content-type", b"application/json"), (b"content-length", str(len(answer.body)).encode()),
            *answer.headers, self._server_header]})
        await send({"type": "http.response.body", "body": answer.body})


class Observed:
    """Request metrics and the access log around the whole lean chain, as BentoML's middlewares
    sit outside the service's own: a 401 or 413 from those is counted and logged too."""

    def __init__(self, app: ASGIApp, routes: LeanRoutes) -> None:
        self.app, self.routes = app, routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        answered: list[Message] = []

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answered.append(message)
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            elapsed = time.perf_counter() - started
            status = answered[0]["status"] if answered else 500
            if self.routes.metrics is not None:
                self.routes.metrics.observe(scope["path"], status, elapsed)
            if self.routes.access_log:
                _log_access(scope, answered[0]["headers"] if answered else [], status, elapsed)


def _log_access(scope: Scope, response_headers: list[tuple[bytes, bytes]], status: int, seconds: float) -> None:
    """One line in BentoML's access-log format (bentoml/_internal/server/http/access.py)."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    request_type = request_length = response_type = response_length = b""
    for name, value in scope["headers"]:
        if name == b"content-length":
            request_length = value
        elif name == b"content-type":
            request_type = value
    for name, value in response_headers:
        if name == b"content-length":
            response_length = value
        elif name == b"content-type":
            response_type = value
    client = scope.get("client")
    address = f"{client[0]}:{client[1]}" if client else "_"
    access_logger.info("%s (scheme=%s,method=%s,path=%s,type=%s,length=%s) (status=%d,type=%s,length=%s) %.3fms",
                       address, scope.get("scheme", "http"), scope.get("method"), scope["path"],
                       request_type.decode("latin-1"), request_length.decode("latin-1"), status,
                       response_type.decode("latin-1"), response_length.decode("latin-1"), seconds * 1e3)


class FrontDoor:
    """``POST`` to a lean path: the lean chain; anything else: BentoML's middleware stack."""

    def __init__(self, lean: ASGIApp, paths: t.Container[str], stack: ASGIApp) -> None:
        self.lean, self.paths, self.stack = lean, paths, stack

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == LEAN_METHOD and scope["path"] in self.paths:
            await self.lean(scope, receive, send)
        else:
            await self.stack(scope, receive, send)


def find_in_stack(stack: t.Any, class_name: str) -> t.Any:
    """The middleware of that class name in a Starlette middleware chain (each holds ``.app``)."""
    seen = 0
    while stack is not None and seen < 64:
        if type(stack).__name__ == class_name:
            return stack
        stack, seen = getattr(stack, "app", None), seen + 1
    return None


def lean_chain(routes: LeanRoutes, middlewares: Sequence[tuple[type, dict[str, t.Any]]]) -> ASGIApp:
    """The service's own ASGI middlewares (outermost first, as in Starlette) around the lean
    routes, inside the request metrics and access log."""
    app: ASGIApp = routes
    for middleware_class, options in reversed(middlewares):
        if middleware_class is InstallLeanRoutes:
            continue
        app = middleware_class(app, **options)
    return Observed(app, routes)


class InstallLeanRoutes:
    """An ASGI middleware of the service that puts :class:`FrontDoor` in front of BentoML's stack.

    ``routes``: the lean routes; ``middlewares``: the service's middleware list (read at start-up,
    so those added after this one count too); ``metric_labels``: BentoML's labels for the request
    metrics, read per worker.
    """

    METRICS_MIDDLEWARE = "RunnerTrafficMetricsMiddleware"

    def __init__(self, app: ASGIApp, routes: LeanRoutes, middlewares: Sequence[tuple[type, dict[str, t.Any]]],
                 metric_labels: Callable[[], dict[str, str]], metrics_enabled: bool = True) -> None:
        self.app = app
        self.routes = routes
        self.middlewares = middlewares
        self.metric_labels = metric_labels
        self.metrics_enabled = metrics_enabled
        self.installed = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan" and not self.installed:
            self.installed = True
            self.install(scope.get("app"))
        await self.app(scope, receive, send)

    def install(self, starlette_app: t.Any) -> bool:
        stack = getattr(starlette_app, "middleware_stack", None)
        if stack is None:
            logger.warning("lean routes not installed: no built Starlette middleware stack; "
                           "/predict and /predict_batch take BentoML's slower path")
            return False
        if self.metrics_enabled:
            metrics = find_in_stack(stack, self.METRICS_MIDDLEWARE)
            if metrics is None or not all(hasattr(metrics, name) for name in ("_setup", "_is_setup")):
                logger.warning("lean routes not installed: BentoML's %s not found; /predict and /predict_batch "
                               "take BentoML's slower path", self.METRICS_MIDDLEWARE)
                return False
            if not metrics._is_setup:
                metrics._setup()
            self.routes.metrics = RequestMetrics(metrics, self.metric_labels)
        starlette_app.middleware_stack = FrontDoor(lean_chain(self.routes, self.middlewares),
                                                   self.routes.handlers, stack)
        logger.info("lean routes installed: POST /predict and /predict_batch are answered in front of "
                    "BentoML's middleware stack")
        return True
