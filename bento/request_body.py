"""BentoML input/output specs that hand the raw request body to the API method.

BentoML would otherwise parse JSON with the stdlib and validate it in Python before the
method runs (milliseconds for a 1k-row batch) and answer bad input in its own shape. These
specs document the typed contract in the OpenAPI page and the client schema, but pass the
body through untouched; ``churnops.serving.contract`` validates it (pydantic for /predict,
msgspec for /predict_batch) and reports every bad field.

They subclass BentoML's ``IORootModel`` (``_bentoml_sdk``, pinned bentoml==1.4.39):
``from_http_request`` and ``model_json_schema`` are the hooks the server, the OpenAPI
generator and ``bentoml.SyncHTTPClient`` use.
"""

from __future__ import annotations

import copy
import typing as t

from _bentoml_sdk.io_models import IODescriptor, IORootModel
from pydantic import TypeAdapter

if t.TYPE_CHECKING:
    from starlette.requests import Request


def inline_schema(documented: t.Any) -> dict[str, t.Any]:
    """The JSON schema of ``documented`` with every ``$ref`` inlined and unions as ``oneOf``.

    BentoML's OpenAPI generator resolves only ``#/$defs/`` references one level deep and
    keeps the first member of an ``anyOf``; a self-contained schema with ``oneOf`` survives
    it, so the page shows both "one customer" and "a list of customers".
    """
    schema = TypeAdapter(documented).json_schema()
    definitions = schema.pop("$defs", {})

    def resolve(node: t.Any) -> t.Any:
        if isinstance(node, dict):
            if "$ref" in node:
                target = dict(definitions[node["$ref"].rsplit("/", 1)[-1]])
                return resolve({**target, **{k: v for k, v in node.items() if k != "$ref"}})
            resolved = {k: resolve(v) for k, v in node.items()}
            if "anyOf" in resolved and not any(o.get("type") == "null" for o in resolved["anyOf"]):
                resolved["oneOf"] = resolved.pop("anyOf")
            return resolved
        if isinstance(node, list):
            return [resolve(v) for v in node]
        return node

    return resolve(schema)


def raw_body_spec(name: str, documented: t.Any) -> type[IODescriptor]:
    """An input spec whose value is the request body (bytes), documented as ``documented``."""
    documented_schema = inline_schema(documented)

    class RawBody(IORootModel[bytes]):
        @classmethod
        async def from_http_request(cls, request: Request, serde: t.Any) -> IODescriptor:
            return cls.model_construct(root=await request.body())

        @classmethod
        def model_json_schema(cls, *args: t.Any, **kwargs: t.Any) -> dict[str, t.Any]:
            return {**copy.deepcopy(documented_schema), "root_input": True}

    RawBody.__name__ = RawBody.__qualname__ = name
    RawBody.__root_input__ = True
    return RawBody


def documented_output(name: str, documented: t.Any) -> type[IODescriptor]:
    """An output spec that only documents: the method returns a ready Response."""
    documented_schema = inline_schema(documented)

    class Documented(IORootModel[t.Any]):
        @classmethod
        def model_json_schema(cls, *args: t.Any, **kwargs: t.Any) -> dict[str, t.Any]:
            return copy.deepcopy(documented_schema)

    Documented.__name__ = Documented.__qualname__ = name
    return Documented
