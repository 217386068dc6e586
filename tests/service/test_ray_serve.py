"""The service on Ray Serve: two replicas behind Ray's HTTP proxy answer byte for byte as `ae-serve` does.

A local Ray cluster (2 CPUs, no dashboard, in a temporary folder) for the whole module; the CI runs
this file once, in its own stage (`pytest -m ray`).
"""

import inspect
import json
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import pytest

pytest.importorskip("ray.serve", reason="Ray Serve is not installed: pip install 'ray[serve]' (docs/ray-serve.md)")

import ray
from ray import serve

from bench.net import free_port, http_get
from service.deploy.ray_serve import RayServeArgs, build, replica_environment
from tests.service.conftest import ALL_VERSIONS, png_bytes
from tests.service.server import running_server

pytestmark = pytest.mark.ray

APP = "ae"
SERIES = [[0.1 * i for i in range(40)], [1.0 - 0.05 * i for i in range(40)]]
SERIES_BODY = json.dumps({"sequences": SERIES}).encode()
# Requests compared with `ae-serve`: (method, path, body, content type, the status both answer).
CASES = [
    pytest.param(
        "POST", "/v1/models/tiny-image/reconstruct", png_bytes(40, 30), "image/png", 200, id="image-reconstruct"
    ),
    pytest.param(
        "POST", "/v1/models/tiny-seq/versions/1/encode", SERIES_BODY, "application/json", 200, id="sequence-encode"
    ),
    pytest.param(
        "POST", "/v1/models/nope/encode", b'{"sequences": [[1]]}', "application/json", 404, id="unknown-model"
    ),
    pytest.param("GET", "/v1/models", None, None, 200, id="models"),
]
# Requests counted per replica: odd, so the two replicas' counts differ and tell their scrapes apart.
COUNTED = 21
COUNTED_PATH = "/v1/models/tiny-seq/versions/2/reconstruct"
COUNTED_SERIES = re.compile(
    r'^ae_requests_total\{model="tiny-seq",operation="reconstruct",status="200",version="2"\} (\S+)$', re.M
)


def send(base: str, method: str, path: str, body: bytes | None, content_type: str | None) -> tuple[int, str, bytes]:
    """(status, content type, body) of one request; HTTP errors are answers too."""
    headers = {"content-type": content_type} if content_type else {}
    request = urllib.request.Request(base + path, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.headers["content-type"], response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["content-type"], error.read()


@pytest.fixture(scope="module")
def proxy() -> Iterator[str]:
    """The base URL of Ray Serve's HTTP proxy on a local Ray cluster; Serve and Ray shut down after."""
    folder = tempfile.mkdtemp(prefix="ray-")  # short: Ray's socket paths must fit in 107 characters
    with pytest.MonkeyPatch.context() as env:
        env.setenv("RAY_USAGE_STATS_ENABLED", "0")  # no report to send, and no network to send it on
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            _temp_dir=folder,
            object_store_memory=80 * 1024 * 1024,
            log_to_driver=False,
        )
        port = free_port()
        try:
            serve.start(http_options={"host": "127.0.0.1", "port": port})
            yield f"http://127.0.0.1:{port}"
        finally:
            serve.shutdown()
            ray.shutdown()
            shutil.rmtree(folder, ignore_errors=True)


def deploy(name: str, **args: str) -> None:
    """Deploy `build` with these arguments, given as strings as `serve run` passes them."""
    typed = RayServeArgs.model_validate({"num_cpus": "0.5", "intra_op_threads": "1", "log_level": "warning", **args})
    serve.run(build(typed), name=name, route_prefix=f"/{name}")


@pytest.fixture(scope="module")
def replicas(proxy: str, tiny_models: Path) -> str:
    """Two replicas over the tiny repository, every version loaded; their base URL."""
    deploy(APP, replicas="2", repository=str(tiny_models), version_policy=str(ALL_VERSIONS))
    return f"{proxy}/{APP}"


@pytest.fixture(scope="module")
def server(tiny_models: Path) -> Iterator[str]:
    with running_server(tiny_models, AE_VERSION_POLICY=str(ALL_VERSIONS)) as (_, base):
        yield base


def test_two_replicas_run_and_are_ready(replicas):
    # /health/ready answers 200 only once the lifespan loaded the models: Ray ran it in the replica.
    status, body = http_get(f"{replicas}/health/ready")
    assert status == HTTPStatus.OK, body
    assert json.loads(body)["models"] == 6
    deployment = serve.status().applications[APP].deployments["ServiceReplica"]
    assert deployment.replica_states == {"RUNNING": 2}


@pytest.mark.parametrize(("method", "path", "body", "content_type", "status"), CASES)
def test_answers_equal_those_of_ae_serve(replicas, server, method, path, body, content_type, status):
    expected = send(server, method, path, body, content_type)
    assert expected[0] == status
    assert send(replicas, method, path, body, content_type) == expected  # status, content type, bytes


def test_both_replicas_serve(replicas):
    for _ in range(COUNTED):
        assert send(replicas, "POST", COUNTED_PATH, SERIES_BODY, "application/json")[0] == HTTPStatus.OK
    # Each replica has its own metrics and a scrape reaches one of them: two different counts that
    # add up to every request sent mean both served some.
    counts: set[float] = set()
    for _ in range(40):
        status, text = http_get(f"{replicas}/metrics")
        assert status == HTTPStatus.OK
        counts.add(sum(float(v) for v in COUNTED_SERIES.findall(text)))
        if len(counts) == 2:
            break
    assert len(counts) == 2 and sum(counts) == COUNTED and min(counts) > 0, counts


def test_a_replica_that_is_not_ready_gets_no_traffic(proxy, tiny_models, tmp_path):
    # tiny-seq v1 loads, v2 cannot: the replica starts but is not ready, so its health check fails.
    shutil.copytree(tiny_models / "tiny-seq", tmp_path / "tiny-seq")
    for graph in (tmp_path / "tiny-seq" / "2").glob("*.onnx"):
        graph.write_bytes(b"not a graph")
    with pytest.raises(RuntimeError, match="failed"):
        deploy("not-ready", repository=str(tmp_path), version_policy=str(ALL_VERSIONS))
    overview = serve.status().applications["not-ready"].deployments["ServiceReplica"]
    assert overview.status == "DEPLOY_FAILED" and "health check" in overview.message
    status, body = http_get(f"{proxy}/not-ready/health/ready")
    assert status == HTTPStatus.SERVICE_UNAVAILABLE and "failed to deploy" in body  # Ray's answer, not a replica's
    serve.delete("not-ready")


def test_builder_arguments_are_typed_and_checked():
    # `serve run` converts KEY=VALUE to the builder's pydantic model only when annotated with the class.
    assert inspect.signature(build).parameters["args"].annotation is RayServeArgs
    args = RayServeArgs.model_validate({"replicas": "3", "max_batch_size": "8", "providers": ["CPUExecutionProvider"]})
    assert args.replicas == 3
    assert args.settings_environment() == {"AE_MAX_BATCH_SIZE": "8", "AE_PROVIDERS": '["CPUExecutionProvider"]'}
    for wrong in ({"replica": "2"}, {"port": "8001"}, {"grpc_port": "9001"}):
        with pytest.raises(ValueError, match=next(iter(wrong))):
            RayServeArgs.model_validate(wrong)
    with pytest.raises(ValueError, match="AE_MAX_BATCH_SIZE"):
        build(RayServeArgs.model_validate({"max_batch_size": "zero"}))


def test_replica_environment_defaults_give_way_to_settings(monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda _: set(range(16)))
    monkeypatch.delenv("AE_PROVIDERS", raising=False)
    monkeypatch.delenv("AE_WORKERS", raising=False)
    monkeypatch.delenv("AE_THREAD_SPINNING", raising=False)
    on_cpu = replica_environment({}, num_cpus=4, num_gpus=0)
    cpu_only = '["CPUExecutionProvider"]'
    assert on_cpu == {"AE_WORKERS": "4", "AE_THREAD_SPINNING": "false", "AE_PROVIDERS": cpu_only, "AE_GRPC_PORT": "0"}
    on_gpu = replica_environment({"AE_WORKERS": "1", "AE_GRPC_PORT": "9001"}, num_cpus=0.5, num_gpus=1)
    assert on_gpu == {"AE_WORKERS": "1", "AE_THREAD_SPINNING": "false", "AE_GRPC_PORT": "0"}
