"""Retries on 503 and 429 honouring Retry-After, within bounds; API keys and their errors.

The 503 comes from a small proxy in front of the real server that answers 503 with `Retry-After: 1`
a set number of times and then forwards: a real server's own 503s (a full queue with AE_MAX_QUEUE=1,
models loading) depend on timing on a shared machine, and a test needs exactly N of them to show the
client waits as told, retries, and stops at its bound. The 429 is the real server's own rate limit.
"""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from client import NO_RETRIES, Client, OverloadedError, RateLimitedError, RetryPolicy, UnauthorizedError
from client.cli import main
from tests.client.conftest import series
from tests.service.conftest import ALL_VERSIONS
from tests.service.server import running_server

OVERLOADED = b'{"error": {"code": "overloaded", "message": "the model is at capacity; retry shortly"}}'


class Flaky:
    """A proxy that answers the first `failures` requests with 503 + Retry-After: 1, then forwards."""

    def __init__(self, upstream: str, failures: int) -> None:
        self.upstream, self.failures, self.hits = upstream, failures, 0
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._answer()

            def do_POST(self) -> None:
                self._answer()

            def _answer(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                proxy.hits += 1
                if proxy.hits <= proxy.failures:
                    self._reply(HTTPStatus.SERVICE_UNAVAILABLE, {"retry-after": "1"}, OVERLOADED)
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(proxy.upstream + self.path, body or None, headers, method=self.command)
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        self._reply(answer.status, dict(answer.headers), answer.read())
                except urllib.error.HTTPError as error:
                    self._reply(error.code, dict(error.headers), error.read())

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for name, value in headers.items():
                    if name.lower() not in ("content-length", "connection", "transfer-encoding", "date", "server"):
                        self.send_header(name, value)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        return Handler

    def __enter__(self) -> Flaky:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_two_503s_are_waited_out_as_retry_after_says(server_url: str) -> None:
    with Flaky(server_url, failures=2) as proxy, Client(proxy.url) as client:
        started = time.monotonic()
        embeddings = client.embed(series(2), "tiny-seq", version=1)
        elapsed = time.monotonic() - started
    assert embeddings.shape[0] == 2
    assert proxy.hits == 3
    assert elapsed >= 2.0  # Retry-After: 1, twice


def test_retries_stop_at_the_attempt_bound_with_the_servers_error(server_url: str) -> None:
    policy = RetryPolicy(max_attempts=3)
    with (
        Flaky(server_url, failures=99) as proxy,
        Client(proxy.url, retry=policy) as client,
        pytest.raises(OverloadedError) as raised,
    ):
        client.models()
    assert proxy.hits == 3
    assert raised.value.code == "overloaded" and raised.value.retry_after == 1.0


def test_a_wait_past_the_total_bound_is_not_slept(server_url: str) -> None:
    policy = RetryPolicy(max_attempts=10, max_total_wait_s=0.5)
    with Flaky(server_url, failures=99) as proxy, Client(proxy.url, retry=policy) as client:
        started = time.monotonic()
        with pytest.raises(OverloadedError):
            client.models()
    assert proxy.hits == 1 and time.monotonic() - started < 1.0  # the 1 s Retry-After was not slept


def test_the_cli_retries_too(server_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with Flaky(server_url, failures=1) as proxy:
        assert main(["--url", proxy.url, "models"]) == 0
    assert "tiny-codec" in capsys.readouterr().out


@pytest.fixture(scope="module")
def keyed_url(tiny_models: Path) -> Iterator[str]:
    """A server with an API key and a rate limit of one request a second (a bucket of one)."""
    settings = {
        "AE_VERSION_POLICY": str(ALL_VERSIONS),
        "AE_API_KEYS": "secret-key",
        "AE_RATE_LIMIT_PER_S": "1",
        "AE_RATE_LIMIT_BURST": "1",
    }
    with running_server(tiny_models, **settings) as (_, base):
        yield base


@pytest.mark.parametrize("key", [pytest.param(None, id="no-key"), pytest.param("wrong", id="wrong-key")])
def test_a_missing_or_wrong_key_is_unauthorized(keyed_url: str, key: str | None) -> None:
    with Client(keyed_url, api_key=key or "") as client, pytest.raises(UnauthorizedError) as raised:
        client.models()
    assert raised.value.status == HTTPStatus.UNAUTHORIZED and raised.value.code == "unauthorized"


def test_the_real_rate_limit_429_is_retried_after_its_retry_after(keyed_url: str) -> None:
    with (
        Client(keyed_url, api_key="secret-key", retry=NO_RETRIES) as impatient,
        pytest.raises(RateLimitedError) as raised,
    ):
        for _ in range(3):
            impatient.models()
    assert raised.value.code == "rate_limited" and raised.value.retry_after is not None
    with Client(keyed_url, api_key="secret-key") as patient:
        answers = [patient.embed(series(1), "tiny-seq", version=1) for _ in range(3)]
    assert all(isinstance(answer, np.ndarray) for answer in answers)


def test_the_cli_takes_the_key_from_the_environment(
    keyed_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AE_URL", keyed_url)
    monkeypatch.delenv("AE_API_KEY", raising=False)
    assert main(["models"]) == 1
    assert "401 unauthorized" in capsys.readouterr().err
    monkeypatch.setenv("AE_API_KEY", "secret-key")
    assert main(["models"]) == 0
    assert "tiny-seq" in capsys.readouterr().out
