"""A small fixed-concurrency HTTP load generator (asyncio + httpx) for soak and overload runs."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx
import numpy as np

from bench.net import process_status_bytes


@dataclass
class Request:
    """One request to send; `expect` is the status a correct service answers."""

    name: str
    path: str
    body: bytes
    content_type: str
    expect: int = 200


@dataclass
class Tally:
    """What came back."""

    statuses: Counter[int] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    latencies_ms: dict[int, list[float]] = field(default_factory=dict)
    client_errors: Counter[str] = field(default_factory=Counter)

    def record(self, request: Request, status: int, elapsed_ms: float) -> None:
        """Count one answer; anything but the expected status or a 503 is unexpected."""
        self.statuses[status] += 1
        self.latencies_ms.setdefault(status, []).append(elapsed_ms)
        if status != request.expect and status != 503:
            self.unexpected[f"{request.name}: {status}"] += 1

    def summary(self) -> dict[str, object]:
        """Counts and latency percentiles per status."""
        return {
            "requests": sum(self.statuses.values()),
            "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
            "unexpected": dict(self.unexpected),
            "client_errors": dict(self.client_errors),
            "latency_ms": {
                str(k): {
                    "p50": round(float(np.percentile(v, 50)), 2),
                    "p99": round(float(np.percentile(v, 99)), 2),
                    "max": round(float(np.max(v)), 2),
                }
                for k, v in sorted(self.latencies_ms.items())
            },
        }


async def drive(
    base: str, pick: Callable[[int], Request], concurrency: int, seconds: float, timeout_s: float = 30.0
) -> Tally:
    """Keep `concurrency` requests in flight for `seconds`, choosing each with `pick(i)`."""
    tally = Tally()
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=timeout_s) as client:

        async def worker(worker_id: int) -> None:
            i = worker_id
            while time.monotonic() < deadline:
                request = pick(i)
                i += concurrency
                started = time.perf_counter()
                try:
                    response = await client.post(
                        request.path, content=request.body, headers={"content-type": request.content_type}
                    )
                    tally.record(request, response.status_code, (time.perf_counter() - started) * 1000)
                except httpx.HTTPError as error:
                    tally.client_errors[type(error).__name__] += 1

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
    return tally


def rss_mb(pid: int) -> float:
    """Resident set size of a process in MB, from /proc."""
    rss = process_status_bytes(pid)
    return float("nan") if rss is None else rss / (1024 * 1024)
