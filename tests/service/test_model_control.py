"""Models change without a restart (AE_MODEL_CONTROL): a real ae-serve, driven by the unmodified tritonclient."""

import json
import shutil
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from pathlib import Path

import pytest
import tritonclient.http as triton
from pydantic import ValidationError
from tritonclient.utils import InferenceServerException

from service.config import Settings
from service.startup import settings_problems
from tests.service.conftest import png_bytes
from tests.service.server import running_server

ADMIN, USER = "admin-key", "user-key"
ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN}"}
KEYS = {"AE_ADMIN_KEYS": ADMIN, "AE_API_KEYS": USER}
IMAGE = png_bytes(32, 32)
LARGE_IMAGE = png_bytes(384, 384)  # a few ms per request on one thread: some are in flight at any time


@pytest.fixture
def repository(tiny_models: Path, tmp_path: Path) -> Path:
    """A copy of tiny-image (v1) and tiny-seq that the test may change."""
    root = tmp_path / "models"
    for name in ("tiny-image", "tiny-seq"):
        shutil.copytree(tiny_models / name, root / name)
    return root


def add_version(root: Path, name: str, source: int, version: int) -> Path:
    """Copy a version folder to a new number (its manifest says so), moved into place in one rename."""
    staging = root / f".staging-{version}"
    shutil.copytree(root / name / str(source), staging)
    manifest = json.loads((staging / "model.json").read_text())
    manifest["version"] = version
    (staging / "model.json").write_text(json.dumps(manifest))
    target = root / name / str(version)
    staging.rename(target)
    return target


def call(base: str, path: str, data: bytes | None = None, key: str = USER) -> tuple[int, dict]:
    headers = {"Authorization": f"Bearer {key}", "content-type": "image/png"}
    request = urllib.request.Request(base + path, data=data, headers=headers, method="POST" if data else "GET")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            body = response.read()
            return response.status, json.loads(
                body
            ) if response.headers.get_content_type() == "application/json" else {}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def timed_call(base: str, image: bytes) -> tuple[float, float, int, dict]:
    began = time.monotonic()
    status, body = call(base, "/v1/models/tiny-image/reconstruct", image)
    return began, time.monotonic(), status, body


def default_version(base: str, name: str = "tiny-image") -> int | None:
    status, body = call(base, f"/v1/models/{name}")
    return body["default_version"] if status == HTTPStatus.OK else None


def client_for(base: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(base.removeprefix("http://"), network_timeout=120)


def index(client: triton.InferenceServerClient) -> dict[tuple[str, str], dict]:
    return {(e["name"], e["version"]): e for e in client.get_model_repository_index(headers=ADMIN_HEADERS)}


def eventually(check, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not converged in time"
        time.sleep(0.2)


def test_explicit_load_failed_load_and_unload_with_requests_in_flight(repository):
    env = {**KEYS, "AE_MODEL_CONTROL": "explicit"}
    with running_server(repository, **env) as (_, base):
        client = client_for(base)
        assert index(client)[("tiny-image", "1")]["state"] == "READY"

        add_version(repository, "tiny-image", 1, 2)
        client.load_model("tiny-image", headers=ADMIN_HEADERS)
        assert default_version(base) == 2
        assert call(base, "/v1/models/tiny-image/reconstruct", IMAGE)[0] == HTTPStatus.OK

        broken = add_version(repository, "tiny-image", 1, 3)
        graph = next(broken.glob("*.onnx"))
        graph.write_bytes(graph.read_bytes()[:-10] + b"corrupted!")
        with pytest.raises(InferenceServerException, match="sha256"):
            client.load_model("tiny-image", headers=ADMIN_HEADERS)
        assert default_version(base) == 2  # the old version keeps serving
        entry = index(client)[("tiny-image", "3")]
        assert entry["state"] == "UNAVAILABLE" and "sha256" in entry["reason"]

        # Requests keep coming while the unload happens: those routed before it are answered (the unload
        # returns only once they are), the rest get 503 "unloaded"; nothing fails in any other way.
        with ThreadPoolExecutor(6) as pool:
            timed = [pool.submit(timed_call, base, LARGE_IMAGE) for _ in range(60)]
            time.sleep(0.3)
            unload_started = time.monotonic()
            client.unload_model("tiny-image", headers=ADMIN_HEADERS)
            unload_returned = time.monotonic()
            results = [t.result() for t in timed]
        answered = [(began, ended) for began, ended, status, _ in results if status == HTTPStatus.OK]
        refused = [body for _, _, status, body in results if status != HTTPStatus.OK]
        assert all("unloaded" in body["error"]["message"] for body in refused)
        assert refused, "no request came after the unload"
        assert any(ended > unload_started for _, ended in answered), "no request was in flight during the unload"
        assert all(ended <= unload_returned + 0.1 for _, ended in answered)
        status, body = call(base, "/v1/models/tiny-image/reconstruct", IMAGE)
        assert status == HTTPStatus.SERVICE_UNAVAILABLE and "unloaded" in body["error"]["message"]
        assert {e["state"] for k, e in index(client).items() if k[0] == "tiny-image"} == {"UNAVAILABLE"}
        assert call(base, "/health/ready")[0] == HTTPStatus.OK  # unloaded on purpose: still ready


def test_admin_key_required_and_mode_none_refuses_load(repository):
    with running_server(repository, **KEYS) as (_, base):
        for headers, status in (({}, 401), ({"Authorization": f"Bearer {USER}"}, 403), (ADMIN_HEADERS, 409)):
            with pytest.raises(InferenceServerException) as error:
                client_for(base).load_model("tiny-image", headers=headers)
            assert error.value.status() == str(status)
        assert "AE_MODEL_CONTROL" in str(error.value)
        assert index(client_for(base))[("tiny-image", "1")]["state"] == "READY"  # the index still works
        # A body larger than any repository call needs is refused before it is read whole.
        status, body = call(base, "/v2/repository/index", b"{" + b" " * 100_000 + b"}", key=ADMIN)
        assert status == 413 and "exceeds the limit" in body["error"]


def test_poll_picks_up_a_new_version_and_a_removed_model(repository):
    env = {**KEYS, "AE_MODEL_CONTROL": "poll", "AE_POLL_INTERVAL_S": "0.5"}
    with running_server(repository, **env) as (_, base):
        add_version(repository, "tiny-image", 1, 2)
        shutil.rmtree(repository / "tiny-seq")
        eventually(lambda: default_version(base) == 2)
        eventually(lambda: call(base, "/v1/models/tiny-seq")[0] in (HTTPStatus.NOT_FOUND, 503))
        assert not [k for k in index(client_for(base)) if k[0] == "tiny-seq"]
        with pytest.raises(InferenceServerException, match="poll"):
            client_for(base).load_model("tiny-image", headers=ADMIN_HEADERS)


def test_two_workers_converge_in_explicit_mode(repository):
    env = {**KEYS, "AE_MODEL_CONTROL": "explicit", "AE_WORKERS": "2"}
    with running_server(repository, **env) as (_, base):
        add_version(repository, "tiny-image", 1, 2)
        client_for(base).load_model("tiny-image", headers=ADMIN_HEADERS)
        # Successive connections land on either worker: all of them must see the new version.
        eventually(lambda: all(default_version(base) == 2 for _ in range(16)))
        client_for(base).unload_model("tiny-image", headers=ADMIN_HEADERS)
        eventually(lambda: all(default_version(base) is None for _ in range(16)))


def test_an_admin_key_that_is_also_an_inference_key_stops_start_up():
    with pytest.raises(ValidationError) as error:
        Settings(admin_keys="shared", api_keys="shared,other")
    assert settings_problems(error.value) == [
        "AE_ADMIN_KEYS: a key is also in AE_API_KEYS; admin keys must differ from inference keys "
        "(every client holding that inference key could load and unload models)"
    ]
