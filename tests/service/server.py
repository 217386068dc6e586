"""A real `ae-serve` process on a free port, for tests that need HTTP and signals."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def running_server(repository: Path, **env: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start the service on `repository`, wait until ready, yield (process, base URL), kill it after."""
    port = free_port()
    environment = {**os.environ, "AE_PROVIDERS": '["CPUExecutionProvider"]', "AE_INTRA_OP_THREADS": "1", **env}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "service.cli",
            "--port",
            str(port),
            "--repository",
            str(repository),
            "--log-level",
            "warning",
        ],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if http_get(f"{base}/health/ready")[0] == 200:
                    break
            except OSError:
                time.sleep(0.2)
        else:
            raise RuntimeError("the server did not become ready")
        yield process, base
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
