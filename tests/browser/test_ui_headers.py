"""/ui's files and headers, and CORS (AE_CORS_ORIGINS), without a browser: runs everywhere.

The app is built without its lifespan (no models are loaded): neither the page nor CORS needs them.
"""

from __future__ import annotations

from http import HTTPStatus
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from service.api.routes.ui import UI_FILES
from service.config import Settings
from service.main import create_app

ORIGIN = "https://playground.example"


def client(tmp_path: Path, **settings: object) -> TestClient:
    return TestClient(create_app(Settings(repository=tmp_path, **settings)))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        pytest.param("/ui/", "text/html", id="page"),
        pytest.param("/ui/app.js", "text/javascript", id="module"),
        pytest.param("/ui/style.css", "text/css", id="styles"),
        pytest.param("/ui/ecg-examples.json", "application/json", id="examples"),
    ],
)
def test_ui_files_carry_the_policy(tmp_path: Path, path: str, media_type: str) -> None:
    response = client(tmp_path).get(path)
    assert response.status_code == HTTPStatus.OK
    assert response.headers["content-type"].startswith(media_type)
    policy = dict(part.strip().split(" ", 1) for part in response.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'self'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["img-src"] == "'self' blob: data:"
    assert policy["connect-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_ui_redirects_to_its_folder_and_serves_only_its_files(tmp_path: Path) -> None:
    test_client = client(tmp_path)
    redirect = test_client.get("/ui", follow_redirects=False)
    assert redirect.status_code == HTTPStatus.PERMANENT_REDIRECT
    assert redirect.headers["location"] == "ui/"
    for path in ("/ui/nothing.js", "/ui/..%2Fconfig.py", "/ui/%2e%2e/api/routes/ui.py"):
        response = test_client.get(path)
        assert response.status_code == HTTPStatus.NOT_FOUND, path
        assert response.json()["error"]["code"] == "not_found"


def test_ui_has_no_inline_script_or_style() -> None:
    page = (UI_FILES / "index.html").read_text()
    assert "<script>" not in page and "style=" not in page and "<style" not in page
    assert "http://" not in page and "https://" not in page  # nothing from another origin


def test_no_cors_headers_by_default(tmp_path: Path) -> None:
    test_client = client(tmp_path)
    response = test_client.get("/health/live", headers={"Origin": ORIGIN})
    assert "access-control-allow-origin" not in response.headers
    preflight = test_client.options(
        "/v1/models/any/reconstruct", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in preflight.headers


def test_configured_origin_gets_cors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AE_CORS_ORIGINS", f" {ORIGIN}/ , https://other.example")
    settings = Settings(repository=tmp_path)
    assert settings.cors_origins == [ORIGIN, "https://other.example"]
    test_client = TestClient(create_app(settings))
    response = test_client.get("/health/live", headers={"Origin": ORIGIN})
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "x-bits-per-pixel" in response.headers["access-control-expose-headers"].lower()
    preflight = test_client.options(
        "/v1/models/image-codec-q1/reconstruct",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == HTTPStatus.OK
    assert preflight.headers["access-control-allow-origin"] == ORIGIN
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    other = test_client.get("/health/live", headers={"Origin": "https://elsewhere.example"})
    assert "access-control-allow-origin" not in other.headers


def test_an_origin_list_without_origins_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AE_CORS_ORIGINS", " , ")
    with pytest.raises(ValueError, match="AE_CORS_ORIGINS"):
        Settings()
