"""Request orchestration: prepare in a worker thread, run in the model's micro-batcher, finish in a thread.

Decoding and encoding of different requests overlap in the thread pool while the batcher runs the
graph; the event loop only moves bytes. The whole request is bounded by the request timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from starlette.concurrency import run_in_threadpool

from service.batching import MicroBatcher
from service.config import Settings
from service.errors import OverloadedError, RequestTimeoutError
from service.metrics import ServiceMetrics
from service.pipelines import Prepared
from service.repository import LoadedModel, ModelRepository


class PipelineRunner:
    """Owns one micro-batcher per loaded graph and runs requests through prepare/run/finish."""

    def __init__(self, metrics: ServiceMetrics, settings: Settings) -> None:
        self.metrics = metrics
        self.settings = settings
        self.batchers: dict[int, MicroBatcher] = {}
        self._executor: ThreadPoolExecutor | None = None
        self.in_flight = 0  # admitted requests of every graph in this process

    def start(self, repository: ModelRepository) -> None:
        """Create and start a batcher per engine (call on the running event loop)."""
        engines = [e for versions in repository.models.values() for m in versions.values() for e in m.engines.values()]
        # One inference thread per graph: a batcher runs one batch at a time, graphs run side by side.
        self._executor = ThreadPoolExecutor(max_workers=max(1, len(engines)), thread_name_prefix="inference")
        for engine in engines:
            batcher = MicroBatcher(
                engine, self._executor, self.settings.max_batch_size, self.settings.max_wait_ms, self.settings.max_queue
            )
            batcher.start()
            self.batchers[id(engine)] = batcher

    async def stop(self) -> None:
        """Stop the batchers and the inference threads."""
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))
        self.batchers.clear()
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def admitted(self, model: LoadedModel, operation: str) -> AsyncIterator[None]:
        """Admission control before any work: past `max_queue` requests per graph, 503 at once.

        Counting starts after the body has been read (under its own deadline, so a slow client cannot
        hold a slot) and before it is parsed or decoded: an overloaded service refuses a request
        without decoding it.
        """
        batcher = self.batchers[id(model.engine_for(operation))]
        if batcher.admitted >= self.settings.max_queue:
            raise OverloadedError("the model is at capacity; retry shortly", headers={"Retry-After": "1"})
        batcher.admitted += 1
        self.in_flight += 1
        try:
            yield
        finally:
            batcher.admitted -= 1
            self.in_flight -= 1

    async def infer(
        self,
        model: LoadedModel,
        operation: str,
        prepare: Callable[..., Prepared],
        prepare_args: tuple[Any, ...],
        finish: Callable[..., Any],
        finish_args: tuple[Any, ...] = (),
        body_bytes: int | None = None,
    ) -> Any:
        """Prepare -> batched run -> finish, within the request timeout. 409 first if unsupported.

        `body_bytes`: the size of a JSON body whose work may run on the event loop (see `_on_loop`);
        None for work that always belongs in a thread: image decoding and encoding, and sequence
        decoding, whose cost the lengths it asks for set, not the size of its body.
        """
        batcher = self.batchers[id(model.engine_for(operation))]
        gauge = self.metrics.queue_depth.labels(model.manifest.name)
        deadline = time.perf_counter() + self.settings.request_timeout_s
        gauge.inc()
        try:
            # asyncio.timeout, unlike wait_for, runs the stages in this task: no extra task per request.
            async with asyncio.timeout(self.settings.request_timeout_s):
                on_loop = self._on_loop(body_bytes)
                return await self._stages(batcher, deadline, on_loop, prepare, prepare_args, finish, finish_args)
        except TimeoutError as error:
            raise RequestTimeoutError(
                f"the request did not finish within {self.settings.request_timeout_s:g} s"
            ) from error
        finally:
            gauge.dec()

    async def _stages(
        self,
        batcher: MicroBatcher,
        deadline: float,
        on_loop: bool,
        prepare: Callable[..., Prepared],
        prepare_args: tuple[Any, ...],
        finish: Callable[..., Any],
        finish_args: tuple[Any, ...],
    ) -> Any:
        if on_loop:
            outcome = _prepare_or_run_inline(batcher, prepare, prepare_args, finish, finish_args)
        else:
            batcher.incoming += 1  # lets the batcher wait for this request rather than run a lone one
            try:
                outcome = await run_in_threadpool(
                    _prepare_or_run_inline, batcher, prepare, prepare_args, finish, finish_args
                )
            finally:
                batcher.incoming -= 1
        if not isinstance(outcome, Prepared):
            return outcome.value
        outputs = await batcher.submit(outcome.key, outcome.feeds, max(deadline - time.perf_counter(), 0.001))
        return await run_in_threadpool(finish, outputs, outcome.context, *finish_args)

    def _on_loop(self, body_bytes: int | None) -> bool:
        """Whether to do a request's work on the event loop: a small JSON body, nothing else in flight.

        The hop to a worker thread and back costs more than a small sequence model's run (two thread
        wake-ups and a GIL hand-over). Blocking the loop is harmless while this process has no other
        request; the size cap bounds how long a request that arrives meanwhile waits to be read.
        """
        limit = self.settings.loop_inline_max_bytes
        return body_bytes is not None and body_bytes <= limit and self.in_flight <= 1


@dataclass
class _Done:
    value: Any


def _prepare_or_run_inline(
    batcher: MicroBatcher,
    prepare: Callable[..., Prepared],
    prepare_args: tuple[Any, ...],
    finish: Callable[..., Any],
    finish_args: tuple[Any, ...],
) -> Prepared | _Done:
    """In a worker thread: prepare; if the engine is idle, also run and finish here (one hop in all)."""
    prepared = prepare(*prepare_args)
    if not batcher.try_inline():
        return prepared
    try:
        outputs = batcher.engine.run(prepared.feeds)
    finally:
        batcher.end_inline()
    return _Done(finish(outputs, prepared.context, *finish_args))
