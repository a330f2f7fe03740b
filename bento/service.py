"""The churn-prediction service: BentoML 1.4, new-style ``@bentoml.service``.

Endpoints: ``POST /predict`` (one customer or a list), ``POST /predict_batch`` (a JSON array
of records or a CSV upload), ``GET /model_info`` (also ``/model-info``), BentoML's
``/healthz``, ``/readyz``, ``/metrics``, ``/health`` (as ``/healthz``) and the Swagger UI at ``/``
(bento/docs_page.py: same-origin files only). With an API key configured (``auth:`` in
configs/serving.yaml) everything but the probes, metrics and docs needs it (bento/api_key_auth.py).

Which model: the bento argument ``model_tag`` (a BentoML model tag). ``run.py --pipeline
deploy`` builds a Bento with it pinned; ``bentoml serve bento/service.py:ChurnService --arg
model_tag=churn_classifier:<version>`` serves any stored model from source.

Everything per request lives in ``churnops.serving.runtime``; this module only adapts it
to HTTP and Prometheus.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import typing as t
from pathlib import Path

import anyio.to_thread
import bentoml
import numpy as np
from fastapi import FastAPI
from pydantic import BaseModel
from starlette.responses import JSONResponse, PlainTextResponse, Response

from bento.api_key_auth import ApiKeyAuth, document_api_key
from bento.docs_page import SPEC_PATH, add_docs_routes
from bento.lean_route import HttpAnswer, InstallLeanRoutes, LeanRequest, LeanRoutes
from bento.limits import BodySizeLimit
from bento.request_body import documented_output, raw_body_spec
from churnops.core.settings import state_paths
from churnops.serving.api_keys import configured_api_keys
from churnops.serving.config import load_serving_config
from churnops.serving.contract import (
    MAX_ID_LENGTH,
    BatchPrediction,
    ModelInfo,
    Prediction,
    RequestContract,
    RequestError,
)
from churnops.serving.log_metrics import InferenceLogMetrics
from churnops.serving.packaging import FILES_SHA256_KEY, read_schema, verify_model_files
from churnops.serving.rollout import attach_challenger
from churnops.serving.runtime import REQUEST_ID_HEADER, Answer, ServingRuntime, explain_option

logger = logging.getLogger("bentoml.service.churn")

# Bodies above this size are scored on a worker thread so one large batch cannot stall
# health checks and small requests on the event loop.
THREAD_OFFLOAD_BYTES = 2 * 2**20
REQUEST_ID_BYTES = REQUEST_ID_HEADER.encode()


class ServiceArguments(BaseModel):
    model_tag: str = "churn_classifier:latest"
    # A challenger beside the model (churnops.serving.rollout): `deploy --shadow VERSION` / `--canary PERCENT`.
    challenger_tag: str | None = None
    rollout_mode: str | None = None  # shadow | canary
    canary_percent: float = 0.0
    rollout_id: str | None = None
    rollout_started_at: str | None = None


ARGUMENTS = bentoml.use_arguments(ServiceArguments)
CONFIG = load_serving_config()
if "CHURNOPS_HOME" not in os.environ:
    logger.warning("CHURNOPS_HOME is not set: the inference log and salt go to %s; run "
                   '`eval "$(python -m churnops.core.settings)"` first to use the project state folder',
                   state_paths().home)
# The accepted API keys (auth: in configs/serving.yaml); a malformed one stops the start-up.
API_KEYS = configured_api_keys(CONFIG.auth)
if not API_KEYS and bentoml.server_context.worker_index == 1:  # once per server, not per process
    logger.warning("The API is unauthenticated: anyone who reaches this port can score and read model details. "
                   "Set %s (one key of 16+ characters, or several comma-separated)%s to require it as "
                   "`Authorization: Bearer <key>` or `X-API-Key: <key>`; see auth: in configs/serving.yaml",
                   CONFIG.auth.key_env, f", or the ZenML secret '{CONFIG.auth.zenml_secret}' (key "
                   f"'{CONFIG.auth.zenml_secret_key}') read by run.py," if CONFIG.auth.zenml_secret else "")
MODEL = bentoml.models.BentoModel(ARGUMENTS.model_tag)
CHALLENGER = bentoml.models.BentoModel(ARGUMENTS.challenger_tag) if ARGUMENTS.challenger_tag else None

# The request contract is generated from the dataset schema stored with the model, so the
# OpenAPI page shows this model's fields, ranges and categories.
_stored = MODEL.stored
if _stored is None:
    raise bentoml.exceptions.NotFound(
        f"model '{ARGUMENTS.model_tag}' is not in the BentoML store at $BENTOML_HOME; "
        "package one with `python run.py --pipeline deploy`"
    )
# Refuse to start (the worker never turns ready) on any model file that changed since packaging.
verify_model_files(Path(_stored.path), _stored.info.metadata.get(FILES_SHA256_KEY))
if CHALLENGER is not None:
    if CHALLENGER.stored is None:
        raise bentoml.exceptions.NotFound(f"challenger model '{ARGUMENTS.challenger_tag}' is not in the BentoML store")
    verify_model_files(Path(CHALLENGER.stored.path), CHALLENGER.stored.info.metadata.get(FILES_SHA256_KEY))
_contract = RequestContract(read_schema(Path(_stored.path)), CONFIG.limits.max_predict_customers,
                            CONFIG.limits.max_batch_rows)
PREDICT_INPUT = raw_body_spec("PredictInput", _contract.predict_input)
BATCH_INPUT = raw_body_spec("PredictBatchInput", _contract.batch_input)
PREDICT_OUTPUT = documented_output("PredictOutput", Prediction | list[Prediction])
BATCH_OUTPUT = documented_output("PredictBatchOutput", BatchPrediction)

# POST /predict and /predict_batch answered in front of BentoML's middleware stack (bento/lean_route.py).
LEAN_ROUTES = LeanRoutes(access_log=CONFIG.service.access_log, server_header="BentoML Service/churn_service")

info_app = FastAPI(title="churn model info", docs_url=None, redoc_url=None, openapi_url=None)
# Ahead of BentoML's own routes for / (its page embeds Google Tag Manager): our docs page.
add_docs_routes(info_app, enabled=CONFIG.docs.enabled, title="churn_service API")


@info_app.get("/health", tags=["Infrastructure"], response_class=PlainTextResponse)
async def health() -> PlainTextResponse:
    """Liveness, as /healthz (the name the seed service used)."""
    return PlainTextResponse("\n")


if API_KEYS:
    @info_app.get(SPEC_PATH, include_in_schema=False)
    async def openapi_with_api_key() -> JSONResponse:
        """BentoML's /docs.json plus the API key's security schemes, so the docs page can send it."""
        return JSONResponse(document_api_key(ChurnService.openapi_spec.asdict(), CONFIG.auth.protect_metrics))


@bentoml.asgi_app(info_app, path="/")
@bentoml.service(name="churn_service", **CONFIG.service.bentoml_options())
class ChurnService:
    bento_model = MODEL
    challenger_model = CHALLENGER  # None without a rollout; a BentoModel is packaged into the Bento

    def __init__(self) -> None:
        stored = self.bento_model
        # Loaded once per worker process; the compiled scorer is parity-checked here.
        # In the worker, after BentoML has set PROMETHEUS_MULTIPROC_DIR (as PredictionMetrics).
        log_metrics = InferenceLogMetrics() if CONFIG.inference_log.enabled else None
        self.runtime = ServingRuntime(Path(stored.path), str(stored.tag), CONFIG, state_paths(), _contract,
                                      log_stats_observer=log_metrics.observe if log_metrics else None)
        if CHALLENGER is not None:  # a challenger beside the model (churnops/serving/rollout.py)
            attach_challenger(self.runtime, Path(CHALLENGER.stored.path), CONFIG, state_paths(),
                              mode=ARGUMENTS.rollout_mode or "shadow", rollout_id=ARGUMENTS.rollout_id or "unnamed",
                              started_at=ARGUMENTS.rollout_started_at or "", canary_percent=ARGUMENTS.canary_percent)
        self.metrics = PredictionMetrics.shared()
        LEAN_ROUTES.bind({"/predict": self._lean_predict, "/predict_batch": self._lean_predict_batch})
        # Everything loaded so far lives as long as the worker: keep it out of the cyclic GC's
        # full collections, which otherwise walk the whole heap and stall requests. A 1k-row
        # batch allocates thousands of short-lived acyclic objects; a larger young generation
        # spares a dozen collections per request (about 20 % of a batch request's CPU).
        gc.freeze()
        gc.set_threshold(50_000, 50, 100)

    @bentoml.api(route="/predict", input_spec=PREDICT_INPUT, output_spec=PREDICT_OUTPUT)
    async def predict(self, body: bytes, /, ctx: bentoml.Context) -> Response:
        """Churn probability and label for one customer (an object) or several (an array)."""
        query = ctx.request.url.query  # ?explain=true[&top_k=N]: reason codes
        return await self._respond(ctx, body, "predict",
                                   lambda rid: self.runtime.predict(body, rid, explain=explain_option(query)))

    @bentoml.api(route="/predict_batch", input_spec=BATCH_INPUT, output_spec=BATCH_OUTPUT)
    async def predict_batch(self, body: bytes, /, ctx: bentoml.Context) -> Response:
        """Many customers at once: a JSON array of records, CSV with a header row (Content-Type:
        text/csv) or an Arrow IPC stream (application/vnd.apache.arrow.stream, the fastest). Answers column-wise."""
        content_type = ctx.request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
        return await self._respond(ctx, body, "predict_batch",
                                   lambda rid: self.runtime.predict_batch(body, content_type, rid))

    @info_app.get("/model_info", response_model=ModelInfo)
    @info_app.get("/model-info", response_model=ModelInfo, include_in_schema=False)
    def model_info(self) -> ModelInfo:
        """The served model: version, stage, metrics, threshold, expected features."""
        return self.runtime.model_info()

    @bentoml.on_shutdown
    def flush_inference_log(self) -> None:
        self.runtime.close()

    async def _lean_predict(self, request: LeanRequest) -> HttpAnswer:
        """POST /predict on the lean path (bento/lean_route.py): the same answer as predict()."""
        body = request.body
        query = request.query_string
        return await self._answer("predict", body, request.header(REQUEST_ID_BYTES),
                                  lambda rid: self.runtime.predict(body, rid, explain=explain_option(query)))

    async def _lean_predict_batch(self, request: LeanRequest) -> HttpAnswer:
        """POST /predict_batch on the lean path: the same answer as predict_batch()."""
        body = request.body
        content_type = (request.header(b"content-type") or "application/json").split(";")[0].strip().lower()
        return await self._answer("predict_batch", body, request.header(REQUEST_ID_BYTES),
                                  lambda rid: self.runtime.predict_batch(body, content_type, rid))

    async def _respond(self, ctx: bentoml.Context, body: bytes, endpoint: str,
                       answer: t.Callable[[str | None], Answer]) -> Response:
        """BentoML's path (when the lean routes are not installed): the same answer as a Response."""
        answered = await self._answer(endpoint, body, ctx.request.headers.get(REQUEST_ID_HEADER), answer)
        if answered.status != 200:
            ctx.response.status_code = answered.status  # BentoML copies it onto the returned Response
        return Response(answered.body, status_code=answered.status, media_type="application/json",
                        headers={name.decode(): value.decode("latin-1") for name, value in answered.headers})

    async def _answer(self, endpoint: str, body: bytes, request_id: str | None,
                      answer: t.Callable[[str | None], Answer]) -> HttpAnswer:
        """Score (large bodies on a worker thread), wait for a durable log, count; RequestError -> 4xx/503."""
        try:
            if len(body) > THREAD_OFFLOAD_BYTES:
                result = await anyio.to_thread.run_sync(answer, request_id)
            else:
                result = answer(request_id)
            if result.log_group is not None:  # durable inference log: answer once the record is on disk
                await self.runtime.logged(result.log_group)
        except RequestError as error:
            echoed = request_id and len(request_id) <= MAX_ID_LENGTH
            return HttpAnswer(error.status, json.dumps(error.body()).encode(),
                              ((REQUEST_ID_BYTES, request_id.encode("latin-1")),) if echoed else ())
        self.metrics.observe(endpoint, result.labels, result.probabilities)
        return HttpAnswer(200, result.body, ((REQUEST_ID_BYTES, result.request_id.encode("latin-1")),))


if API_KEYS:  # outermost of ours: a client without a key is refused before its body is read
    ChurnService.add_asgi_middleware(ApiKeyAuth, keys=API_KEYS, protect_metrics=CONFIG.auth.protect_metrics)
ChurnService.add_asgi_middleware(BodySizeLimit, max_bytes=CONFIG.limits.max_body_bytes)
# Last: the lean routes take the middlewares above (read at start-up) in the same order.
# CHURNOPS_LEAN_ROUTES=off leaves /predict and /predict_batch on BentoML's path (the benchmark compares both).
if os.environ.get("CHURNOPS_LEAN_ROUTES", "on").lower() != "off":
    ChurnService.add_asgi_middleware(
        InstallLeanRoutes, routes=LEAN_ROUTES, middlewares=ChurnService.middlewares,
        metric_labels=lambda: {"service_name": bentoml.server_context.bento_name,
                               "service_version": bentoml.server_context.bento_version,
                               "runner_name": bentoml.server_context.service_name})


class PredictionMetrics:
    """Prometheus metrics of the model's answers, next to BentoML's own request metrics.

    Created in the worker, after BentoML has set PROMETHEUS_MULTIPROC_DIR: prometheus_client
    picks its multi-process storage when it is first imported.
    """

    _instance: PredictionMetrics | None = None
    BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 1.0)

    def __init__(self) -> None:
        import prometheus_client

        self.predictions = prometheus_client.Counter(
            "churn_predictions", "Predictions served, by predicted label (1 = churn) and endpoint",
            labelnames=["label", "endpoint"],
        )
        self.probability = prometheus_client.Histogram(
            "churn_probability", "Predicted churn probabilities", buckets=self.BUCKETS,
        )
        # Labelled children, looked up once per (endpoint, label) rather than per request.
        self._counters: dict[tuple[str, str], t.Any] = {}
        # Every series exported from the start, at 0: rate() then counts a label's first predictions,
        # and a churn share that falls to nothing reads 0 rather than no data (deploy/prometheus/alerts.yml).
        for endpoint in ("predict", "predict_batch"):
            for label in ("0", "1"):
                self._counter(endpoint, label)
        # Histogram internals for observing a batch at once; None if prometheus_client moved them.
        try:
            self._bounds = np.asarray(self.probability._upper_bounds, dtype=np.float64)
            self._buckets, self._sum = self.probability._buckets, self.probability._sum
        except AttributeError:
            self._bounds = None

    @classmethod
    def shared(cls) -> PredictionMetrics:
        if cls._instance is None:
            cls._instance = cls()
        return cls._instance

    def observe(self, endpoint: str, labels: np.ndarray, probabilities: np.ndarray) -> None:
        positives = int(labels.sum())
        if positives:
            self._counter(endpoint, "1").inc(positives)
        if len(labels) - positives:
            self._counter(endpoint, "0").inc(len(labels) - positives)
        if len(probabilities) == 1:
            self.probability.observe(float(probabilities[0]))
        else:
            self._observe_many(probabilities)

    def _counter(self, endpoint: str, label: str) -> t.Any:
        child = self._counters.get((endpoint, label))
        if child is None:
            child = self._counters[endpoint, label] = self.predictions.labels(label=label, endpoint=endpoint)
        return child

    def _observe_many(self, values: np.ndarray) -> None:
        """Histogram.observe for many values at once: one increment per bucket, not per value.

        Uses prometheus_client's Histogram internals (``_upper_bounds``, ``_buckets``, ``_sum``);
        if they move, falls back to one observe per value.
        """
        if self._bounds is None:
            for value in values.tolist():
                self.probability.observe(value)
            return
        # A value v belongs to the first bucket with v <= bound, as in Histogram.observe.
        counts = np.bincount(np.searchsorted(self._bounds, values, side="left"), minlength=len(self._bounds))
        for bucket, count in zip(self._buckets, counts.tolist(), strict=False):
            if count:
                bucket.inc(count)
        self._sum.inc(float(values.sum()))
