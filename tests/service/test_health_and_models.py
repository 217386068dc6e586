import json
import shutil
from http import HTTPStatus

import pytest
from fastapi.testclient import TestClient
from pydantic import ValidationError

from service.config import Settings
from service.main import create_app
from tests.service.conftest import service_settings


def test_live_and_ready(client):
    assert client.get("/health/live").json() == {"status": "ok"}
    ready = client.get("/health/ready")
    assert ready.status_code == HTTPStatus.OK
    assert ready.json() == {"ready": True, "status": "ready", "models": 6, "failed": []}


def test_list_and_describe_models(client):
    models = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert sorted(models) == ["tiny-codec", "tiny-denoise", "tiny-hyperprior", "tiny-image", "tiny-seq"]
    seq = client.get("/v1/models/tiny-seq").json()
    assert seq["default_version"] == 2
    assert [v["task"] for v in seq["versions"]] == ["embed", "reconstruct"]
    image = models["tiny-image"]["versions"][0]
    assert image["operations"] == ["encode", "decode", "reconstruct"]
    assert image["providers"] == ["CPUExecutionProvider"]
    assert image["input"]["stride_multiple"] == 4 and image["latent"]["kind"] == "spatial"
    assert models["tiny-denoise"]["versions"][0]["operations"] == ["reconstruct"]
    # Whether a codec takes a rate (quality, target_bpp, max_bytes); null for models that are not codecs.
    rates = {name: model["versions"][0]["variable_rate"] for name, model in models.items()}
    assert rates == {
        "tiny-codec": False,
        "tiny-hyperprior": True,
        "tiny-image": None,
        "tiny-denoise": None,
        "tiny-seq": None,
    }


def test_unknown_model_is_404(client):
    response = client.get("/v1/models/missing")
    assert response.status_code == HTTPStatus.NOT_FOUND
    assert response.json()["error"]["code"] == "not_found"


def test_openapi_documents_every_operation_with_examples(client):
    spec = client.get("/openapi.json").json()
    for op in ("encode", "decode", "reconstruct"):
        for path in (f"/v1/models/{{name}}/{op}", f"/v1/models/{{name}}/versions/{{version}}/{op}"):
            post = spec["paths"][path]["post"]
            content = post["requestBody"]["content"]
            assert "application/json" in content
            assert "example" in content["application/json"] or "examples" in content["application/json"]
            assert {"200", "404", "409", "422"} <= set(post["responses"])


def _copy_repo(tiny_models, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_models, repo)
    return repo


def test_a_broken_model_is_skipped_with_its_reason(tiny_models, tmp_path):
    repo = _copy_repo(tiny_models, tmp_path)
    (repo / "tiny-image/1/decoder.onnx").write_bytes(b"tampered")
    manifest = repo / "tiny-denoise/1/model.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "task": "dance"}))
    with TestClient(create_app(service_settings(repo, allow_partial=True))) as client:
        ready = client.get("/health/ready").json()
        assert ready == {"ready": True, "status": "partial", "models": 4, "failed": ["tiny-denoise/1", "tiny-image/1"]}
        reasons = {(f["model"], f["version"]): f["reason"] for f in client.get("/v1/models").json()["failures"]}
        assert "sha256" in reasons["tiny-image", 1]
        assert "invalid model.json" in reasons["tiny-denoise", 1]
        response = client.post("/v1/models/tiny-image/reconstruct")
        assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
        assert response.json()["error"]["code"] == "model_unavailable"


@pytest.mark.parametrize("value", [pytest.param("true", id="true"), pytest.param("false", id="false")])
def test_the_removed_strict_models_setting_stops_start_up_naming_its_replacement(monkeypatch, value):
    monkeypatch.setenv("AE_STRICT_MODELS", value)
    with pytest.raises(ValidationError, match=r"AE_STRICT_MODELS was removed.*AE_ALLOW_PARTIAL=true"):
        Settings()


def test_not_ready_is_503_and_shutdown_clears_readiness(tiny_models):
    app = create_app(service_settings(tiny_models))
    client = TestClient(app)
    # Before the lifespan has run, nothing is loaded.
    response = client.post("/v1/models/tiny-seq/encode", json={"sequences": [[1, 2]]})
    assert response.status_code == HTTPStatus.SERVICE_UNAVAILABLE
    assert response.json()["error"]["code"] == "not_ready"
    with client:
        assert client.get("/health/ready").status_code == HTTPStatus.OK
    assert app.state.service.ready is False
