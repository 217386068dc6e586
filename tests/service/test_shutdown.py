"""Graceful shutdown of a real server process: SIGTERM while requests are in flight loses none."""

import re
import signal
import threading
import time
import urllib.request
from http import HTTPStatus

import pytest

from bench.net import http_get
from tests.service.conftest import png_bytes
from tests.service.server import running_server

IN_FLIGHT = 4


def _queue_depth(base: str) -> int:
    _, text = http_get(f"{base}/metrics")
    return int(sum(float(v) for v in re.findall(r'^ae_queue_depth\{model="tiny-image"\} (\S+)$', text, re.M)))


@pytest.fixture
def server(tiny_models):
    with running_server(tiny_models, AE_MAX_BODY_BYTES="50000000") as running:
        yield running


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
