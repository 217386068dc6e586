"""Runs a pipeline stage off the event loop, with a timeout and the queue-depth gauge."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, TypeVar

from starlette.concurrency import run_in_threadpool

from service.errors import RequestTimeoutError
from service.metrics import ServiceMetrics

T = TypeVar("T")


class PipelineRunner:
    """`await runner.run(model_name, fn, *args)`: fn runs in the thread pool, bounded by a timeout."""

    def __init__(self, metrics: ServiceMetrics, timeout_s: float) -> None:
        self.metrics = metrics
        self.timeout_s = timeout_s

    async def run(self, model_name: str, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` in a worker thread; 504 after the timeout (the thread finishes in the background)."""
        gauge = self.metrics.queue_depth.labels(model_name)
        gauge.inc()
        try:
            return await asyncio.wait_for(run_in_threadpool(fn, *args), timeout=self.timeout_s)
        except TimeoutError as error:
            raise RequestTimeoutError(f"the request did not finish within {self.timeout_s:g} s") from error
        finally:
            gauge.dec()
