"""A real `ae-serve` process on a free port, for tests that need HTTP and signals."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.net import free_port, service_command, spawned


@contextmanager
def running_server(
    repository: Path, wait_for: str = "/health/ready", **env: str
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start the service on `repository`, wait until ready, yield (process, base URL), stop it after.

    `wait_for="/health/live"` for a server that is not meant to become ready: with one worker,
    uvicorn listens only once the lifespan (loading the models) has finished.
    """
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    # One worker unless a test asks for more: signals and timings then concern one process.
    settings = {"AE_PROVIDERS": '["CPUExecutionProvider"]', "AE_INTRA_OP_THREADS": "1", "AE_WORKERS": "1", **env}
    with spawned(service_command(port, repository), settings, base, wait_for, quiet=False) as process:
        yield process, base
