"""`/docs` without the network and with API keys: Swagger UI from local files, a bearer scheme, examples.

FastAPI's own `/docs` loads Swagger UI from a CDN (a blank page offline or behind a strict proxy) and
its OpenAPI declares no security, so with `AE_API_KEYS` set every "Try it out" answered 401. Here
the Swagger UI files (swagger-ui-dist, Apache-2.0, `service/static/swagger-ui/` with its LICENSE and
NOTICE) are served by the app itself, and the OpenAPI declares a bearer scheme ("Authorize").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from service.api.openapi import OPERATION_EXAMPLES

SWAGGER_UI_FILES = Path(__file__).resolve().parents[1] / "static" / "swagger-ui"
ASSETS = "/docs/assets"
BEARER = "bearer"
# The routes that need a key whenever AE_API_KEYS is set; health and metrics only with AE_AUTH_HEALTH
# and AE_AUTH_METRICS, so for them the key is optional in the document.
_ALWAYS_PROTECTED = ("/v1/", "/v2/models", "/v2/repository")


def _always_protected(path: str) -> bool:
    """Whether a route needs a key whenever AE_API_KEYS is set (`/v2` itself is the server metadata)."""
    return path == "/v2" or path.startswith(_ALWAYS_PROTECTED)


def _with_security_and_examples(schema: dict[str, Any]) -> dict[str, Any]:
    """The bearer scheme on every operation, and the response examples of the routes FastAPI documents."""
    schema.setdefault("components", {})["securitySchemes"] = {
        BEARER: {
            "type": "http",
            "scheme": "bearer",
            "description": "one of AE_API_KEYS; needed only when keys are configured (health and metrics: "
            "only with AE_AUTH_HEALTH / AE_AUTH_METRICS)",
        }
    }
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            required = _always_protected(path)
            # `{}` in the list: the operation may also be called without a key.
            operation["security"] = [{BEARER: []}] if required else [{}, {BEARER: []}]
            examples = OPERATION_EXAMPLES.get((method.upper(), path))
            if examples is None:
                continue
            for status, (media_type, value) in examples.items():
                content = operation["responses"][str(status)].setdefault("content", {})
                content.setdefault(media_type, {})["example"] = value
    return schema


def add_docs_routes(app: FastAPI) -> None:
    """`/docs` (Swagger UI from local files) and its assets; the app's OpenAPI gains security and examples.

    The app must be created with `docs_url=None` and `redoc_url=None` (ReDoc would load from a CDN).
    """

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                openapi_version=app.openapi_version,
            )
            app.openapi_schema = _with_security_and_examples(schema)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    app.mount(ASSETS, StaticFiles(directory=SWAGGER_UI_FILES), name="swagger-ui")

    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - docs",
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon-32x32.png",
            # The key entered under "Authorize" survives a reload of the page.
            swagger_ui_parameters={"persistAuthorization": True},
        )

    app.add_api_route("/docs", swagger_ui, methods=["GET"], include_in_schema=False)
