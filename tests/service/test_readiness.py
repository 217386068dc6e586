"""Honest readiness, against a real `ae-serve` process.

`/health/ready` is 503 while a version the version policy names failed to load (unless
AE_ALLOW_PARTIAL), and with no models at all; it names the failed versions but never says why. The
reasons are on the authenticated `GET /v1/models`. A failed default version is not silently
replaced by an older one.
"""

import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import cast

import pytest

from service.model import LoadedModel
from service.repository import LoadFailure, ModelRepository
from tests.service.conftest import ALL_VERSIONS
from tests.service.server import running_server

KEY = "readiness-test-key"
FAILED = ["tiny-denoise/2", "tiny-seq/3"]
SEQUENCES = json.dumps({"sequences": [[0.1 * i for i in range(24)]]}).encode()


def _call(url: str, body: bytes | None = None, key: str | None = None) -> tuple[int, str]:
    """(status, body text) of a GET, or a JSON POST when `body` is given; HTTP errors are answers too."""
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(url, data=body, headers=headers, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@pytest.fixture(scope="module")
def broken_repo(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny repository plus two broken highest versions, each the default of its model.

    tiny-seq v3: a copy of v2 whose encoder graph no longer matches its sha256.
    tiny-denoise v2: a manifest that does not validate.
    """
    repo = tmp_path_factory.mktemp("broken") / "repo"
    shutil.copytree(tiny_models, repo)
    shutil.copytree(repo / "tiny-seq/2", repo / "tiny-seq/3")
    manifest = repo / "tiny-seq/3/model.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": 3}))
    (repo / "tiny-seq/3/encoder.onnx").write_bytes(b"tampered")
    (repo / "tiny-denoise/2").mkdir()
    (repo / "tiny-denoise/2/model.json").write_text('{"name": "tiny-denoise", "version": 2, "task": "dance"}')
    return repo


@pytest.fixture(scope="module")
def strict_server(broken_repo: Path) -> Iterator[str]:
    """Partial service not allowed (the default); the server starts but is not ready."""
    with running_server(broken_repo, wait_for="/health/live", AE_VERSION_POLICY=str(ALL_VERSIONS)) as (_, base):
        yield base


@pytest.fixture(scope="module")
def partial_server(broken_repo: Path) -> Iterator[str]:
    """AE_ALLOW_PARTIAL, with an API key (health stays open)."""
    env = {"AE_VERSION_POLICY": str(ALL_VERSIONS), "AE_ALLOW_PARTIAL": "true", "AE_API_KEYS": KEY}
    with running_server(broken_repo, **env) as (_, base):
        yield base


def _no_details(text: str, repo: Path) -> None:
    """Neither paths nor the reasons' text (file names, validation errors)."""
    for detail in (str(repo), "sha256", ".onnx", "model.json", "dance", "Input should"):
        assert detail not in text


def test_a_broken_version_makes_readiness_503(strict_server, broken_repo):
    status, text = _call(f"{strict_server}/health/ready")
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert json.loads(text) == {"ready": False, "status": "failed", "models": 6, "failed": FAILED}
    _no_details(text, broken_repo)


def test_partial_service_allowed_is_ready_and_lists_the_failed_versions_only(partial_server, broken_repo):
    status, text = _call(f"{partial_server}/health/ready")
    assert status == HTTPStatus.OK
    assert json.loads(text) == {"ready": True, "status": "partial", "models": 6, "failed": FAILED}
    _no_details(text, broken_repo)


def test_the_reasons_are_on_the_authenticated_models_endpoint(partial_server):
    assert _call(f"{partial_server}/v1/models")[0] == HTTPStatus.UNAUTHORIZED
    status, text = _call(f"{partial_server}/v1/models", key=KEY)
    assert status == HTTPStatus.OK
    reasons = {(f["model"], f["version"]): f["reason"] for f in json.loads(text)["failures"]}
    assert reasons.keys() == {("tiny-denoise", 2), ("tiny-seq", 3)}
    assert reasons["tiny-seq", 3] == "sha256 of encoder.onnx does not match the manifest"
    assert reasons["tiny-denoise", 2].startswith("invalid model.json")


def test_a_failed_default_version_is_not_silently_replaced(strict_server, broken_repo):
    status, text = _call(f"{strict_server}/v1/models/tiny-seq/reconstruct", SEQUENCES)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    error = json.loads(text)["error"]
    assert error == {
        "code": "model_unavailable",
        "message": "model 'tiny-seq': its default version 3 failed to load; loaded versions: 1, 2",
    }
    # The versions that loaded still answer when addressed (readiness is about routing traffic).
    assert _call(f"{strict_server}/v1/models/tiny-seq/versions/2/reconstruct", SEQUENCES)[0] == HTTPStatus.OK
    status, text = _call(f"{strict_server}/v1/models/tiny-seq/versions/3/reconstruct", SEQUENCES)
    assert status == HTTPStatus.SERVICE_UNAVAILABLE and json.loads(text)["error"]["code"] == "model_unavailable"
    _no_details(text, broken_repo)
    info = json.loads(_call(f"{strict_server}/v1/models/tiny-seq")[1])
    assert info["default_version"] is None and info["failed_versions"] == [3]


def test_with_partial_service_the_older_version_serves_and_models_says_so(partial_server):
    status, text = _call(f"{partial_server}/v1/models/tiny-seq/reconstruct", SEQUENCES, key=KEY)
    assert status == HTTPStatus.OK and json.loads(text)["version"] == 2
    info = json.loads(_call(f"{partial_server}/v1/models/tiny-seq", key=KEY)[1])
    assert info["default_version"] == 2 and info["failed_versions"] == [3]


@pytest.mark.parametrize(
    "env", [pytest.param({}, id="default"), pytest.param({"AE_ALLOW_PARTIAL": "true"}, id="partial-allowed")]
)
def test_an_empty_repository_is_not_ready(tmp_path, env):
    with running_server(tmp_path, wait_for="/health/live", **env) as (_, base):
        status, text = _call(f"{base}/health/ready")
    assert status == HTTPStatus.SERVICE_UNAVAILABLE
    assert json.loads(text) == {"ready": False, "status": "no_models", "models": 0, "failed": []}


def test_a_failure_of_a_version_still_serving_leaves_readiness_unchanged():
    # What a failed reload (not built yet) would record: the failure, while the old version keeps serving.
    repository = ModelRepository(
        models={"tiny-seq": {2: cast(LoadedModel, object())}},  # a stand-in for the loaded model
        chosen={"tiny-seq": [2]},
        failures=[LoadFailure("tiny-seq", 2, "the new graph failed")],
    )
    assert repository.health() == "ready" and repository.unserved() == []
    assert repository.default_version("tiny-seq") == 2
