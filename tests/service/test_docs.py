"""`/docs` works offline and with API keys: local Swagger UI assets, a bearer scheme, examples everywhere."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from service.api.docs import SWAGGER_UI_FILES
from service.api.openapi import OPERATION_EXAMPLES
from service.main import create_app
from service.schemas import LiveResponse, ModelInfo, ModelsResponse, ReadyResponse
from tests.service.conftest import service_settings

AUTH = {"authorization": "Bearer docs-key"}


@pytest.fixture(scope="module")
def locked(tiny_models):
    with TestClient(create_app(service_settings(tiny_models, api_keys=["docs-key"]))) as client:
        yield client


def test_the_docs_page_loads_only_local_assets_and_they_are_served(locked):
    page = locked.get("/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    urls = re.findall(r"""(?:src|href|url)\s*[=:]\s*['"]([^'"]+)['"]""", page.text)
    assert urls, page.text
    assert not [url for url in urls if "://" in url or url.startswith("//")], urls  # nothing from a CDN
    assets = [url for url in urls if url.startswith("/docs/assets/")]
    assert len(assets) == 3  # the script, the stylesheet and the icon
    for url in assets:
        answer = locked.get(url)
        assert answer.status_code == 200 and answer.content == (SWAGGER_UI_FILES / url.rsplit("/", 1)[-1]).read_bytes()
    assert "'/openapi.json'" in page.text or '"/openapi.json"' in page.text
    assert locked.get("/redoc").status_code == 404  # ReDoc would load from a CDN: not served
    # The vendored files travel with their licence.
    assert "Apache License" in (SWAGGER_UI_FILES / "LICENSE").read_text()
    assert (SWAGGER_UI_FILES / "NOTICE").is_file()


def test_openapi_declares_a_bearer_scheme_that_authorizes_the_routes(locked):
    schema = locked.get("/openapi.json").json()
    assert schema["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": schema["components"]["securitySchemes"]["bearer"]["description"],
    }
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            # /v1 and the OIP model and repository routes need a key; health and metrics only when asked.
            protected = path == "/v2" or path.startswith(("/v1/", "/v2/models", "/v2/repository"))
            expected = [{"bearer": []}] if protected else [{}, {"bearer": []}]
            assert operation["security"] == expected, path
    # What "Authorize" then sends is what the service checks.
    assert locked.get("/v1/models").status_code == 401
    assert locked.get("/v1/models", headers=AUTH).status_code == 200


def _has_example(media: dict) -> bool:
    return "example" in media or bool(media.get("examples"))


def test_every_operation_and_body_type_has_an_example(locked):
    schema = locked.get("/openapi.json").json()
    operations = [(path, op) for path, ops in schema["paths"].items() for op in ops.values()]
    assert len(operations) >= 11
    for path, operation in operations:
        bodies = operation.get("requestBody", {}).get("content", {})
        for media_type, media in bodies.items():
            assert _has_example(media), (path, media_type)
        answers = operation["responses"]["200"].get("content", {})
        examples = [media_type for media_type, media in answers.items() if _has_example(media)]
        assert bodies or examples, path  # an operation without a body shows what it answers


@pytest.mark.parametrize(
    ("key", "model"),
    [
        (("GET", "/health/live"), LiveResponse),
        (("GET", "/health/ready"), ReadyResponse),
        (("GET", "/v1/models"), ModelsResponse),
        (("GET", "/v1/models/{name}"), ModelInfo),
    ],
)
def test_the_answer_examples_are_valid_answers(key, model):
    for media_type, example in OPERATION_EXAMPLES[key].values():
        assert media_type == "application/json"
        model.model_validate(example)
