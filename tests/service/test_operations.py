"""Operations: metrics, request ids, JSON logs, API keys, timeouts."""

import json
import logging
import time
from http import HTTPStatus

import pytest
from fastapi.testclient import TestClient

from service.config import Settings
from service.logs import JsonFormatter, request_id_var
from service.main import create_app
from tests.service.conftest import png_bytes, service_settings


def test_metrics_count_requests_by_model_version_operation_and_status(client):
    client.post("/v1/models/tiny-seq/encode", json={"sequences": [[1, 2, 3]]})
    client.post("/v1/models/tiny-seq/encode", json={"sequences": [[1, "x"]]})
    client.post("/v1/models/random-name-123/encode", json={"sequences": [[1]]})
    # Versions that are not loaded must not become label values either.
    client.post("/v1/models/tiny-seq/versions/987654/encode", json={"sequences": [[1, 2, 3]]})
    text = client.get("/metrics").text
    # The default-version route is counted under the version that served it (tiny-seq: 2 of 1 and 2).
    assert 'ae_requests_total{model="tiny-seq",operation="encode",status="200",version="2"}' in text
    assert 'ae_requests_total{model="tiny-seq",operation="encode",status="422",version="2"}' in text
    assert 'model="unknown",operation="encode",status="404",version="unknown"' in text
    assert 'model="tiny-seq",operation="encode",status="404",version="unknown"' in text
    assert "random-name-123" not in text and "987654" not in text
    assert 'ae_inference_seconds_count{graph="encoder",model="tiny-seq"}' in text
    assert "ae_batch_size_bucket" in text and "ae_queue_depth" in text
    assert (
        'ae_model_loaded{model="tiny-image",providers="CPUExecutionProvider",task="reconstruct",version="1"} 1.0'
        in text
    )
    assert "ae_request_latency_seconds_bucket" in text


def test_request_id_is_returned_and_generated(client):
    given = client.get("/health/live", headers={"x-request-id": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    generated = client.get("/health/live").headers["x-request-id"]
    assert len(generated) == 32
    unsafe = client.get("/health/live", headers={"x-request-id": "bad id\twith spaces"})
    assert unsafe.headers["x-request-id"] != "bad id\twith spaces"


def test_json_log_lines_carry_the_request_id():
    record = logging.makeLogRecord(
        {"name": "service.access", "levelno": 20, "levelname": "INFO", "msg": "request", "status": 200}
    )
    token = request_id_var.set("rid-1")
    try:
        line = json.loads(JsonFormatter().format(record))
    finally:
        request_id_var.reset(token)
    assert line["request_id"] == "rid-1" and line["status"] == 200 and line["message"] == "request"


@pytest.fixture(scope="module")
def locked(tiny_models):
    app = create_app(service_settings(tiny_models, api_keys=["key-one", "key-two"], auth_metrics=True))
    with TestClient(app) as client:
        yield client


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        pytest.param("/v1/models", {}, HTTPStatus.UNAUTHORIZED, id="no-key"),
        pytest.param("/v1/models", {"authorization": "Bearer wrong"}, HTTPStatus.UNAUTHORIZED, id="wrong-key"),
        pytest.param("/v1/models", {"authorization": "Basic key-one"}, HTTPStatus.UNAUTHORIZED, id="wrong-scheme"),
        pytest.param("/v1/models", {"authorization": "Bearer key-two"}, HTTPStatus.OK, id="second-key"),
        pytest.param("/metrics", {}, HTTPStatus.UNAUTHORIZED, id="metrics-locked"),
        pytest.param("/metrics", {"authorization": "bearer key-one"}, HTTPStatus.OK, id="metrics-with-key"),
        pytest.param("/health/ready", {}, HTTPStatus.OK, id="health-open"),
    ],
)
def test_api_keys(locked, path, headers, status):
    response = locked.get(path, headers=headers)
    assert response.status_code == status
    if status == HTTPStatus.UNAUTHORIZED:
        assert response.json()["error"]["code"] == "unauthorized"
        assert response.headers["www-authenticate"] == "Bearer"


def test_inference_needs_the_key(locked):
    body = {"sequences": [[1, 2, 3]]}
    assert locked.post("/v1/models/tiny-seq/encode", json=body).status_code == HTTPStatus.UNAUTHORIZED
    ok = locked.post("/v1/models/tiny-seq/encode", json=body, headers={"authorization": "Bearer key-one"})
    assert ok.status_code == HTTPStatus.OK


def test_api_keys_from_the_environment(monkeypatch):
    monkeypatch.setenv("AE_API_KEYS", "alpha, beta")
    assert Settings().api_keys == ["alpha", "beta"]


def test_a_slow_request_times_out_with_504(tiny_models, monkeypatch):
    from service.kinds import image

    original = image.finish_image

    def slow(*args, **kwargs):
        time.sleep(0.5)
        return original(*args, **kwargs)

    monkeypatch.setattr(image, "finish_image", slow)
    with TestClient(create_app(service_settings(tiny_models, request_timeout_s=0.1))) as client:
        response = client.post(
            "/v1/models/tiny-image/reconstruct", content=png_bytes(8, 8), headers={"content-type": "image/png"}
        )
        assert response.status_code == HTTPStatus.GATEWAY_TIMEOUT
        assert response.json()["error"]["code"] == "timeout"
