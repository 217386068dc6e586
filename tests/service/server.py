"""A real `ae-serve` process on a free port, for tests that need HTTP and signals."""

from __future__ import annotations

import subprocess
import urllib.request
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


def post_image(base: str, model: str, image: bytes, timeout: float = 60) -> int:
    """POST a PNG to a model's reconstruct route; the status (the answer is read and dropped)."""
    request = urllib.request.Request(
        f"{base}/v1/models/{model}/reconstruct", data=image, headers={"content-type": "image/png"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()
        return response.status
