"""Slow clients and large bodies, against a real `ae-serve` process.

A client trickling its body is cut off by the body read deadline (408, connection closed) and never
holds an admission slot; large JSON bodies are parsed off the event loop, so /health/live answers
while they are; connections beyond AE_MAX_CONNECTIONS are answered 503.
"""

import json
import socket
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from urllib.parse import urlsplit

from tests.service.server import running_server

SEQUENCES = json.dumps({"sequences": [[0.1 * i for i in range(24)]]}).encode()
ENCODE = "/v1/models/tiny-seq/encode"


def _post(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, headers={"content-type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            response.read()
            return response.status
    except urllib.error.HTTPError as error:
        error.read()
        return error.code


def _connect(base: str) -> socket.socket:
    parts = urlsplit(base)
    return socket.create_connection((parts.hostname, parts.port), timeout=10)


def _slow_client(base: str) -> socket.socket:
    """A connection that declares a 1000-byte JSON body and sends 5 bytes of it."""
    sock = _connect(base)
    head = f"POST {ENCODE} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
    sock.sendall(head.encode() + b'{"seq')
    return sock


def _answer_and_close(sock: socket.socket, timeout_s: float) -> bytes:
    """Everything the server sends until it closes the connection (raises on timeout)."""
    sock.settimeout(timeout_s)
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_slow_bodies_hold_no_admission_slot_and_are_cut_off(tiny_models):
    env = {"AE_MAX_QUEUE": "2", "AE_BODY_READ_TIMEOUT_S": "1"}
    with running_server(tiny_models, **env) as (_, base):
        started = time.perf_counter()
        slow = [_slow_client(base) for _ in range(4)]
        time.sleep(0.3)  # the slow requests are in their handlers, waiting for the rest of the body
        assert [_post(base + ENCODE, SEQUENCES) for _ in range(3)] == [HTTPStatus.OK] * 3
        for sock in slow:
            with sock:
                # Cut off within the read deadline + 2 s of being opened: 408 and closed.
                answer = _answer_and_close(sock, max(1 + 2 - (time.perf_counter() - started), 0.1))
            assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
            assert b'"body_timeout"' in answer
        assert time.perf_counter() - started < 1 + 2


def _live_latency(base: str) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(base + "/health/live", timeout=10) as response:
        response.read()
    return time.perf_counter() - started


def test_live_answers_while_large_json_bodies_are_parsed(tiny_models):
    # 300 series (over the 256 a request may hold): parsing the ~4 MB is the work, the answer a 422.
    # orjson holds the interpreter lock while it parses (~30 ms here), so the loop waits for one parse
    # at most; `json` on the loop took ~340 ms for such a body. Larger bodies make the test depend on
    # how busy the machine is: a parse stretched by other processes holds the lock for longer.
    body = json.dumps({"sequences": [[0.123456] * 1500] * 300}).encode()
    assert 3_500_000 < len(body) < 5_000_000
    with running_server(tiny_models) as (_, base), ThreadPoolExecutor(4) as senders:
        idle = max(_live_latency(base) for _ in range(5))
        futures = [senders.submit(_post, base + ENCODE, body) for _ in range(4)]
        time.sleep(0.3)  # the bodies are on their way (4 MB over loopback: a few ms each)
        latencies: list[float] = []
        while not all(f.done() for f in futures) or len(latencies) < 5:
            latencies.append(_live_latency(base))
            time.sleep(0.01)
        assert [f.result() for f in futures] == [HTTPStatus.UNPROCESSABLE_ENTITY] * 4
    assert max(latencies) < 0.1, (idle, sorted(latencies)[-5:])


def test_connections_beyond_the_limit_are_answered_503(tiny_models):
    with running_server(tiny_models, AE_MAX_CONNECTIONS="4") as (_, base):
        idle = [_connect(base) for _ in range(4)]
        time.sleep(0.2)
        try:
            with urllib.request.urlopen(base + "/health/live", timeout=10):
                status: int = HTTPStatus.OK
        except urllib.error.HTTPError as error:
            status = error.code
        assert status == HTTPStatus.SERVICE_UNAVAILABLE
        for sock in idle:
            sock.close()
        time.sleep(0.2)
        with urllib.request.urlopen(base + "/health/live", timeout=10) as response:
            assert response.status == HTTPStatus.OK
