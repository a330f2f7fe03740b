"""Everything the service does per request, without BentoML: parse, score, log, answer.

``bento/service.py`` holds one :class:`ServingRuntime` per worker and turns its results and
:class:`RequestError` into HTTP responses.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from churnops.core.settings import StatePaths
from churnops.serving.arrow_body import ARROW_STREAM_TYPES, ArrowBatchParser
from churnops.serving.compiled import Scorer, compile_pipeline
from churnops.serving.config import ServingConfig
from churnops.serving.contract import (
    MAX_ID_LENGTH,
    REQUEST_ID_FIELD,
    FeatureBatch,
    ModelInfo,
    RequestContract,
    RequestError,
)
from churnops.serving.inference_log import InferenceLogUnavailable, InferenceLogWriter, WriterStats
from churnops.serving.packaging import ModelCard, read_model_files
from churnops.serving.pseudonym import load_salt

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "x-request-id"
_ENCODER = msgspec.json.Encoder()
CSV_TYPES = {"text/csv", "application/csv"}


@dataclass(frozen=True)
class Answer:
    body: bytes
    request_id: str
    probabilities: np.ndarray
    labels: np.ndarray
    # Durable inference log: the commit group to await (ServingRuntime.logged) before answering.
    log_group: int | None = None


class ServingRuntime:
    def __init__(self, model_folder: Path, bento_model: str, config: ServingConfig, paths: StatePaths,
                 contract: RequestContract | None = None,
                 log_stats_observer: Callable[[WriterStats, int], None] | None = None) -> None:
        """``contract``: one already built from this model's schema and ``config``'s limits
        (the service builds it at import for its OpenAPI page); built here when absent.
        ``log_stats_observer``: given to the inference log writer (the service's Prometheus metrics)."""
        packaged = read_model_files(model_folder)
        self.card: ModelCard = packaged.card
        self.schema = packaged.schema
        self.config = config
        self.bento_model = bento_model
        self.threshold = float(self.card.threshold)
        self.contract = contract or RequestContract(self.schema, config.limits.max_predict_customers,
                                                    config.limits.max_batch_rows)
        self.scorer: Scorer = compile_pipeline(packaged.pipeline, self.schema)
        # Reason codes (/predict?explain=true): the same churnops.modeling.explain as batch scoring,
        # built by the first request that asks, so serving without the flag does no extra work.
        self._pipeline = packaged.pipeline
        self._explainer: Any = None
        self._category_values = [np.array([*f.categories, None], dtype=object) for f in self.schema.categorical]
        # CSV cells are read as text (nulls when empty) and checked like JSON values; columns
        # that are no field keep Arrow's inferred type and are refused as unknown fields.
        rules = self.contract.rules
        known = [*rules.numeric_names, *rules.categorical_names, *([rules.id_column] if rules.id_column else []),
                 REQUEST_ID_FIELD]
        self._csv_options = pacsv.ConvertOptions(column_types={n: pa.string() for n in known},
                                                 strings_can_be_null=True, null_values=[""])
        self._arrow = ArrowBatchParser(rules, self.contract.max_batch_rows)
        self.log: InferenceLogWriter | None = None
        self.log_directory: Path | None = None
        options = config.inference_log
        if options.enabled:
            self.log_directory = options.resolved_directory(paths)
            salt = None
            if self.schema.id_column:
                pseudonym = config.pseudonymisation
                salt = load_salt(paths, pseudonym.salt_env, pseudonym.salt_file)
            self.log = InferenceLogWriter(
                self.log_directory, self.schema, self.card.model_name, self.card.model_version, salt,
                flush_rows=options.flush_rows, flush_seconds=options.flush_seconds,
                max_pending_rows=options.max_pending_rows, mode=options.mode,
                stats_observer=log_stats_observer,
            )
        self._durable_log = self.log is not None and self.log.durable
        # A challenger beside this model (churnops.serving.rollout), attached by the service.
        self.rollout: Any = None
        self._challenger_common: dict[str, Any] = {}
        # The fields every answer repeats.
        self._common = {"threshold": self.threshold, "model_name": self.card.model_name,
                        "model_version": self.card.model_version}
        card = self.card
        self._info = ModelInfo(
            model_name=card.model_name, model_version=card.model_version, stage=card.stage,
            trained_at=card.trained_at, threshold=self.threshold, metrics=card.metrics,
            estimator=card.estimator, dataset=card.dataset, data_hash=card.data_hash,
            features={name: rules.describe(name) for name in self.schema.feature_names},
            bento_model=bento_model, inference_path=self.scorer.path,
            inference_log=str(self.log_directory) if self.log_directory else None,
        )
        logger.info("serving %s version %s (%s); inference path: %s; inference log: %s",
                    self.card.model_name, self.card.model_version, bento_model, self.scorer.path,
                    self.log_directory or "off")

    # -- endpoints
    def predict(self, body: bytes, header_request_id: str | None, explain: int = 0) -> Answer:
        """``explain``: 0, or how many reasons (top-k) each prediction carries (see :func:`explain_option`)."""
        batch, many = self.contract.parse_predict(body)
        base = _request_id(header_request_id)
        ids = _row_ids(batch.request_ids, base, many)
        reasons = self._reasons(batch, explain) if explain else None  # before scoring: nothing logged on failure
        probabilities, labels, group, answered_by = self._score(batch, ids)
        results = [
            {"request_id": rid, "churn_probability": p, "label": label, **self._common}
            for rid, p, label in zip(ids, probabilities.tolist(), labels.tolist(), strict=True)
        ]
        if answered_by is not None:  # a canary answered some: its version and threshold on those rows
            for result, version in zip(results, answered_by, strict=True):
                if version != self.card.model_version:
                    result.update(self._challenger_common)
        if reasons is not None:
            method = self._explainer.method
            for i, result in enumerate(results):
                result["reasons"] = reasons.row(i)
                result["reasons_method"] = method
        payload = results if many else results[0]
        return Answer(_ENCODER.encode(payload), base, probabilities, labels, group)

    def predict_batch(self, body: bytes, content_type: str, header_request_id: str | None) -> Answer:
        if content_type in CSV_TYPES:
            batch = self._parse_csv(body)
        elif content_type in ("application/json", ""):
            batch = self.contract.parse_batch(body)
        elif content_type in ARROW_STREAM_TYPES:
            batch = self._arrow(body)
        else:
            raise RequestError(415, f"unsupported Content-Type '{content_type}'",
                               [{"loc": ["header", "content-type"], "type": "unsupported_media_type",
                                 "msg": "send application/json (an array of records), text/csv or "
                                        "application/vnd.apache.arrow.stream (an Arrow IPC stream)"}])
        base = _request_id(header_request_id)
        probabilities, labels, group, answered_by = self._score(batch, None, base)
        # Row i's request id is its record's own, else "<request_id>-<i>": derived, not sent back.
        payload = {"request_id": base, **self._common, "rows": len(batch),
                   "churn_probability": probabilities.tolist(), "label": labels.tolist()}
        if answered_by is not None:  # a canary answered some rows: which version answered each
            payload["answered_by"] = answered_by
        return Answer(_ENCODER.encode(payload), base, probabilities, labels, group)

    def model_info(self) -> ModelInfo:
        return self._info

    async def logged(self, group: int) -> None:
        """Durable log: return once ``group``'s records are on disk; 503 if they cannot be written."""
        assert self.log is not None
        try:
            await self.log.committed(group)
        except InferenceLogUnavailable as error:
            raise RequestError(503, "the inference log is unavailable; the prediction was not recorded",
                               [{"loc": ["server"], "type": "log_unavailable", "msg": str(error)}]) from None

    def attach_rollout(self, rollout: Any, challenger_threshold: float) -> None:
        """Serve ``rollout`` (a :class:`churnops.serving.rollout.Rollout`) from now on."""
        self.rollout = rollout
        self._challenger_common = {"threshold": challenger_threshold,
                                   "model_version": rollout.plan.challenger_version}
        self._info = self._info.model_copy(update={"rollout": rollout.describe()})

    def close(self) -> None:
        if self.rollout is not None:
            self.rollout.close()
        if self.log is not None:
            self.log.close()

    # -- internals
    def _reasons(self, batch: FeatureBatch, k: int) -> Any:
        """Top-``k`` reasons (churnops.modeling.explain.ReasonArrays) of the batch's rows."""
        from churnops.modeling.explain import ExplanationError, explainer_for  # only when asked: see __init__

        if self._explainer is None:
            try:
                self._explainer = explainer_for(self._pipeline, self.schema)
            except ExplanationError as why:
                detail = {"loc": ["query", "explain"], "type": "not_implemented", "msg": str(why)}
                raise RequestError(501, "reason codes are not available for this model", [detail]) from None
        # The columns as batch scoring reads them (canonical categories, None for null), without pandas.
        columns: dict[str, np.ndarray] = {name: batch.numeric[:, i] for i, name in enumerate(self.schema.numeric_names)}
        for j, name in enumerate(self.schema.categorical_names):
            columns[name] = self._category_values[j][batch.codes[:, j]]  # code -1 picks the trailing None
        return self._explainer.top_reasons(columns, k)

    def _score(self, batch: FeatureBatch, ids: list[str] | None, base: str | None = None,
               ) -> tuple[np.ndarray, np.ndarray, int | None, list[str] | None]:
        """Probabilities, labels, the durable log's commit group to await (else None), and per row
        the version that answered when a rollout's challenger answered some (else None)."""
        if self.rollout is not None:
            row_ids = ids if ids is not None else [own or f"{base}-{i}" for i, own in enumerate(batch.request_ids)]
            return self.rollout.score(batch, row_ids, self._log_served)
        probabilities = self.scorer(batch)
        labels = (probabilities >= self.threshold).astype(np.int64)
        if self.log is not None:
            group = self.log.append(batch, ids, probabilities, labels, time.time_ns(), base_id=base)
            return probabilities, labels, group if self._durable_log else None, None
        return probabilities, labels, None, None

    def _log_served(self, batch: FeatureBatch, ids: list[str], probabilities: np.ndarray,
                    labels: np.ndarray) -> int | None:
        """Production's answers during a rollout, logged as without one."""
        if self.log is None:
            return None
        group = self.log.append(batch, ids, probabilities, labels, time.time_ns())
        return group if self._durable_log else None

    def _parse_csv(self, body: bytes) -> FeatureBatch:
        """CSV with a header row: the same fields as a JSON record; empty cells are null."""
        rules = self.contract.rules
        try:
            table = pacsv.read_csv(pa.py_buffer(body), convert_options=self._csv_options)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
            raise RequestError(400, "invalid CSV", [{"loc": ["body"], "msg": str(error).splitlines()[0],
                                                      "type": "csv_invalid"}]) from None
        _check_csv_header(table)
        if table.num_rows == 0:
            raise RequestError(400, "CSV has no rows", [{"loc": ["body"], "msg": "at least one row is required",
                                                          "type": "too_short"}])
        if table.num_rows > self.contract.max_batch_rows:
            raise RequestError(400, "too many rows", [{"loc": ["body"], "type": "too_long",
                                                       "msg": f"at most {self.contract.max_batch_rows} rows"}])
        for name in rules.numeric_names:
            if name not in table.column_names:
                continue
            try:
                column = pc.cast(table[name], pa.float64())
            except (pa.ArrowInvalid, pa.ArrowTypeError) as error:
                detail = {"loc": [name], "msg": f"not a number ({error})", "type": "float_parsing"}
                raise RequestError(400, f"invalid CSV value in column {name}", [detail]) from None
            if pc.any(pc.invert(pc.is_finite(column))).as_py():
                raise RequestError(400, f"invalid CSV value in column {name}",
                                   [{"loc": [name], "msg": "numbers must be finite (leave the cell empty for unknown)",
                                     "type": "finite_number"}])
            table = table.set_column(table.column_names.index(name), name, column)
        rows = [{k: v for k, v in row.items() if v is not None or k not in (REQUEST_ID_FIELD, rules.id_column)}
                for row in table.to_pylist()]
        try:
            records = msgspec.convert(rows, type=list[self.contract.struct])
        except msgspec.ValidationError as error:
            raise RequestError(400, "invalid CSV value", [_msgspec_detail(str(error))]) from None
        return self.contract.to_batch(records)


def _check_csv_header(table: pa.Table) -> None:
    """Column names must be UTF-8 and distinct. Arrow checks neither: it keeps header bytes
    as they came (decoded only when read) and allows repeated names, which it then refuses to
    look up."""
    try:
        names = table.column_names
    except UnicodeDecodeError as error:
        detail = {"loc": ["body"], "msg": f"column names must be UTF-8 ({error.reason})", "type": "csv_invalid"}
        raise RequestError(400, "invalid CSV header", [detail]) from None
    repeated = sorted(name for name, count in Counter(names).items() if count > 1)
    if repeated:
        raise RequestError(400, f"repeated CSV column(s): {', '.join(repeated)}",
                           [{"loc": [name], "msg": "each column may appear once", "type": "duplicate_column"}
                            for name in repeated])


def _msgspec_detail(message: str) -> dict[str, Any]:
    """``Expected ... - at `$[3].age``` -> {"loc": [3, "age"], "msg": ...}."""
    text, _, where = message.partition(" - at `")
    loc: list[Any] = []
    for part in where.rstrip("`").removeprefix("$").replace("]", "").replace("[", ".").split("."):
        if part:
            loc.append(int(part) if part.isdigit() else part)
    return {"loc": loc or ["body"], "msg": text, "type": "value_error"}


def _request_id(header: str | None) -> str:
    if header is None or header == "":
        return uuid.uuid4().hex
    if len(header) > MAX_ID_LENGTH or not header.isprintable():
        raise RequestError(400, "invalid X-Request-ID header",
                           [{"loc": ["header", REQUEST_ID_HEADER], "type": "string_too_long",
                             "msg": f"at most {MAX_ID_LENGTH} printable characters"}])
    return header


def _row_ids(own: list[str | None], base: str, many: bool) -> list[str]:
    if not many:
        return [own[0] or base]
    return [rid or f"{base}-{i}" for i, rid in enumerate(own)]


EXPLAIN_DEFAULT_TOP_K = 3
EXPLAIN_MAX_TOP_K = 10
_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}


def explain_option(query: bytes | str) -> int:
    """``/predict?explain=true[&top_k=N]`` -> N reasons per prediction (default 3, 1..10); 0 without
    the flag. Bad values are a 400 naming the parameter; other parameters are ignored."""
    if not query:
        return 0  # the common case costs one check
    text = query.decode("latin-1") if isinstance(query, bytes) else query
    params = dict(parse_qsl(text, keep_blank_values=True))
    flag, top_k = params.get("explain"), params.get("top_k")
    if flag is not None and flag.lower() not in _TRUE | _FALSE:
        raise RequestError(400, "invalid query parameter explain",
                           [{"loc": ["query", "explain"], "type": "bool_parsing", "msg": "use explain=true or false"}])
    on = flag is not None and flag.lower() in _TRUE
    if top_k is None:
        return EXPLAIN_DEFAULT_TOP_K if on else 0
    if not on:
        raise RequestError(400, "top_k needs explain=true",
                           [{"loc": ["query", "top_k"], "type": "missing_explain",
                             "msg": "top_k sets how many reasons /predict?explain=true returns"}])
    if not (top_k.isascii() and top_k.isdigit()) or not 1 <= int(top_k) <= EXPLAIN_MAX_TOP_K:
        raise RequestError(400, "invalid query parameter top_k",
                           [{"loc": ["query", "top_k"], "type": "int_range",
                             "msg": f"a whole number from 1 to {EXPLAIN_MAX_TOP_K}, got {top_k!r}"}])
    return int(top_k)
