"""The inference fast path answers exactly as FastAPI's own routing of the same routes would."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.api.fast_path import InferenceFastPath
from service.main import create_app
from tests.service.conftest import png_bytes, service_settings

SERIES = {"sequences": [[0.1, 0.5, -0.3, 0.9, 0.0, 0.2, 0.4, -0.1]]}


def _client(repository: Path, fast_path: bool) -> TestClient:
    app = create_app(service_settings(repository, api_keys=["key"]))
    if not fast_path:
        app.user_middleware = [m for m in app.user_middleware if m.cls is not InferenceFastPath]
    return TestClient(app)


@pytest.fixture(scope="module")
def both(tiny_models: Path) -> Iterator[tuple[TestClient, TestClient]]:
    with _client(tiny_models, fast_path=True) as fast, _client(tiny_models, fast_path=False) as routed:
        yield fast, routed


AUTH = {"Authorization": "Bearer key"}
CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", "/v1/models/tiny-seq/encode", {"json": SERIES, "headers": AUTH}),
    ("POST", "/v1/models/tiny-seq/versions/1/reconstruct", {"json": SERIES, "headers": AUTH}),
    ("POST", "/v1/models/tiny-seq/versions/0001/encode", {"json": SERIES, "headers": AUTH}),
    ("POST", "/v1/models/tiny-seq/encode", {"json": SERIES}),  # no key: 401
    ("POST", "/v1/models/tiny-seq/encode", {"json": SERIES, "headers": {"Authorization": "Bearer nope"}}),
    ("POST", "/v1/models/nope/encode", {"json": SERIES, "headers": AUTH}),  # 404
    ("POST", "/v1/models/tiny-seq/versions/9/encode", {"json": SERIES, "headers": AUTH}),  # 404
    ("POST", "/v1/models/tiny-seq/versions/one/encode", {"json": SERIES, "headers": AUTH}),  # 422 from FastAPI
    ("POST", "/v1/models/tiny-seq/encode", {"content": b"{", "headers": {**AUTH, "content-type": "application/json"}}),
    ("POST", "/v1/models/tiny-seq/encode", {"content": b"1,2", "headers": {**AUTH, "content-type": "text/csv"}}),
    ("POST", "/v1/models/tiny-seq/encode", {"json": {"series": []}, "headers": AUTH}),  # 422
    ("POST", "/v1/models/tiny-denoise/encode", {"content": png_bytes(16, 16), "headers": AUTH}),  # 409
    ("POST", "/v1/models/tiny-seq/summarise", {"json": SERIES, "headers": AUTH}),  # 404: no such operation
    ("GET", "/v1/models/tiny-seq/encode", {"headers": AUTH}),  # 405
]


@pytest.mark.parametrize(("method", "path", "options"), CASES)
def test_fast_path_answers_like_fastapi_routing(both, method, path, options):
    fast, routed = both
    answers = [client.request(method, path, **options) for client in (fast, routed)]
    assert answers[0].status_code == answers[1].status_code
    assert answers[0].json() == answers[1].json()
    assert answers[0].headers.get("content-type") == answers[1].headers.get("content-type")


def test_images_take_the_fast_path_too(both):
    fast, routed = both
    image = png_bytes(20, 24)
    headers = {**AUTH, "content-type": "image/png"}
    answers = [c.post("/v1/models/tiny-image/reconstruct", content=image, headers=headers) for c in (fast, routed)]
    assert answers[0].status_code == answers[1].status_code == HTTPStatus.OK
    assert answers[0].content == answers[1].content


def test_fast_path_serves_the_request_and_counts_it_under_its_model(both, monkeypatch):
    import service.api.fast_path as fast_path

    served: list[str] = []
    endpoint = fast_path._ENDPOINTS["encode"]

    async def recording(request, inference):
        served.append(inference.model.manifest.name)
        return await endpoint(request, inference)

    monkeypatch.setitem(fast_path._ENDPOINTS, "encode", recording)
    fast, _ = both
    assert fast.post("/v1/models/tiny-seq/encode", json=SERIES, headers=AUTH).status_code == HTTPStatus.OK
    assert served == ["tiny-seq"]
    metrics = fast.get("/metrics").text
    assert 'ae_requests_total{model="tiny-seq",operation="encode",status="200"}' in metrics


def test_a_lone_small_json_request_runs_on_the_event_loop(tiny_models: Path, monkeypatch):
    """No thread hop for a small request on an idle process; a large one still goes to a thread."""
    import service.pipelines as pipelines

    threads: list[str] = []
    original = pipelines.prepare_sequences

    def recording(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(pipelines, "prepare_sequences", recording)
    app = create_app(service_settings(tiny_models, loop_inline_max_bytes=1000))
    with TestClient(app) as client:
        loop_thread = client.portal.call(lambda: threading.current_thread().name)
        small = client.post("/v1/models/tiny-seq/encode", json=SERIES)
        large = client.post("/v1/models/tiny-seq/encode", json={"sequences": [[0.123456789] * 200]})
    assert small.status_code == large.status_code == HTTPStatus.OK
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
