"""Operations that explain themselves: settings mistakes in one line, JSON logs from every process
(uvicorn's too) with pids, no ONNX Runtime error lines on a host without CUDA, a start-up summary,
error codes on access lines, version labels on request metrics, debug lines, and reload on SIGHUP."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from bench.net import free_port, http_get, service_command
from service import engine
from service.engine import _captured, _failure_reason
from service.logs import JsonFormatter
from service.main import create_app
from tests.service.conftest import service_settings

AUTH = {"authorization": "Bearer secret-key-1"}
WITH_CUDA_FIRST = '["CUDAExecutionProvider","CPUExecutionProvider"]'


def _run_cli(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AE_")}
    return subprocess.run([sys.executable, *command], env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("AE_PROVIDERS", "CPUExecutionProvider", 'is not JSON: expected a JSON list, e.g. ["CUDAExecutionProvider"'),
        ("AE_PROVIDERS", "[1]", "[0] Input should be a valid string"),
        ("AE_WORKERS", "two", "Input should be a valid integer"),
        ("AE_LOG_LEVEL", "loud", "Input should be 'critical', 'error', 'warning', 'info' or 'debug'"),
        ("AE_PRECISION", "bf16", "Input should be 'auto', 'fp32' or 'fp16'"),
    ],
)
def test_a_settings_mistake_is_one_line_naming_variable_value_and_form(variable, value, expected):
    done = _run_cli({variable: value}, "-m", "service.cli", "--help")
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert done.stderr.startswith(f"ae-serve: {variable}={value!r}") and expected in done.stderr


def test_uvicorn_started_directly_reports_a_settings_mistake_in_one_line():
    done = _run_cli({"AE_PROVIDERS": "CPUExecutionProvider"}, "-m", "uvicorn", "service.main:app", "--port", "0")
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "service.main: AE_PROVIDERS='CPUExecutionProvider' is not JSON: expected a JSON list, "
        'e.g. ["CUDAExecutionProvider","CPUExecutionProvider"]'
    ]


def _log_lines(text: str) -> list[dict[str, object]]:
    """Every stderr line as JSON (fails on the first line that is not)."""
    return [json.loads(line) for line in text.splitlines()]


@contextmanager
def _server(repository: Path, log: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`ae-serve` with its stderr in `log`, every worker ready to serve; stopped with SIGTERM after the block.

    One worker answering /health/ready is not enough: the others may still be starting (on a busy
    2-core machine, a second worker started 0.3 s after the first had answered), and would then load
    a repository the test has changed since. So each worker's start-up summary is awaited too.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [*service_command(port, repository)[:-2], "--log-level", "info"]
    settings = {"AE_INTRA_OP_THREADS": "1", "AE_WORKERS": "2", **env}
    workers = int(settings["AE_WORKERS"])
    with log.open("wb") as sink:
        process = subprocess.Popen(command, env={**os.environ, **settings}, stdout=sink, stderr=sink)
        try:
            _wait_for(lambda: _ready(base) and log.read_text().count('"message": "ready: ') >= workers, process)
            yield process, base
        finally:
            process.terminate()
            process.wait(timeout=60)


def _ready(base: str) -> bool:
    try:
        return http_get(f"{base}/health/ready")[0] == 200
    except OSError:
        return False


def _wait_for(condition: Callable[[], bool], process: subprocess.Popen[bytes], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, "the server exited"
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def _add_version(repo: Path, name: str, version: int) -> None:
    """A copy of `name/1` as `name/<version>` (same graphs, manifest renumbered)."""
    target = repo / name / str(version)
    shutil.copytree(repo / name / "1", target)
    manifest = target / "model.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "version": version}))


def test_two_workers_log_json_explain_their_start_and_reload_on_sighup(tiny_models, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(tiny_models, repo)
    log = tmp_path / "stderr.log"
    # CUDA first, as by default: on a host without it (this one, unless it has a GPU) the probe must
    # fall back to the CPU without ONNX Runtime's red error line.
    with _server(repo, log, AE_PROVIDERS=WITH_CUDA_FIRST, AE_API_KEYS="secret-key-1") as (process, base):
        assert _versions_with_key(base) == [1]
        status, _ = _post(base, "/v1/models/tiny-image/encode", b"not an image")
        assert status == 400
        # A new version is picked up without a restart: SIGHUP makes the parent replace each worker
        # by a fresh one (which loads the repository again) before it stops the old one. The built-in
        # policy (latest 1) then serves version 2 instead of 1.
        _add_version(repo, "tiny-image", 2)
        old_workers = _worker_pids(log)
        process.send_signal(signal.SIGHUP)
        _wait_for(lambda: _versions_while_reloading(base) == [2] and _all_replaced(log, old_workers), process)
        assert _ready(base)
    text = log.read_text()
    assert "onnxruntime:" not in text and "\x1b[" not in text  # no ONNX Runtime lines, no colours
    lines = _log_lines(text)
    assert all(isinstance(line["pid"], int) for line in lines)
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own lines are JSON too
    summaries = [line for line in lines if str(line["message"]).startswith("ready: ")]
    assert len(summaries) == 4  # one per worker: two at start, two after the reload
    # Each worker's lines carry its index; the two first workers are 0 and 1 (service.worker_slot).
    assert {summary["worker"] for summary in summaries[:2]} == {0, 1}
    assert all(isinstance(summary["worker"], int) for summary in summaries)
    settings = summaries[0]["settings"]
    assert isinstance(settings, dict)
    assert settings["auth"] == "on" and settings["api_key_count"] == 1 and "secret-key-1" not in text
    assert settings["workers"] == 2 and settings["providers"] in (["CPUExecutionProvider"], json.loads(WITH_CUDA_FIRST))
    assert settings["max_queue"] == 128 and settings["version_policy"] == "built-in (no policy file)"
    assert str(summaries[0]["message"]).endswith("on " + ", ".join(settings["providers"]))
    refused = [line for line in lines if line.get("path") == "/v1/models/tiny-image/encode"]
    assert [(line["status"], line["code"]) for line in refused] == [(400, "undecodable_body")]
    # Model-load lines repeat per worker; their pids tell the workers apart.
    first = {line["pid"] for line in lines if "loaded model tiny-image/1 " in str(line["message"])}
    second = {line["pid"] for line in lines if "loaded model tiny-image/2 " in str(line["message"])}
    assert len(first) == len(second) == 2 and not first & second


def _versions_while_reloading(base: str) -> list[int] | None:
    """`_versions_with_key`, or None while an old worker that is stopping answers 503 (`Retry-After`).

    The workers share the listening socket, so until an old worker has closed it a request may reach it
    after its readiness went off: 503 "stopping" is its documented answer, and a retry reaches the others.
    """
    try:
        return _versions_with_key(base)
    except urllib.error.HTTPError as error:
        if error.code != 503:
            raise
        return None


def _versions_with_key(base: str) -> list[int]:
    request = urllib.request.Request(f"{base}/v1/models", headers=AUTH)
    with urllib.request.urlopen(request, timeout=30) as response:
        models = json.loads(response.read())["models"]
    return [version["version"] for model in models if model["name"] == "tiny-image" for version in model["versions"]]


def _post(base: str, path: str, body: bytes) -> tuple[int, bytes]:
    request = urllib.request.Request(
        f"{base}{path}", data=body, headers={**AUTH, "content-type": "image/png"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


_STARTED = re.compile(r"Started server process \[(\d+)\]")


def _worker_pids(log: Path) -> set[int]:
    return {int(pid) for pid in _STARTED.findall(log.read_text())}


def _all_replaced(log: Path, old: set[int]) -> bool:
    finished = {int(pid) for pid in re.findall(r"Finished server process \[(\d+)\]", log.read_text())}
    return old <= finished and len(_worker_pids(log) - old) == len(old)


class _Lines(logging.Handler):
    """The `service` loggers' records, formatted as the service writes them."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, object]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def debug_client(tiny_models: Path) -> Iterator[tuple[TestClient, _Lines]]:
    app = create_app(service_settings(tiny_models, log_level="debug"))
    lines = _Lines()
    logger = logging.getLogger("service")
    logger.addHandler(lines)
    try:
        with TestClient(app) as client:
            yield client, lines
    finally:
        logger.removeHandler(lines)
        create_app(service_settings(tiny_models))  # back to the info level for later tests


def test_debug_level_logs_each_graph_run_with_its_batch_and_time(debug_client):
    client, lines = debug_client
    response = client.post(
        "/v1/models/tiny-seq/encode", json={"sequences": [[1, 2, 3], [4, 5, 6]]}, headers={"x-request-id": "dbg-1"}
    )
    assert response.status_code == 200
    runs = [line for line in lines.lines if line["message"] == "graph run" and line.get("request_id") == "dbg-1"]
    assert [(run["graph"], run["batch"]) for run in runs] == [("tiny-seq/2/encoder.onnx", 2)]
    assert isinstance(runs[0]["run_ms"], float) and runs[0]["pid"] == os.getpid()


def test_an_unexpected_error_is_internal_error_on_its_access_line(debug_client, monkeypatch):
    client, lines = debug_client
    repository = client.app.state.service.repository

    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(repository, "get", broken)
    response = TestClient(client.app, raise_server_exceptions=False).post(
        "/v1/models/tiny-seq/encode", json={"sequences": [[1, 2, 3]]}, headers={"x-request-id": "boom-1"}
    )
    assert response.status_code == 500
    access = [line for line in lines.lines if line["message"] == "request" and line.get("request_id") == "boom-1"]
    assert [(line["status"], line["code"]) for line in access] == [(500, "internal_error")]


def test_the_probe_captures_what_onnx_runtime_writes_to_stderr():
    result, output = _captured(
        lambda: os.write(2, b"\x1b[1;31m2026 [E:onnxruntime:Default, x.cc:1 f()] a failure\x1b[m\n")
    )
    assert result > 0 and output == "2026 [E:onnxruntime:Default, x.cc:1 f()] a failure\n"
    cuda = (
        "2026-11-29 22:53:52.09 [E:onnxruntime:Default, provider_bridge_ort.cc:2458 operator()] /src/x"
        ".cc:2043 onnxruntime::Provider& onnxruntime::ProviderLibrary::Get() [ONNXRuntimeError] : 1 : FAIL : Failed to "
        "load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: cannot open shared object file"
    )
    assert _failure_reason("\n" + cuda + "\n") == (
        "Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.13: "
        "cannot open shared object file"
    )


def test_a_provider_that_cannot_be_created_is_left_out_quietly(monkeypatch, capfd):
    monkeypatch.setattr(engine, "_PROBED", {})
    monkeypatch.setattr(
        engine.ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )

    def failing_session(*args: object, **kwargs: object) -> object:
        os.write(2, b"[E:onnxruntime:Default, p.cc:1 f()] no CUDA here\n")
        raise RuntimeError("no CUDA here")

    monkeypatch.setattr(engine.ort, "InferenceSession", failing_session)
    assert engine.available_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert engine.available_providers(["CUDAExecutionProvider"]) == ["CPUExecutionProvider"]  # probed once
    assert engine._PROBED == {"CUDAExecutionProvider": "no CUDA here"}
    assert "onnxruntime" not in capfd.readouterr().err
