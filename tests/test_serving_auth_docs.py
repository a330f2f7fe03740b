"""The real service with an API key (issue 10, points 4 and 5): a Bento built from bento/,
started by ``deployment.start_service`` with the keys in a ZenML secret, as ``run.py --pipeline
deploy --serve`` does; then once more without a key and with the docs page off."""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
import yaml

from churnops.core.settings import StatePaths
from churnops.platform.deployment import DeploymentRecord
from churnops.platform.ports import free_port
from churnops.serving.packaging import ModelCard
from tests.test_serving_unit import GOOD, SCHEMA, fit, records

pytestmark = pytest.mark.slow

KEY_ENV = "CHURNOPS_API_KEY"
# Two keys, as during a rotation; fresh per run so a grep for them finds only this run's leaks.
KEY_A = secrets.token_urlsafe(32)
KEY_B = secrets.token_urlsafe(32)
UNAUTHENTICATED_LINE = "The API is unauthenticated"
PROTECTED = [("POST", "/predict", GOOD), ("POST", "/predict_batch", [GOOD, GOOD]),
             ("GET", "/model_info", None), ("GET", "/model-info", None)]
# Absolute URLs inside Swagger UI's minified bundles (BentoML's copy) that the page never loads:
# XML namespace names, JSON-schema dialect ids, links in error and deprecation messages, sample
# values, autolinker's hashtag/mention targets (off unless a spec's Markdown asks), the license
# link builder, the default spec and validator URLs (we pass our own spec URL, and validatorUrl:
# null turns the validator badge off). Anything new here fails the test: check it is inert too.
INERT_BUNDLE_HOSTS = {
    "www.w3.org", "spec.openapis.org", "json-schema.org", "github.com", "reactjs.org", "redux.js.org", "fb.me",
    "example.com", "spdx.org", "swagger.io", "petstore.swagger.io", "validator.swagger.io",
    "twitter.com", "www.facebook.com", "instagram.com", "www.tiktok.com", "soundcloud.com",
}
SAFE_CSP_SOURCES = {"'self'", "'none'", "'unsafe-inline'", "data:", "blob:"}


@dataclass
class Served:
    record: DeploymentRecord
    paths: StatePaths
    bento_tag: str


@contextmanager
def environment_variable(name: str, value: str | None) -> Iterator[None]:
    before = os.environ.pop(name, None)
    if value is not None:
        os.environ[name] = value
    try:
        yield
    finally:
        os.environ.pop(name, None)
        if before is not None:
            os.environ[name] = before


def start(tmp_path_factory, bento_tag: str, config: dict) -> Served:
    from churnops.platform import deployment

    home = tmp_path_factory.mktemp("auth-home")
    paths = StatePaths(home)
    config_file = home / "serving.yaml"
    config_file.write_text(yaml.safe_dump(config))
    record = deployment.start_service(paths, bento_tag, "1", port=free_port(), extra_env={
        "BENTOML_HOME": os.environ["BENTOML_HOME"],  # the store the Bento was built in
        "CHURNOPS_SERVING_CONFIG": str(config_file),
        "CHURNOPS_CUSTOMER_SALT": "auth-test-salt",
    })
    return Served(record, paths, bento_tag)


@pytest.fixture(scope="module")
def locked(session_paths, tmp_path_factory):
    """The service with both keys in a ZenML secret of the session store (the shell's own
    CHURNOPS_API_KEY, if any, set aside)."""
    from zenml.client import Client

    from churnops.data.synthetic import SyntheticSpec, generate_customers
    from churnops.data.validation import validate_and_clean
    from churnops.platform import deployment

    cleaned, _ = validate_and_clean(generate_customers(SyntheticSpec(rows=1500, seed=5)), SCHEMA)
    pipeline = fit(cleaned, "sklearn.linear_model.LogisticRegression", max_iter=1000)
    card = ModelCard(model_name="churn_classifier", model_version="1", model_version_id=str(uuid.uuid4()),
                     stage="production", threshold=0.5, metrics={"f1": 0.6}, dataset="synthetic")
    # Built with a key in the environment (the service module is imported at build time): the
    # Bento store must not keep it.
    with environment_variable(KEY_ENV, KEY_A):
        bento_tag = deployment.build_bento(deployment.save_bento_model(pipeline, SCHEMA, card), card)
    secret_name = f"churnops-api-key-test-{uuid.uuid4().hex[:8]}"
    secret = Client().create_secret(secret_name, {"api_key": f"{KEY_A},{KEY_B}"})
    try:
        with environment_variable(KEY_ENV, None):
            served = start(tmp_path_factory, bento_tag, {"auth": {"zenml_secret": secret_name}})
        try:
            yield served
        finally:
            deployment.stop_service(served.paths)
    finally:
        Client().delete_secret(str(secret.id))


def send(url: str, method: str, path: str, body: object, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.request(method, f"{url}{path}", json=body, headers=headers, timeout=30)


def test_protected_endpoints_answer_401_without_the_right_key(locked):
    url = locked.record.url
    for method, path, body in PROTECTED:
        for headers, kind in (({}, "missing_api_key"), ({"X-API-Key": "x" * 40}, "invalid_api_key"),
                              ({"Authorization": f"Bearer {KEY_A[:-1]}"}, "invalid_api_key"),
                              ({"Authorization": f"Basic {KEY_A}"}, "invalid_api_key")):
            refused = send(url, method, path, body, headers)
            assert refused.status_code == 401, (path, headers, refused.text)
            assert refused.headers["WWW-Authenticate"].startswith("Bearer")
            answer = refused.json()
            assert set(answer) == {"error", "detail"} and isinstance(answer["error"], str)
            assert [(d["type"], d["loc"][0]) for d in answer["detail"]] == [(kind, "header")]
            assert {"loc", "msg", "type"} == set(answer["detail"][0])
        for headers in ({"Authorization": f"Bearer {KEY_A}"}, {"X-API-Key": KEY_B}):
            allowed = send(url, method, path, body, headers)
            assert allowed.status_code == 200, (path, allowed.text)
    # A client without a key learns nothing about which paths exist.
    assert send(url, "GET", "/no-such-path", None).status_code == 401


def test_probes_metrics_and_docs_stay_open(locked):
    url = locked.record.url
    answers = {path: requests.get(f"{url}{path}", timeout=10) for path in
               ("/healthz", "/livez", "/readyz", "/health", "/metrics", "/", "/docs.json")}
    assert {path: r.status_code for path, r in answers.items()} == dict.fromkeys(answers, 200)
    assert answers["/health"].text == answers["/healthz"].text
    assert answers["/health"].headers["content-type"] == answers["/healthz"].headers["content-type"]
    # BentoML's request metrics count the refusals like any answer.
    assert any(line.startswith("bentoml_service_request_total") and 'http_response_code="401"' in line
               for line in answers["/metrics"].text.splitlines())


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.found.extend(value for name, value in attrs if name in ("src", "href", "action", "srcset") and value)


_CSS_URL = re.compile(r"""url\(\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^)]*?)\s*\)""")
_CSS_IMPORT = re.compile(r"""@import\s+["']([^"']+)["']""")
_JS_REFERENCE = re.compile(r"""sourceMappingURL=(\S+)|importScripts\(\s*["']([^"']+)|import\(\s*["']([^"']+)|"""
                           r"""["'](\./[^"']+)["']""")
# Protocol-relative references ("//host/x") are caught by the same-host check on references.
_ABSOLUTE_HOST = re.compile(r"https?://([A-Za-z0-9.-]+)")


def references(kind: str, text: str) -> tuple[list[tuple[str, bool]], str]:
    """What a browser would fetch from a response, each with whether it resolves against the
    page (a URL a script passes to fetch) rather than the response itself; and the text left to
    scan for hosts once inline data: URIs are taken out."""
    found: list[tuple[str, bool]] = []
    if kind == "html":
        parser = _References()
        parser.feed(text)
        found = [(ref, False) for ref in parser.found]
    elif kind == "css":
        found = [(m.strip("'\"").strip(), False) for m in _CSS_URL.findall(text)]
        found += [(ref, False) for ref in _CSS_IMPORT.findall(text)]
        text = _CSS_URL.sub(lambda m: "" if m.group(1).strip("'\"").startswith("data:") else m.group(0), text)
    elif kind == "js":
        for source_map, worker, module, literal in _JS_REFERENCE.findall(text):
            found.append((source_map or worker or module, False) if not literal else (literal, True))
    return [(ref, page) for ref, page in found if not ref.startswith(("data:", "#", "javascript:"))], text


def kind_of(response: requests.Response) -> str:
    media = response.headers.get("content-type", "").split(";")[0]
    return {"text/html": "html", "text/css": "css", "text/javascript": "js", "application/javascript": "js",
            "application/json": "json"}.get(media, "other")


def test_the_docs_page_loads_nothing_from_outside_the_service(locked):
    url = locked.record.url
    own_host = urlsplit(url).netloc
    pending, seen, bundle_hosts = [(f"{url}/", f"{url}/")], {}, set()  # (address, the page that loads it)
    while pending:
        address, page_address = pending.pop()
        if address in seen:
            continue
        response = requests.get(address, timeout=30)
        assert response.status_code == 200, (address, response.status_code)
        seen[address] = kind = kind_of(response)
        found, scanned = references(kind, response.text)
        for reference, from_page in found:
            resolved = urljoin(page_address if from_page else address, reference)
            assert urlsplit(resolved).netloc == own_host, f"{address} references {reference}"
            pending.append((resolved.split("#")[0], address if kind == "html" else page_address))
        hosts = {host for host in _ABSOLUTE_HOST.findall(scanned)} - {own_host.split(":")[0]}
        if kind == "js" and address.endswith(("/swagger-ui-bundle.js", "/swagger-ui-standalone-preset.js")):
            bundle_hosts |= hosts  # third-party code: its URL strings are checked against the inert list
        elif kind != "json":
            assert not hosts, f"{address} names outside hosts {sorted(hosts)}"
    assert bundle_hosts <= INERT_BUNDLE_HOSTS, sorted(bundle_hosts - INERT_BUNDLE_HOSTS)
    assert sorted(seen.values()) == ["css", "css", "html", "js", "js", "js", "json"], seen
    assert f"{url}/docs.json" in seen, "the page's script loads the service's OpenAPI document"

    page = requests.get(f"{url}/", timeout=10)
    assert "googletagmanager" not in page.text and "<iframe" not in page.text
    policy = dict(part.strip().split(None, 1) for part in page.headers["Content-Security-Policy"].split(";"))
    assert policy["default-src"] == "'self'" and policy["connect-src"] == "'self'"
    assert {source for sources in policy.values() for source in sources.split()} <= SAFE_CSP_SOURCES

    spec = requests.get(f"{url}/docs.json", timeout=10).json()
    assert {"/predict", "/predict_batch", "/model_info", "/health"} <= set(spec["paths"])
    assert set(spec["components"]["securitySchemes"]) == {"ApiKeyHeader", "BearerKey"}
    assert spec["paths"]["/predict"]["post"]["security"] and "security" not in spec["paths"]["/healthz"]["get"]


def grep(root: Path, needles: list[str]) -> list[str]:
    """Files under ``root`` that contain any of ``needles`` (bytes, so binary files count too)."""
    encoded = [needle.encode() for needle in needles]
    return [str(path) for path in root.rglob("*") if path.is_file() and any(n in path.read_bytes() for n in encoded)]


def test_zz_keys_appear_in_no_log_record_or_store(locked):
    """Runs last on the locked service: it stops it (the inference log is written at shutdown)."""
    from churnops.platform import deployment

    url = locked.record.url
    for i in range(3):
        assert send(url, "POST", "/predict", GOOD, {"X-API-Key": KEY_A, "X-Request-ID": f"auth-{i}"}).ok
    assert send(url, "POST", "/predict_batch", records(5), {"Authorization": f"Bearer {KEY_B}"}).ok
    record = locked.paths.deployment_file.read_text()
    assert locked.record.url in record and KEY_A not in record and KEY_B not in record
    deployment.stop_service(locked.paths)
    home = locked.paths.home
    log_file = Path(locked.record.log_file)
    server_log = log_file.read_text()
    assert "status=401" in server_log and "status=200" in server_log, "the access log was written"
    assert UNAUTHENTICATED_LINE not in server_log
    assert list(Path(locked.paths.inference_log_dir).rglob("*.arrow")), "the inference log was written"
    assert grep(home, [KEY_A, KEY_B]) == []
    assert grep(Path(os.environ["BENTOML_HOME"]), [KEY_A, KEY_B]) == []


def test_zz_without_a_key_the_api_is_open_says_so_once_and_the_docs_can_be_off(locked, tmp_path_factory):
    from churnops.platform import deployment

    with environment_variable(KEY_ENV, None):
        served = start(tmp_path_factory, locked.bento_tag, {"auth": {"zenml_secret": None}, "docs": {"enabled": False}})
    url = served.record.url
    try:
        for method, path, body in PROTECTED:
            assert send(url, method, path, body).status_code == 200, path
        off = requests.get(f"{url}/", timeout=10)
        assert off.status_code == 404 and "docs.enabled" in off.json()["error"]
        assert "/predict" in requests.get(f"{url}/docs.json", timeout=10).json()["paths"]
        assert "securitySchemes" not in requests.get(f"{url}/docs.json", timeout=10).json().get("components", {})
    finally:
        deployment.stop_service(served.paths)
    server_log = Path(served.record.log_file).read_text()
    assert server_log.count(UNAUTHENTICATED_LINE) == 1, server_log[-3000:]
    assert KEY_ENV in server_log
