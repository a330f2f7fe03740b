"""The request contract of the churn service, generated from the dataset schema.

A customer record carries every schema feature (required; ``null`` means unknown and is
imputed the way training imputed it), optionally the schema's id column (stored only as a
salted hash) and optionally its own ``request_id``. Numbers must be finite JSON numbers inside
the schema's range (whole numbers for ``int`` features); categories must be declared ones or
their declared synonyms; unknown fields are refused.

Two validators implement that one contract:

* pydantic models (the typed contract, shown in the OpenAPI page and used by ``/predict``);
* a msgspec decoder for ``/predict_batch``, several times faster on 1k-row bodies.

They are generated from the same :class:`FieldRules`. On any msgspec failure the body is
re-validated with pydantic, so both endpoints report errors in the same words.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from operator import attrgetter
from typing import Annotated, Any, Literal, Union

import msgspec
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model

from churnops.data.schema import DatasetSchema

REQUEST_ID_FIELD = "request_id"
MAX_ID_LENGTH = 128


class RequestError(ValueError):
    """A request the service refuses, with the HTTP status and per-field details."""

    def __init__(self, status: int, message: str, detail: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.detail = detail or []

    def body(self) -> dict[str, Any]:
        return {"error": self.message, "detail": self.detail}


@dataclass(frozen=True)
class FeatureBatch:
    """Validated records as arrays, in schema order.

    ``numeric`` is float64 with NaN for null; ``codes`` holds, per categorical feature, the
    index of the canonical category in the schema (-1 for null).
    """

    numeric: np.ndarray
    codes: np.ndarray
    customer_ids: list[str | None] | None
    request_ids: list[str | None]

    def __len__(self) -> int:
        return int(self.numeric.shape[0])


class FieldRules:
    """Per-feature rules derived from a :class:`DatasetSchema`, shared by both validators."""

    def __init__(self, schema: DatasetSchema) -> None:
        reserved = {REQUEST_ID_FIELD} & {*schema.feature_names, schema.id_column}
        if reserved:
            raise ValueError(f"dataset schema uses the reserved field name(s) {sorted(reserved)}")
        self.schema = schema
        self.numeric_names = schema.numeric_names
        self.categorical_names = schema.categorical_names
        self.id_column = schema.id_column
        self.categories = {f.name: list(f.categories) for f in schema.categorical}
        # Every accepted spelling -> index of its canonical category.
        self.spellings: dict[str, dict[str, int]] = {}
        for feature in schema.categorical:
            codes = {value: i for i, value in enumerate(feature.categories)}
            for alias, canonical in feature.synonyms.items():
                codes.setdefault(alias, codes[canonical])
            self.spellings[feature.name] = codes

    def numeric_bounds(self, name: str) -> tuple[float | None, float | None, bool]:
        feature = next(f for f in self.schema.numeric if f.name == name)
        return feature.min, feature.max, feature.kind == "int"

    def describe(self, name: str) -> str:
        if name in self.spellings:
            return "one of " + ", ".join(repr(c) for c in self.categories[name]) + " or null"
        low, high, whole = self.numeric_bounds(name)
        kind = "a whole number" if whole else "a finite number"
        bounds = f" in [{'-inf' if low is None else f'{low:g}'}, {'inf' if high is None else f'{high:g}'}]"
        return kind + bounds + " or null"


def _example(rules: FieldRules) -> dict[str, Any]:
    example: dict[str, Any] = {}
    if rules.id_column:
        example[rules.id_column] = "C-000123"
    for name in rules.numeric_names:
        low, high, whole = rules.numeric_bounds(name)
        low = 0.0 if low is None else low
        high = low + 100.0 if high is None else high
        value = low + (high - low) * 0.1
        example[name] = round(value) if whole else round(value, 2)
    for name in rules.categorical_names:
        example[name] = rules.categories[name][0]
    return example


# ---------------------------------------------------------------------------------------- pydantic


def customer_model(rules: FieldRules) -> type[BaseModel]:
    """The pydantic model of one customer record."""
    fields: dict[str, Any] = {}
    if rules.id_column:
        fields[rules.id_column] = (
            Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None,
            Field(None, description="Customer identifier; the inference log keeps only its salted hash."),
        )
    fields[REQUEST_ID_FIELD] = (
        Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)] | None,
        Field(None, description="Caller's id for this prediction; generated when absent."),
    )
    for name in rules.numeric_names:
        low, high, whole = rules.numeric_bounds(name)
        number = Annotated[float, Field(strict=True, ge=low, le=high, allow_inf_nan=False,
                                        multiple_of=1 if whole else None)]
        fields[name] = (number | None, Field(..., description=rules.describe(name)))
    for name in rules.categorical_names:
        choices = Literal[tuple(rules.spellings[name])]  # type: ignore[valid-type]
        fields[name] = (choices | None, Field(..., description=rules.describe(name)))
    return create_model(
        "Customer",
        __config__=ConfigDict(extra="forbid", json_schema_extra={"example": _example(rules)}),
        **fields,
    )


class Reason(BaseModel):
    """One reason a customer is at risk (``/predict?explain=true``), from churnops.modeling.explain."""

    feature: str = Field(description="The dataset feature, e.g. contract_type")
    label: str = Field(description="The feature and this customer's value, e.g. 'contract_type = Month-to-month'")
    contribution: float = Field(description="How far it pushes the risk up (> 0), in the units reasons_method names "
                                            "(log-odds for linear and boosted models, probability for forests)")


class Prediction(BaseModel):
    request_id: str
    churn_probability: float = Field(description="P(churn) from the model")
    label: int = Field(description="1 = predicted to churn: churn_probability >= threshold")
    threshold: float
    model_name: str
    model_version: str
    reasons: list[Reason] | None = Field(None, description="With ?explain=true only: the top_k (default 3) "
                                                          "features pushing this customer's risk up, largest first")
    reasons_method: str | None = Field(None, description="With ?explain=true only: how reasons are computed, "
                                                         "e.g. linear-exact-log-odds")


class BatchPrediction(BaseModel):
    request_id: str = Field(description="Id of the whole request. Row i's id (in the inference log, for "
                                        "feedback) is its record's own request_id, else <request_id>-<i>")
    model_name: str
    model_version: str
    threshold: float
    rows: int
    churn_probability: list[float] = Field(description="In the order of the records sent")
    label: list[int]


class ModelInfo(BaseModel):
    model_name: str
    model_version: str
    stage: str | None
    trained_at: str | None
    threshold: float
    metrics: dict[str, float]
    estimator: str | None
    dataset: str
    data_hash: str | None
    features: dict[str, str]
    bento_model: str
    inference_path: str
    inference_log: str | None
    # A challenger served beside this model (shadow or canary): mode, versions, share, rollout id.
    rollout: dict[str, Any] | None = None


# ----------------------------------------------------------------------------------------- msgspec


def customer_struct(rules: FieldRules) -> type[msgspec.Struct]:
    """The msgspec mirror of :func:`customer_model`."""
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    for name in rules.numeric_names:
        low, high, whole = rules.numeric_bounds(name)
        meta = msgspec.Meta(ge=low, le=high, multiple_of=1.0 if whole else None)
        fields.append((name, Union[Annotated[float, meta], None]))  # noqa: UP007
    for name in rules.categorical_names:
        fields.append((name, Union[Literal[tuple(rules.spellings[name])], None]))  # type: ignore[valid-type]  # noqa: UP007
    text = Union[Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LENGTH)], None]  # noqa: UP007
    if rules.id_column:
        fields.append((rules.id_column, text, None))
    fields.append((REQUEST_ID_FIELD, text, None))
    # gc=False: a 1k-row batch would otherwise add a thousand objects for the cyclic GC to track.
    return msgspec.defstruct("CustomerRecord", fields, forbid_unknown_fields=True, gc=False)


# ------------------------------------------------------------------------------------------ contract


class RequestContract:
    """Parses request bodies into :class:`FeatureBatch` or raises :class:`RequestError`."""

    def __init__(self, schema: DatasetSchema, max_predict_customers: int, max_batch_rows: int) -> None:
        self.rules = FieldRules(schema)
        self.max_predict_customers = max_predict_customers
        self.max_batch_rows = max_batch_rows
        self.customer = customer_model(self.rules)
        self.customer_list = Annotated[list[self.customer], Field(min_length=1, max_length=max_predict_customers)]
        self.predict_input = Union[self.customer, self.customer_list]  # noqa: UP007
        self.batch_input = Annotated[list[self.customer], Field(min_length=1, max_length=max_batch_rows)]
        self._one = TypeAdapter(self.customer)
        self._many = TypeAdapter(self.customer_list)
        self._batch = TypeAdapter(self.batch_input)
        # The msgspec record type: /predict_batch JSON bodies, and CSV rows (ServingRuntime).
        self.struct = customer_struct(self.rules)
        self._batch_decoder = msgspec.json.Decoder(
            Annotated[list[self.struct], msgspec.Meta(min_length=1, max_length=max_batch_rows)]
        )
        # Features in schema order, then the id column (if any), then request_id: always 2+ names,
        # so the getter returns a tuple.
        self._fields = attrgetter(*self.rules.numeric_names, *self.rules.categorical_names,
                                  *([self.rules.id_column] if self.rules.id_column else []), REQUEST_ID_FIELD)
        # Spelling -> category code, with null -> -1, looked up in C by np.fromiter(map(...)).
        self._codes = [{**self.rules.spellings[n], None: -1} for n in self.rules.categorical_names]

    # -- parsing
    def parse_predict(self, body: bytes) -> tuple[FeatureBatch, bool]:
        """``/predict``: one customer object or a list; returns the batch and whether it was a list."""
        many = body.lstrip()[:1] == b"["
        adapter = self._many if many else self._one
        try:
            parsed = adapter.validate_json(body)
        except ValidationError as error:
            raise _explain(error, adapter, body) from None
        records = parsed if many else [parsed]
        return self.to_batch(records), many

    def parse_batch(self, body: bytes) -> FeatureBatch:
        """``/predict_batch``: a JSON array of customer records."""
        try:
            records = self._batch_decoder.decode(body)
        # msgspec 0.22 raises UnicodeDecodeError, not DecodeError, for invalid UTF-8 in an object key.
        except (msgspec.ValidationError, msgspec.DecodeError, UnicodeDecodeError) as error:
            # The slow path only runs for bad requests: pydantic gives the canonical message.
            try:
                self._batch.validate_json(body)
            except ValidationError as detailed:
                raise _explain(detailed, self._batch, body) from None
            raise RequestError(400, "invalid request body", [{"loc": ["body"], "msg": str(error),
                                                                "type": "invalid"}]) from None
        return self.to_batch(records)

    def to_batch(self, records: list[Any]) -> FeatureBatch:
        """Validated records (pydantic models or msgspec structs) to arrays, column by column:
        one C-level pass reads every field, zip transposes, numpy converts (None -> NaN)."""
        n = len(records)
        k, m = len(self.rules.numeric_names), len(self._codes)
        columns = list(zip(*map(self._fields, records), strict=True))
        # One numpy call for all numeric columns (numpy's per-call cost dominates one-row requests).
        numeric = np.ascontiguousarray(np.array(columns[:k], dtype=np.float64).T)
        if n == 1:  # a single customer: the dict look-ups in Python, one array
            values = columns[k:k + m]
            codes = np.array([[lookup[column[0]] for lookup, column in zip(self._codes, values, strict=True)]],
                             dtype=np.int32)
        else:
            codes = np.empty((n, m), dtype=np.int32)
            for j, lookup in enumerate(self._codes):
                codes[:, j] = np.fromiter(map(lookup.__getitem__, columns[k + j]), dtype=np.int32, count=n)
        customer_ids = list(columns[k + m]) if self.rules.id_column else None
        return FeatureBatch(numeric=numeric, codes=codes, customer_ids=customer_ids, request_ids=list(columns[-1]))

    # -- documentation
    def predict_schema(self, **kwargs: Any) -> dict[str, Any]:
        return TypeAdapter(self.predict_input).json_schema(**kwargs)


def _explain(error: ValidationError, adapter: TypeAdapter[Any], body: bytes) -> RequestError:
    """A 400 naming each bad field. NaN/Infinity tokens are not JSON; re-read them leniently
    so the error names the field instead of a byte offset."""
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        try:
            lenient = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError):
            return RequestError(400, "request body is not valid JSON",
                                [{"loc": ["body"], "msg": errors[0]["msg"], "type": "json_invalid"}])
        if _has_non_finite(lenient):
            try:
                adapter.validate_python(lenient)
            except ValidationError as detailed:
                errors = detailed.errors(include_url=False, include_context=False, include_input=False)
    detail = [{"loc": list(e["loc"]) or ["body"], "msg": e["msg"], "type": e["type"]} for e in errors[:50]]
    fields = sorted({str(d["loc"][-1]) for d in detail})
    return RequestError(400, f"{len(errors)} invalid value(s): {', '.join(fields[:10])}", detail)


def _has_non_finite(value: Any) -> bool:
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, dict):
        return any(_has_non_finite(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_non_finite(v) for v in value)
    return False
