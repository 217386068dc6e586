"""Streams decode by their own header: `POST /v1/decode`, a codec's decode route, lazily loaded versions.

The repository here is the tiny one after two upgrades of `tiny-codec` (v1 -> v2 -> v3) under a policy
that loads only the latest version: streams written by v1 and v2 must still decode.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from functools import partial
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

import service.lazy
from service.batching import ProcessLoad
from service.codecs.bitstream import MIME as STREAM
from service.codecs.bitstream import Header, pack, unpack
from service.config import Settings
from service.kinds.codec import codec_encode, prepare_stream
from service.lazy import LazyVersions
from service.main import create_app
from service.model import LoadedModel
from service.repository import ModelRepository, load_version
from service.stages import Feeds, Job
from tests.service.conftest import decode_png, png_bytes, service_settings
from tests.service.server import running_server

HEIGHT, WIDTH = 40, 56  # not multiples of the stride: the decoded image is cropped to the header's size
LATEST_ONLY = "[default]\nlatest = 1\n[tasks.compress]\nlatest = 1\n"  # codecs too: the upgrade drops v1, v2


def _add_version(repo: Path, name: str, version: int) -> None:
    """A copy of `name/1` as `name/<version>` (same graphs, manifest renumbered)."""
    target = repo / name / str(version)
    shutil.copytree(repo / name / "1", target)
    manifest = target / "model.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": version}))


def _stream_of(folder: Path, settings: Settings) -> bytes:
    """A stream written by the version in `folder`, as its encode route wrote it while it was the default."""
    return codec_encode(load_version(folder, settings), png_bytes(HEIGHT, WIDTH, seed=3), settings).stream


@pytest.fixture(scope="module")
def upgraded(tiny_models: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[int, bytes]]:
    """(repository with tiny-codec v1..v3, a policy loading only the latest, streams written by v1 and v2)."""
    repo = tmp_path_factory.mktemp("upgraded") / "repo"
    shutil.copytree(tiny_models, repo)
    settings = service_settings(repo)
    streams = {1: _stream_of(repo / "tiny-codec" / "1", settings)}
    _add_version(repo, "tiny-codec", 2)
    streams[2] = _stream_of(repo / "tiny-codec" / "2", settings)
    _add_version(repo, "tiny-codec", 3)
    policy = repo.parent / "latest-only.toml"
    policy.write_text(LATEST_ONLY)
    return repo, policy, streams


@pytest.fixture(scope="module")
def client(upgraded: tuple[Path, Path, dict[int, bytes]]) -> Iterator[TestClient]:
    repo, policy, _ = upgraded
    with TestClient(create_app(service_settings(repo, version_policy=policy, lazy_max_versions=1))) as client:
        yield client


def _post(base: str, path: str, body: bytes, media: str = STREAM) -> tuple[int, str, bytes]:
    request = urllib.request.Request(f"{base}{path}", data=body, headers={"content-type": media}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read()


def _codec_info(base: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{base}/v1/models/tiny-codec", timeout=30) as response:
        info: dict[str, Any] = json.loads(response.read())
        return info


# --- the upgrade, against a real server ----------------------------------------------------------


def test_an_old_stream_decodes_after_an_upgrade_through_v1_decode_and_the_models_decode(upgraded):
    repo, policy, streams = upgraded
    with running_server(repo, AE_VERSION_POLICY=str(policy)) as (_, base):
        before = _codec_info(base)
        assert before["default_version"] == 3
        assert [v["version"] for v in before["versions"]] == [3]
        assert before["not_loaded_versions"] == [1, 2]

        status, media, by_header = _post(base, "/v1/decode", streams[1])
        assert (status, media) == (200, "image/png"), by_header
        assert decode_png(by_header).shape == (HEIGHT, WIDTH, 3)
        # The model's own decode route (default v3) follows the header to v1, with the same answer.
        status, media, by_route = _post(base, "/v1/models/tiny-codec/decode", streams[1])
        assert (status, media, by_route) == (200, "image/png", by_header)

        after = _codec_info(base)
        assert after["default_version"] == 3  # a lazily loaded version never becomes the default
        assert [v["version"] for v in after["versions"]] == [1, 3]
        assert after["not_loaded_versions"] == [2]
        with urllib.request.urlopen(f"{base}/health/ready", timeout=30) as response:
            assert response.status == 200
        with urllib.request.urlopen(f"{base}/metrics", timeout=30) as response:
            metrics = response.read().decode()
        # Both answers are counted under the version that decoded them, which is published as loaded.
        requests = re.findall(
            r'ae_requests_total\{model="tiny-codec",operation="decode",status="200",version="1"\} (\S+)', metrics
        )
        assert [float(count) for count in requests] == [2.0]
        assert re.search(r'ae_model_loaded\{[^}]*model="tiny-codec"[^}]*version="1"\} 1\.0', metrics)


# --- refusals ------------------------------------------------------------------------------------


def _forged(stream: bytes, name: str, version: int) -> bytes:
    """`stream`'s payload under a header naming another model or version (a valid, unsigned stream)."""
    header, payload = unpack(stream)
    return pack(Header(name, version, header.table_hash, header.height, header.width), payload)


@pytest.mark.parametrize(
    ("body", "media", "status", "message"),
    [
        pytest.param(b"hello", STREAM, 400, "not a compressed-image stream (bad magic)", id="not-a-stream"),
        pytest.param(b"", STREAM, 400, "not a compressed-image stream", id="empty"),
        pytest.param(b"AEIC\x02\x00\x05tiny", STREAM, 400, "stream is truncated", id="header-cut-short"),
        pytest.param(b"AEIC\x07", STREAM, 400, "unsupported stream format version 7", id="future-format"),
        pytest.param(b"AEIC\x02\x00", "image/png", 415, "send Content-Type: application/octet-stream", id="png"),
    ],
)
def test_v1_decode_refuses_what_is_not_a_stream(client, body, media, status, message):
    response = client.post("/v1/decode", content=body, headers={"content-type": media})
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("name", "version", "status", "message"),
    [
        pytest.param("no-such-model", 1, 404, "unknown model 'no-such-model'", id="unknown-model"),
        pytest.param("tiny-codec", 9, 404, "model 'tiny-codec' has no version 9", id="version-not-on-disk"),
        pytest.param("tiny-image", 1, 400, "tiny-image/1, which is not a compression model", id="not-a-codec"),
    ],
)
def test_v1_decode_refuses_streams_naming_what_cannot_decode_them(client, upgraded, name, version, status, message):
    forged = _forged(upgraded[2][1], name, version)
    response = client.post("/v1/decode", content=forged, headers={"content-type": STREAM})
    assert response.status_code == status
    assert message in response.json()["error"]["message"]


def test_a_damaged_stream_is_refused_before_it_can_cost_a_load(client, upgraded):
    damaged = bytearray(upgraded[2][2])
    damaged[-8] ^= 0xFF  # a payload byte: the header still names tiny-codec/2, the checksum no longer matches
    response = client.post("/v1/decode", content=bytes(damaged), headers={"content-type": STREAM})
    assert response.status_code == 400
    assert "checksum mismatch" in response.json()["error"]["message"]
    assert 2 not in client.app.state.service.repository.models["tiny-codec"]


def test_with_a_stream_key_only_a_signed_stream_can_cost_a_load(upgraded, loads):
    repo, policy, streams = upgraded
    settings = service_settings(repo, version_policy=policy, stream_key="k" * 32)
    with TestClient(create_app(settings)) as keyed:
        response = keyed.post("/v1/decode", content=streams[2], headers={"content-type": STREAM})
        assert response.status_code == 400
        assert "stream is not signed" in response.json()["error"]["message"]
        assert 2 not in keyed.app.state.service.repository.models["tiny-codec"]
    assert loads == []


@pytest.mark.parametrize(
    ("name", "version"),
    [pytest.param("other-codec", 1, id="another-model"), pytest.param("tiny-codec", 9, id="version-not-on-disk")],
)
def test_the_models_decode_route_keeps_to_its_default_for_a_stream_it_cannot_follow(client, upgraded, name, version):
    foreign = _forged(upgraded[2][1], name, version)
    response = client.post("/v1/models/tiny-codec/decode", content=foreign, headers={"content-type": STREAM})
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert f"stream was made by {name}/{version}, not tiny-codec/3" in message and "POST /v1/decode" in message


def test_v1_decode_is_documented_with_the_inference_error_table(client):
    operations = client.get("/openapi.json").json()["paths"]
    stream = operations["/v1/decode"]["post"]
    assert set(stream["requestBody"]["content"]) == {STREAM}
    assert set(stream["responses"]) == set(operations["/v1/models/{name}/decode"]["post"]["responses"])


# --- lazy loading, in process ----------------------------------------------------------------------


def _lazy_run(
    repo: Path,
    policy: Path,
    capacity: int,
    body: Callable[[LazyVersions, ModelRepository], Awaitable[None]],
    on_start: Callable[[LoadedModel], None] = lambda model: None,
) -> None:
    """Run `body` on an event loop with the repository loaded as the service loads it, then stop everything.

    `on_start` sees each lazily loaded version as its handler starts.
    """
    settings = service_settings(repo, version_policy=policy, lazy_max_versions=capacity)
    repository = ModelRepository.load(settings)
    process = ProcessLoad()

    async def main() -> None:
        for model in repository.loaded():
            model.handler.start(process)

        def start(model: LoadedModel) -> None:
            model.handler.start(process)
            on_start(model)

        lazy = LazyVersions(repository, settings, start, lambda model: None)
        try:
            await body(lazy, repository)
        finally:
            await lazy.close()
            await asyncio.gather(*(model.handler.stop() for model in repository.loaded()))

    asyncio.run(main())


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every version folder `service.lazy` loads, as (model, version), in order."""
    calls: list[tuple[str, str]] = []

    def counted(folder: Path, settings: Settings) -> LoadedModel:
        calls.append((folder.parent.name, folder.name))
        return load_version(folder, settings)

    monkeypatch.setattr(service.lazy, "load_version", counted)
    return calls


def test_concurrent_first_requests_load_a_version_once(upgraded, loads):
    repo, policy, _ = upgraded

    async def body(lazy: LazyVersions, repository: ModelRepository) -> None:
        async def use() -> LoadedModel:
            async with lazy.serving("tiny-codec", 1) as model:
                await asyncio.sleep(0)
                return model

        models = await asyncio.gather(*(use() for _ in range(8)))
        assert len({id(model) for model in models}) == 1
        assert repository.models["tiny-codec"][1] is models[0]

    _lazy_run(repo, policy, 2, body)
    assert loads == [("tiny-codec", "1")]


async def _decode_on(model: LoadedModel, stream: bytes) -> tuple[int, ...]:
    """Decode `stream` through `model`'s own decode batcher: the path a request in flight takes."""

    def shape(outputs: Feeds, size: tuple[int, int]) -> tuple[int, ...]:
        return tuple(outputs["reconstruction"][0, :, : size[0], : size[1]].shape)

    job = Job(partial(prepare_stream, model, stream, model.handler.settings), shape)
    return await model.handler.batcher_for("decode").execute(job, asyncio.get_running_loop().time() + 30)


def test_the_least_recently_used_version_is_evicted_after_its_requests_finish(upgraded, loads):
    repo, policy, streams = upgraded
    stopped: list[int] = []

    async def body(lazy: LazyVersions, repository: ModelRepository) -> None:
        async with lazy.serving("tiny-codec", 1) as first:
            real_stop = first.handler.stop

            async def recorded_stop() -> None:
                stopped.append(first.manifest.version)
                await real_stop()

            first.handler.stop = recorded_stop  # type: ignore[method-assign]
            async with lazy.serving("tiny-codec", 2):
                pass  # capacity 1: loading v2 evicts v1, which this request still holds
            assert sorted(repository.models["tiny-codec"]) == [2, 3]
            assert repository.not_loaded["tiny-codec"] == [1]
            assert lazy.loaded_keys() == [("tiny-codec", 2)]
            # Evicted, not stopped: the request in flight still decodes on it.
            assert await _decode_on(first, streams[1]) == (3, HEIGHT, WIDTH)
            assert stopped == []
        await asyncio.sleep(0.05)  # the stop runs as its own task once the last request let go
        assert stopped == [1]
        async with lazy.serving("tiny-codec", 1):  # named again: loaded again, evicting v2
            assert lazy.loaded_keys() == [("tiny-codec", 1)]

    _lazy_run(repo, policy, 1, body)
    assert loads == [("tiny-codec", "1"), ("tiny-codec", "2"), ("tiny-codec", "1")]


def test_versions_loaded_at_once_past_the_bound_both_serve(upgraded, loads):
    """Capacity 1, two versions asked for together: the second load evicts the first before its waiter wakes."""
    repo, policy, streams = upgraded
    stopped: set[int] = set()  # ids of the lazily loaded models whose handlers were stopped
    handed_out_stopped: list[int] = []

    def watch_stops(model: LoadedModel) -> None:
        real_stop = model.handler.stop

        async def recorded_stop() -> None:
            stopped.add(id(model))
            await real_stop()

        model.handler.stop = recorded_stop  # type: ignore[method-assign]

    async def body(lazy: LazyVersions, repository: ModelRepository) -> None:
        async def decode(version: int) -> tuple[int, ...]:
            async with lazy.serving("tiny-codec", version) as model:
                await asyncio.sleep(0.05)  # another load (and its eviction) may run meanwhile
                assert model.manifest.version == version
                shape = await asyncio.wait_for(_decode_on(model, streams[version]), 30)
                if id(model) in stopped:  # before this request got it, or while it held it
                    handed_out_stopped.append(version)
                return shape

        assert await asyncio.gather(decode(1), decode(2)) == [(3, HEIGHT, WIDTH)] * 2

    _lazy_run(repo, policy, 1, body, watch_stops)
    assert handed_out_stopped == []
    assert loads == [("tiny-codec", "1"), ("tiny-codec", "2")]


def test_with_lazy_loading_off_an_unloaded_version_is_404(upgraded, loads):
    repo, policy, _ = upgraded

    async def body(lazy: LazyVersions, repository: ModelRepository) -> None:
        with pytest.raises(Exception, match="exists, but the version policy does not load it") as error:
            async with lazy.serving("tiny-codec", 1):
                pass
        assert getattr(error.value, "status", None) == HTTPStatus.NOT_FOUND

    _lazy_run(repo, policy, 0, body)
    assert loads == []


def test_a_version_failing_verification_is_503_with_the_reason_in_the_log_only(
    upgraded, tmp_path, loads, caplog, monkeypatch
):
    repo, policy, streams = upgraded
    broken = tmp_path / "repo"
    shutil.copytree(repo, broken)
    graph = next((broken / "tiny-codec" / "1").glob("*decoder*.onnx"))
    graph.write_bytes(graph.read_bytes() + b"tampered")
    with TestClient(create_app(service_settings(broken, version_policy=policy))) as client:
        monkeypatch.setattr(logging.getLogger("service"), "propagate", True)  # the app's JSON logging turned it off
        with caplog.at_level(logging.ERROR, logger="service.lazy"):
            answers = [client.post("/v1/decode", content=streams[1], headers={"content-type": STREAM}) for _ in "ab"]
        for answer in answers:
            assert answer.status_code == 503
            error = answer.json()["error"]
            assert error["code"] == "model_unavailable"
            assert "sha256" not in error["message"] and graph.name not in error["message"]
        assert client.get("/health/ready").status_code == 200  # lazy loads never touch readiness
        # Another lazily loadable version is unaffected by the failed one.
        other = client.post("/v1/models/tiny-codec/decode", content=streams[2], headers={"content-type": STREAM})
        assert other.status_code == 200
    assert f"sha256 of {graph.name} does not match the manifest" in caplog.text
    assert loads == [("tiny-codec", "1"), ("tiny-codec", "2")]  # v1 tried once, then refused at once
