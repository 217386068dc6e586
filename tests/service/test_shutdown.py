"""Graceful shutdown of a real server process: SIGTERM while requests are in flight loses none."""

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from http import HTTPStatus

import pytest

from tests.service.conftest import png_bytes

IN_FLIGHT = 4


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def _queue_depth(base: str) -> int:
    _, text = _get(f"{base}/metrics")
    return int(sum(float(v) for v in re.findall(r'^ae_queue_depth\{model="tiny-image"\} (\S+)$', text, re.M)))


@pytest.fixture
def server(tiny_models):
    port = _free_port()
    env = {
        **os.environ,
        "AE_PROVIDERS": '["CPUExecutionProvider"]',
        "AE_INTRA_OP_THREADS": "1",
        "AE_MAX_BODY_BYTES": "50000000",
    }
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "--port",
            str(port),
            "--repository",
            str(tiny_models),
            "--log-level",
            "warning",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if _get(f"{base}/health/ready")[0] == HTTPStatus.OK:
                break
        except OSError:
            time.sleep(0.2)
    else:
        process.kill()
        pytest.fail(f"server did not become ready: {process.stdout.read().decode()[-2000:]}")
    yield process, base
    if process.poll() is None:
        process.kill()


def test_sigterm_finishes_in_flight_requests(server):
    process, base = server
    image = png_bytes(1200, 1200)  # slow enough (decode, infer, encode) to still be running at SIGTERM
    statuses: list[int] = []

    def send() -> None:
        request = urllib.request.Request(
            f"{base}/v1/models/tiny-image/reconstruct", data=image, headers={"content-type": "image/png"}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            statuses.append(response.status)

    threads = [threading.Thread(target=send) for _ in range(IN_FLIGHT)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 30
    while _queue_depth(base) < IN_FLIGHT and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _queue_depth(base) == IN_FLIGHT, "requests never reached the model"
    process.send_signal(signal.SIGTERM)
    for thread in threads:
        thread.join(timeout=60)
    assert statuses == [HTTPStatus.OK] * IN_FLIGHT  # none lost
    # uvicorn re-raises the signal once drained, so a clean exit reads as "terminated by SIGTERM".
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
