"""The API docs page at ``/``: Swagger UI that loads nothing from outside the service.

BentoML 1.4's own page (``_bentoml_impl/server/main-openapi.html``) embeds a Google Tag Manager
script and iframe and links to GitHub. This page replaces it on the same route: the Swagger UI
files BentoML ships (``bentoml/_internal/server/static_content``), served under
:data:`ASSETS_PREFIX`, our own start-up script, and the service's ``/docs.json``. The online
validator badge (an image from validator.swagger.io) is switched off, and a
Content-Security-Policy header makes the browser refuse any other origin should a future
Swagger UI try one. ``docs.enabled: false`` in configs/serving.yaml turns the page off (404).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI

logger = logging.getLogger("bentoml.service.churn")

PAGE_PATH = "/"
SPEC_PATH = "/docs.json"
ASSETS_PREFIX = "/docs-assets/"
INIT_SCRIPT = "docs-init.js"
# The files of BentoML's Swagger UI copy the page uses, with their media types.
BENTOML_ASSETS = {
    "swagger-ui.css": "text/css; charset=utf-8",
    "index.css": "text/css; charset=utf-8",
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui-standalone-preset.js": "text/javascript; charset=utf-8",
}
# Same origin only; inline styles (Swagger UI sets some) and data:/blob: images (icons in the CSS,
# image responses) are local. No inline scripts, no frames, no other hosts.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; "
    "font-src 'self' data:; connect-src 'self'; object-src 'none'; frame-src 'none'; frame-ancestors 'self'; "
    "base-uri 'self'; form-action 'self'"
)
# Source maps are not shipped: drop the reference so developer tools do not ask for a missing file.
_SOURCE_MAP = re.compile(rb"\n?//# sourceMappingURL=\S+\s*$")

PAGE_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{title}</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" type="text/css" href=".{assets}swagger-ui.css">
    <link rel="stylesheet" type="text/css" href=".{assets}index.css">
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src=".{assets}swagger-ui-bundle.js" charset="UTF-8"></script>
    <script src=".{assets}swagger-ui-standalone-preset.js" charset="UTF-8"></script>
    <script src=".{assets}{init}" charset="UTF-8"></script>
  </body>
</html>
"""

# BentoML's swagger-initializer.js, plus validatorUrl: null (else Swagger UI shows a badge
# image fetched from validator.swagger.io, sending it the spec's address).
INIT_SOURCE = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "./docs.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
    validatorUrl: null,
  });
};
"""


@dataclass(frozen=True)
class Asset:
    body: bytes
    media_type: str


def bentoml_assets_dir() -> Path:
    """Where the installed BentoML keeps its Swagger UI files."""
    from bentoml._internal import server

    return Path(server.__file__).parent / "static_content"


def load_assets(directory: Path | None = None) -> dict[str, Asset] | None:
    """The page's files by name, read once; None (and a warning) when BentoML no longer ships them."""
    directory = directory or bentoml_assets_dir()
    missing = [name for name in BENTOML_ASSETS if not (directory / name).is_file()]
    if missing:
        logger.warning("The docs page is off: this BentoML has no %s in %s (the API itself is unaffected)",
                       ", ".join(missing), directory)
        return None
    assets = {name: Asset(_SOURCE_MAP.sub(b"\n", (directory / name).read_bytes()), media_type)
              for name, media_type in BENTOML_ASSETS.items()}
    assets[INIT_SCRIPT] = Asset(INIT_SOURCE.encode(), "text/javascript; charset=utf-8")
    return assets


def page_html(title: str) -> str:
    from html import escape

    return PAGE_TEMPLATE.format(title=escape(title), assets=ASSETS_PREFIX, init=INIT_SCRIPT)


def not_found_body(message: str) -> bytes:
    import json

    return json.dumps({"error": message, "detail": [{"loc": ["path"], "msg": message, "type": "not_found"}]}).encode()


def add_docs_routes(app: FastAPI, *, enabled: bool, title: str) -> None:
    """``GET /`` and ``GET /docs-assets/{name}`` on the service's FastAPI app, which BentoML
    mounts ahead of its own index route. With the docs off (or their files missing) ``/``
    answers 404 rather than falling through to BentoML's page."""
    from starlette.responses import Response

    assets = load_assets() if enabled else None
    page = page_html(title).encode() if assets else None
    headers = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
               "Referrer-Policy": "no-referrer"}
    off = not_found_body("the docs page is off (docs.enabled in configs/serving.yaml); the OpenAPI document "
                         f"is at {SPEC_PATH}")

    @app.get(PAGE_PATH, include_in_schema=False)
    async def docs_page() -> Response:
        if page is None:
            return Response(off, status_code=404, media_type="application/json")
        return Response(page, media_type="text/html; charset=utf-8", headers={**headers, "Cache-Control": "no-cache"})

    if assets is None:
        return

    @app.get(ASSETS_PREFIX + "{name}", include_in_schema=False)
    async def docs_asset(name: str) -> Response:
        asset = assets.get(name)
        if asset is None:
            return Response(not_found_body(f"no docs asset '{name}'"), status_code=404, media_type="application/json")
        return Response(asset.body, media_type=asset.media_type, headers={**headers, "Cache-Control": "max-age=3600"})
