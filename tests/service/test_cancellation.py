"""Abandoned requests are not run, against a real `ae-serve` process.

One large request keeps the graph busy; small requests to the same graph queue behind it. Those whose
client disconnects, or whose deadline passes, while they wait are dropped from the queue: the graph's
run counter (`ae_batch_size_count`) shows they never ran, `ae_abandoned_requests_total` counts them
by reason and phase, and the access metrics count them under 499 / 504, not as errors.
"""

from __future__ import annotations

import io
import re
import socket
import threading
import time
import urllib.error
import urllib.request
from urllib.parse import urlsplit

import numpy as np
from PIL import Image

from tests.service.conftest import png_bytes
from tests.service.server import running_server

MODEL = "tiny-denoise"  # ~6 s for the 2048 x 2048 request on one thread: the others queue behind it
WAITING = 4


def _large_png() -> bytes:
    pixels = np.random.default_rng(0).integers(0, 255, (2048, 2048, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _status(base: str, body: bytes, results: list[int]) -> None:
    request = urllib.request.Request(
        f"{base}/v1/models/{MODEL}/reconstruct", data=body, headers={"content-type": "image/png"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()
            results.append(response.status)
    except urllib.error.HTTPError as error:
        results.append(error.code)


def _sent(base: str, body: bytes) -> socket.socket:
    """A connection that has sent a whole request and not yet read its answer."""
    parts = urlsplit(base)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
    head = (
        f"POST /v1/models/{MODEL}/reconstruct HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _metric(base: str, name: str, **labels: str) -> float:
    """The sum of a metric's samples whose labels include `labels` (0 when none)."""
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as response:
        text = response.read().decode()
    total = 0.0
    for line in text.splitlines():
        match = re.fullmatch(rf"{name}\{{(.*)\}} (\S+)", line)
        if match and all(f'{k}="{v}"' in match[1] for k, v in labels.items()):
            total += float(match[2])
    return total


def _runs(base: str) -> float:
    return _metric(base, "ae_batch_size_count", model=MODEL, graph="autoencoder")


def _wait_for(condition, timeout_s: float = 120.0) -> None:
    deadline = time.perf_counter() + timeout_s
    while not condition():
        assert time.perf_counter() < deadline, "condition not reached"
        time.sleep(0.1)


def _busy(base: str) -> tuple[threading.Thread, list[int]]:
    """Send the large request in the background; return once the graph has had time to start on it."""
    results: list[int] = []
    thread = threading.Thread(target=_status, args=(base, _large_png(), results))
    thread.start()
    time.sleep(1.0)  # the body is sent and decoded (~0.2 s); the graph is running
    return thread, results


def test_requests_whose_client_disconnects_while_queued_are_never_run(tiny_models):
    with running_server(tiny_models) as (_, base):
        thread, large = _busy(base)
        assert _runs(base) == 0
        waiting = [_sent(base, png_bytes(16, 16)) for _ in range(WAITING)]
        time.sleep(0.5)  # read, decoded and queued behind the large request
        for sock in waiting:
            sock.close()
        thread.join(120)
        assert large == [200]
        _wait_for(lambda: _metric(base, "ae_abandoned_requests_total", model=MODEL) == WAITING)
        time.sleep(0.5)
        assert _runs(base) == 1  # the large request only: the abandoned ones never reached the graph
        assert _metric(base, "ae_abandoned_requests_total", reason="disconnect", phase="queued") == WAITING
        assert _metric(base, "ae_requests_total", model=MODEL, status="499") == WAITING
        assert _metric(base, "ae_requests_total", status="500") == 0
        # The service goes on answering.
        results: list[int] = []
        _status(base, png_bytes(16, 16), results)
        assert results == [200] and _runs(base) == 2


def test_requests_past_their_deadline_while_queued_are_never_run(tiny_models):
    with running_server(tiny_models, AE_REQUEST_TIMEOUT_S="1.5") as (_, base):
        thread, large = _busy(base)
        small: list[int] = []
        waiting = [threading.Thread(target=_status, args=(base, png_bytes(16, 16), small)) for _ in range(WAITING)]
        for client in waiting:
            client.start()
        for client in [thread, *waiting]:
            client.join(120)
        assert large == [504] and small == [504] * WAITING
        _wait_for(lambda: _runs(base) >= 1)  # the large request's run finishes; its result is discarded
        time.sleep(0.5)
        assert _runs(base) == 1
        assert _metric(base, "ae_abandoned_requests_total", reason="deadline", phase="queued") == WAITING
        assert _metric(base, "ae_abandoned_requests_total", reason="deadline", phase="running") == 1
        assert _metric(base, "ae_requests_total", model=MODEL, status="504") == WAITING + 1


def test_a_client_that_disconnects_while_sending_its_body_is_counted_as_499_not_500(tiny_models):
    with running_server(tiny_models) as (_, base):
        parts = urlsplit(base)
        for _ in range(3):
            sock = socket.create_connection((parts.hostname, parts.port), timeout=10)
            head = f"POST /v1/models/{MODEL}/reconstruct HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\n"
            sock.sendall(f"{head}Content-Length: 100000\r\n\r\n".encode() + png_bytes(16, 16)[:20])
            time.sleep(0.2)  # the server is reading the body
            sock.close()
        _wait_for(lambda: _metric(base, "ae_requests_total", model=MODEL, status="499") == 3, timeout_s=30)
        assert _metric(base, "ae_requests_total", status="500") == 0
        results: list[int] = []
        _status(base, png_bytes(16, 16), results)
        assert results == [200]
