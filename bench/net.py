"""Loopback helpers shared by the benchmarks and the server tests."""

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


def process_status_bytes(pid: int | str, field: str = "VmRSS") -> int | None:
    """A memory field of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...) in bytes; None when it has none.

    `pid` may be "self".
    """
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    return None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; HTTP errors are answers too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


@contextmanager
def spawned(
    command: list[str], env: dict[str, str], base: str, ready_path: str, quiet: bool = True, timeout_s: float = 120.0
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a server process until the block ends; wait until `base + ready_path` answers 200 first."""
    output = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(command, env={**os.environ, **env}, stdout=output, stderr=output)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                if http_get(f"{base}{ready_path}")[0] == 200:
                    break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{command[:3]} did not become ready")
            time.sleep(0.2)
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def service_command(port: int, repository: Path) -> list[str]:
    """`ae-serve` on a port, as a module so the current interpreter's environment is used."""
    return [
        sys.executable,
        "-m",
        "service.cli",
        "--port",
        str(port),
        "--repository",
        str(repository),
        "--log-level",
        "warning",
    ]
