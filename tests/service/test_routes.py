"""The inference routes: one routing path (FastAPI's), the handler of each model kind behind it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from service.codecs.rate_control import PARAMETERS as RATE
from service.kinds.codec import CodecHandler
from service.kinds.image import ImageHandler
from service.kinds.sequence import SequenceHandler
from service.main import create_app
from tests.service.conftest import png_bytes, service_settings

SERIES = {"sequences": [[0.1, 0.5, -0.3, 0.9, 0.0, 0.2, 0.4, -0.1]]}
AUTH = {"Authorization": "Bearer key"}


@pytest.fixture(scope="module")
def client(tiny_models: Path) -> Iterator[TestClient]:
    with TestClient(create_app(service_settings(tiny_models, api_keys=["key"]))) as client:
        yield client


CASES: list[tuple[str, str, dict[str, Any], int, str | None]] = [
    ("POST", "/v1/models/tiny-seq/encode", {"json": SERIES, "headers": AUTH}, 200, None),
    ("POST", "/v1/models/tiny-seq/versions/1/reconstruct", {"json": SERIES, "headers": AUTH}, 200, None),
    ("POST", "/v1/models/tiny-seq/versions/0001/encode", {"json": SERIES, "headers": AUTH}, 200, None),
    ("POST", "/v1/models/tiny-seq/encode", {"json": SERIES}, 401, "unauthorized"),
    ("POST", "/v1/models/tiny-seq/encode", {"json": SERIES, "headers": {"Authorization": "Bearer no"}}, 401, None),
    ("POST", "/v1/models/nope/encode", {"json": SERIES, "headers": AUTH}, 404, "not_found"),
    ("POST", "/v1/models/tiny-seq/versions/9/encode", {"json": SERIES, "headers": AUTH}, 404, "not_found"),
    ("POST", "/v1/models/tiny-seq/versions/one/encode", {"json": SERIES, "headers": AUTH}, 422, "invalid_input"),
    ("POST", "/v1/models/tiny-seq/versions/1234567890/encode", {"json": SERIES, "headers": AUTH}, 422, None),
    ("POST", "/v1/models/tiny-seq/versions/²/encode", {"json": SERIES, "headers": AUTH}, 422, "invalid_input"),
    (
        "POST",
        "/v1/models/tiny-seq/encode",
        {"content": b"{", "headers": {**AUTH, "content-type": "application/json"}},
        400,
        "undecodable_body",
    ),
    (
        "POST",
        "/v1/models/tiny-seq/encode",
        {"content": b"1,2", "headers": {**AUTH, "content-type": "text/csv"}},
        415,
        "unsupported_media_type",
    ),
    ("POST", "/v1/models/tiny-seq/encode", {"json": {"series": []}, "headers": AUTH}, 422, "invalid_input"),
    ("POST", "/v1/models/tiny-denoise/encode", {"content": png_bytes(16, 16), "headers": AUTH}, 409, None),
    ("POST", "/v1/models/tiny-seq/summarise", {"json": SERIES, "headers": AUTH}, 404, "not_found"),
    ("GET", "/v1/models/tiny-seq/encode", {"headers": AUTH}, 405, "method_not_allowed"),
]


@pytest.mark.parametrize(("method", "path", "options", "status", "code"), CASES)
def test_routes_answer_every_case_with_its_status_and_a_json_error(client, method, path, options, status, code):
    answer = client.request(method, path, **options)
    assert answer.status_code == status
    if status >= 400:
        error = answer.json()["error"]
        assert code is None or error["code"] == code
        assert error["message"]


def test_each_model_gets_the_handler_of_its_kind(client):
    repository = client.app.state.service.repository
    kinds = {name: type(versions[max(versions)].handler) for name, versions in repository.models.items()}
    assert kinds["tiny-seq"] is SequenceHandler
    assert kinds["tiny-image"] is ImageHandler and kinds["tiny-denoise"] is ImageHandler
    assert CodecHandler in kinds.values()


def test_requests_are_counted_under_their_model(client):
    assert client.post("/v1/models/tiny-seq/encode", json=SERIES, headers=AUTH).status_code == HTTPStatus.OK
    metrics = client.get("/metrics").text
    assert 'ae_requests_total{model="tiny-seq",operation="encode",status="200",version="2"}' in metrics


def test_openapi_documents_the_path_parameters(client):
    paths = client.get("/openapi.json").json()["paths"]
    versioned = paths["/v1/models/{name}/versions/{version}/decode"]["post"]
    assert [p["name"] for p in versioned["parameters"]] == ["name", "version"]
    assert [p["name"] for p in paths["/v1/models/{name}/encode"]["post"]["parameters"]] == ["name", *RATE]
    assert [p["name"] for p in paths["/v1/models/{name}/decode"]["post"]["parameters"]] == ["name"]


def test_admission_refuses_before_any_work(tiny_models: Path):
    app = create_app(service_settings(tiny_models, max_queue=1))
    with TestClient(app) as client:
        batcher = app.state.service.repository.get("tiny-image").handler.batchers["autoencoder"]
        headers = {"content-type": "image/png"}
        held = batcher.admit()
        client.portal.call(held.__aenter__)  # one request already holds the graph's only slot
        refused = client.post("/v1/models/tiny-image/reconstruct", content=b"never decoded", headers=headers)
        assert refused.status_code == HTTPStatus.SERVICE_UNAVAILABLE
        assert refused.json()["error"]["code"] == "overloaded" and refused.headers["retry-after"] == "1"
        client.portal.call(held.__aexit__, None, None, None)
        ok = client.post("/v1/models/tiny-image/reconstruct", content=png_bytes(8, 8), headers=headers)
        assert ok.status_code == HTTPStatus.OK and batcher.process.in_flight == 0


def test_a_lone_small_json_request_runs_on_the_event_loop(tiny_models: Path, monkeypatch):
    """No thread hop for a small request on an idle process; a large one still goes to a thread."""
    from service.kinds import sequence

    threads: list[str] = []
    original = sequence.prepare_sequences

    def recording(*args: Any) -> Any:
        threads.append(threading.current_thread().name)
        return original(*args)

    monkeypatch.setattr(sequence, "prepare_sequences", recording)
    app = create_app(service_settings(tiny_models, loop_inline_max_bytes=1000))
    with TestClient(app) as client:
        loop_thread = client.portal.call(lambda: threading.current_thread().name)
        small = client.post("/v1/models/tiny-seq/encode", json=SERIES)
        large = client.post("/v1/models/tiny-seq/encode", json={"sequences": [[0.123456789] * 200]})
    assert small.status_code == large.status_code == HTTPStatus.OK
    assert threads[0] == loop_thread
    assert threads[1] != loop_thread
