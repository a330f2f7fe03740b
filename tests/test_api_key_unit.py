"""The API key without a server: the ASGI middleware called directly, key parsing, the ZenML
secret look-up against the session store, the OpenAPI security schemes and the docs page."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI

from bento.api_key_auth import ApiKeyAuth, document_api_key
from bento.docs_page import ASSETS_PREFIX, INIT_SCRIPT, INIT_SOURCE, add_docs_routes, load_assets, page_html
from churnops.platform.api_key import api_key_environment
from churnops.serving.api_keys import ApiKeyError, configured_api_keys, parse_api_keys
from churnops.serving.config import AuthOptions

KEY = "k" * 8 + "-correct-key-1"
OTHER_KEY = "rotated-key-number-2"
WRONG = "w" * 8 + "-not-the-key-0"


class Inner:
    """The app behind the middleware: answers 200 and remembers what reached it."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        self.paths.append(scope["path"] if "path" in scope else scope["type"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"inner"})


def call(app, path: str, headers: dict[str, str] | None = None, method: str = "GET",
         kind: str = "http") -> tuple[int | None, dict[str, str], bytes, list[dict]]:
    """Run one request through ``app``; returns status, response headers, body and every message sent."""
    scope = {"type": kind, "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "scheme": "http", "http_version": "1.1", "root_path": "", "server": ("127.0.0.1", 3000),
             "client": ("127.0.0.1", 50000),
             "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]}
    if kind == "lifespan":
        scope = {"type": "lifespan", "asgi": {"version": "3.0"}}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    response_headers = {k.decode(): v.decode() for k, v in start["headers"]} if start else {}
    return (start["status"] if start else None), response_headers, body, sent


@pytest.fixture
def guarded() -> tuple[ApiKeyAuth, Inner]:
    inner = Inner()
    return ApiKeyAuth(inner, keys=[KEY, OTHER_KEY]), inner


@pytest.mark.parametrize("headers", [
    {"Authorization": f"Bearer {KEY}"},
    {"Authorization": f"bearer   {KEY} "},
    {"X-API-Key": KEY},
    {"X-API-Key": OTHER_KEY},  # the second key of a rotation
    {"X-API-Key": WRONG, "Authorization": f"Bearer {OTHER_KEY}"},  # one good credential is enough
], ids=["bearer", "bearer-any-case-and-spacing", "x-api-key", "rotated-key", "one-of-two"])
def test_the_right_key_by_either_header_reaches_the_app(guarded, headers):
    app, inner = guarded
    for path in ("/predict", "/predict_batch", "/model_info", "/model-info"):
        status, _, body, _ = call(app, path, headers, method="POST" if path.startswith("/predict") else "GET")
        assert (status, body) == (200, b"inner")
    assert inner.paths == ["/predict", "/predict_batch", "/model_info", "/model-info"]


@pytest.mark.parametrize(("headers", "kind", "header"), [
    ({}, "missing_api_key", "Authorization"),
    ({"X-API-Key": WRONG}, "invalid_api_key", "X-API-Key"),
    ({"Authorization": f"Bearer {WRONG}"}, "invalid_api_key", "Authorization"),
    ({"Authorization": f"Basic {KEY}"}, "invalid_api_key", "Authorization"),  # right key, wrong scheme
    ({"Authorization": KEY}, "invalid_api_key", "Authorization"),
    ({"X-API-Key": KEY[:-1]}, "invalid_api_key", "X-API-Key"),  # a prefix of the key
    ({"X-API-Key": ""}, "invalid_api_key", "X-API-Key"),
], ids=["missing", "wrong-x-api-key", "wrong-bearer", "basic-scheme", "no-scheme", "prefix", "empty"])
def test_a_missing_or_wrong_key_gets_401_with_the_error_body(guarded, headers, kind, header):
    app, inner = guarded
    for path in ("/predict", "/predict_batch", "/model_info", "/model-info", "/schema.json", "/no-such-path"):
        status, response_headers, body, _ = call(app, path, headers, method="POST")
        assert status == 401
        assert response_headers["www-authenticate"].startswith("Bearer")
        assert response_headers["content-type"] == "application/json"
        answer = json.loads(body)
        assert set(answer) == {"error", "detail"} and "X-API-Key: <key>" in answer["error"]
        assert answer["detail"] == [{"loc": ["header", header], "msg": answer["detail"][0]["msg"], "type": kind}]
        assert KEY not in body.decode() and OTHER_KEY not in body.decode()
    assert inner.paths == [], "a refused request must not reach the app"


@pytest.mark.parametrize("path", ["/healthz", "/livez", "/readyz", "/health", "/metrics", "/", "/docs.json",
                                  f"{ASSETS_PREFIX}swagger-ui.css"])
def test_probes_metrics_and_docs_stay_open(guarded, path):
    app, inner = guarded
    assert call(app, path)[0] == 200
    assert call(app, path, {"X-API-Key": WRONG})[0] == 200
    assert inner.paths == [path, path]


def test_protect_metrics_locks_metrics_only():
    inner = Inner()
    app = ApiKeyAuth(inner, keys=[KEY], protect_metrics=True)
    assert call(app, "/metrics")[0] == 401
    assert call(app, "/metrics", {"X-API-Key": KEY})[0] == 200
    assert [call(app, path)[0] for path in ("/healthz", "/readyz", "/health", "/")] == [200] * 4


def test_lifespan_passes_and_a_websocket_without_a_key_is_closed(guarded):
    app, inner = guarded
    call(app, "", kind="lifespan")
    assert inner.paths == ["lifespan"]
    _, _, _, sent = call(app, "/predict", kind="websocket")
    assert sent == [{"type": "websocket.close", "code": 1008}] and inner.paths == ["lifespan"]


def test_the_middleware_keeps_digests_not_keys():
    app = ApiKeyAuth(Inner(), keys=[KEY])
    assert all(KEY.encode() not in repr(value).encode() for value in vars(app).values())
    with pytest.raises(ValueError, match="at least one key"):
        ApiKeyAuth(Inner(), keys=[])


# ------------------------------------------------------------------------------------ parsing


def test_keys_are_parsed_from_a_comma_separated_variable():
    assert parse_api_keys(None, "X") == () and parse_api_keys("  ", "X") == ()
    assert parse_api_keys(f" {KEY} , {OTHER_KEY},{KEY}", "X") == (KEY, OTHER_KEY)
    options = AuthOptions(key_env="MY_KEYS")
    assert configured_api_keys(options, {"MY_KEYS": KEY, "CHURNOPS_API_KEY": OTHER_KEY}) == (KEY,)
    assert configured_api_keys(options, {}) == ()


@pytest.mark.parametrize(("raw", "problem"), [
    ("short-key", "shorter than 16"),
    (f"{KEY},", "key 2 of 2 is empty"),
    (f"{KEY},,{OTHER_KEY}", "key 2 of 3 is empty"),
    ("spaces in the middle!", "printable ASCII"),
    ("clé-à-accents-longue", "printable ASCII"),
])
def test_a_bad_key_is_refused_naming_the_source_but_never_the_key(raw, problem):
    with pytest.raises(ApiKeyError, match=problem) as refused:
        parse_api_keys(raw, "environment variable CHURNOPS_API_KEY")
    message = str(refused.value)
    assert "CHURNOPS_API_KEY" in message
    assert all(part not in message for part in raw.split(",") if part)


def write_config(tmp_path: Path, auth: dict) -> dict[str, str]:
    config = tmp_path / "serving.yaml"
    config.write_text(yaml.safe_dump({"auth": auth}))
    return {"CHURNOPS_SERVING_CONFIG": str(config)}


def test_the_environment_variable_wins_and_is_checked_before_start(tmp_path):
    env = write_config(tmp_path, {"key_env": "SERVICE_KEY", "zenml_secret": None})
    assert api_key_environment({**env, "SERVICE_KEY": KEY}) == {}
    assert api_key_environment(env) == {}
    with pytest.raises(ApiKeyError, match="SERVICE_KEY: key 1 of 1 is shorter"):
        api_key_environment({**env, "SERVICE_KEY": "too-short"})


def test_the_key_comes_from_a_zenml_secret_when_the_variable_is_unset(tmp_path, session_paths):
    from zenml.client import Client

    name = f"churnops-test-key-{uuid.uuid4().hex[:8]}"
    env = write_config(tmp_path, {"key_env": "SERVICE_KEY", "zenml_secret": name, "zenml_secret_key": "api_key"})
    client = Client()
    assert api_key_environment(env) == {}, "no such secret: no key"
    # A secret whose name merely contains ours is not ours.
    longer = client.create_secret(f"{name}-old", {"api_key": WRONG})
    try:
        assert api_key_environment(env) == {}
        secret = client.create_secret(name, {"api_key": f"{KEY},{OTHER_KEY}"})
        try:
            assert api_key_environment(env) == {"SERVICE_KEY": f"{KEY},{OTHER_KEY}"}
            assert api_key_environment({**env, "SERVICE_KEY": OTHER_KEY}) == {}, "the variable wins"
            client.update_secret(secret.id, add_or_update_values={"api_key": "short"})
            with pytest.raises(ApiKeyError, match=f"ZenML secret '{name}' key 'api_key': key 1 of 1 is shorter"):
                api_key_environment(env)
            client.update_secret(secret.id, add_or_update_values={"other": KEY}, remove_values=["api_key"])
            with pytest.raises(ApiKeyError, match=f"'{name}' has no key 'api_key' \\(its keys: other\\)") as missing:
                api_key_environment(env)
            assert KEY not in str(missing.value)
        finally:
            client.delete_secret(str(secret.id))
    finally:
        client.delete_secret(str(longer.id))


# ------------------------------------------------------------------------------ docs and spec


def test_the_openapi_document_names_the_key_on_protected_operations_only():
    spec = {"paths": {"/predict": {"post": {"responses": {"200": {}}}}, "/model_info": {"get": {}},
                      "/healthz": {"get": {}}, "/metrics": {"get": {}}}}
    documented = document_api_key(spec, protect_metrics=False)
    assert set(documented["components"]["securitySchemes"]) == {"ApiKeyHeader", "BearerKey"}
    assert documented["components"]["securitySchemes"]["ApiKeyHeader"] == {
        "type": "apiKey", "in": "header", "name": "X-API-Key"}
    assert documented["paths"]["/predict"]["post"]["security"] == [{"ApiKeyHeader": []}, {"BearerKey": []}]
    assert "401" in documented["paths"]["/model_info"]["get"]["responses"]
    assert "security" not in documented["paths"]["/healthz"]["get"]
    assert "security" not in documented["paths"]["/metrics"]["get"]
    assert "security" in document_api_key(spec, protect_metrics=True)["paths"]["/metrics"]["get"]
    assert "components" not in spec, "the input is not changed"


def test_the_docs_page_references_only_local_files():
    assets = load_assets()
    assert assets is not None
    page = page_html("churn_service API")
    assert "http" not in page and "googletagmanager" not in page
    for name in assets:
        assert f'".{ASSETS_PREFIX}{name}"' in page
    assert b"sourceMappingURL" not in assets["swagger-ui-bundle.js"].body
    assert "validatorUrl: null" in INIT_SOURCE and 'url: "./docs.json"' in INIT_SOURCE
    assert assets[INIT_SCRIPT].body == INIT_SOURCE.encode()


def test_the_docs_page_is_off_when_disabled_or_when_bentoml_lacks_its_files(tmp_path, caplog):
    assert load_assets(tmp_path) is None
    assert "docs page is off" in caplog.text
    app = FastAPI()
    add_docs_routes(app, enabled=False, title="t")
    status, headers, body, _ = call(app, "/")
    assert status == 404 and "docs.enabled" in json.loads(body)["error"]
    assert call(app, f"{ASSETS_PREFIX}swagger-ui.css")[0] == 404
    enabled = FastAPI()
    add_docs_routes(enabled, enabled=True, title="t")
    status, headers, body, _ = call(enabled, "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in headers["content-security-policy"]
    status, headers, body, _ = call(enabled, f"{ASSETS_PREFIX}{INIT_SCRIPT}")
    assert status == 200 and body == INIT_SOURCE.encode()
    assert call(enabled, f"{ASSETS_PREFIX}marked.min.js")[0] == 404, "only the files the page uses"
