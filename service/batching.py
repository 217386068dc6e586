"""Admission, micro-batching and cancellation for one graph: a `MicroBatcher` per engine.

A request passes through its graph's batcher in three steps, all owned here:

1. `admit()`: at most `max_queue` requests per graph between admission and answer; past that, 503
   `overloaded` with Retry-After at once, before the body is parsed (the body was already read, under
   its own deadline, so a slow client cannot hold a slot).
2. `execute(job, deadline)`: prepare in a worker thread; if the graph is idle (nothing queued, nothing
   running) run and finish in that same thread (one hop in all); otherwise queue the feeds. One run at
   a time per graph: once the graph is free, a worker task takes the oldest queued item and every
   queued item with the same key, up to `max_batch_size` rows (and, for images, `max_batch_pixels`
   padded pixels), runs them as one batch on the graph's
   own inference thread, and splits the outputs back. It waits up to `max_wait_ms` for company only
   while other requests are known to be preparing; a lone request never waits. A small JSON request
   on an otherwise idle process runs on the event loop.
3. Cancellation: a request whose deadline passes or whose client disconnects is abandoned. A queued
   request is dropped before it runs; one that has not finished preparing will not run; a batch that
   is already running finishes, and the abandoned request's results are discarded. Each abandonment
   is reported (`on_abandoned`) with its reason and the phase it reached.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass
from itertools import pairwise
from typing import Any, Generic, Literal

import numpy as np
from starlette.concurrency import run_in_threadpool

from service.config import Settings
from service.engine import OnnxEngine
from service.errors import OverloadedError, RequestTimeoutError
from service.stages import Feeds, Job, Phase, Prepared, R
from service.tracing import tracer

logger = logging.getLogger(__name__)
Reason = Literal["deadline", "disconnect"]


class ProcessLoad:
    """Requests admitted in this process over every graph: a request runs on the event loop only alone."""

    def __init__(self) -> None:
        self.in_flight = 0


@dataclass(frozen=True)
class BatchPolicy:
    """How a batcher admits and groups requests (from `AE_MAX_BATCH_SIZE`, `AE_MAX_WAIT_MS`, `AE_MAX_QUEUE`)."""

    max_batch_size: int
    max_batch_pixels: int
    max_wait_s: float
    max_queue: int
    timeout_s: float  # the request timeout, for the 504 message

    @classmethod
    def from_settings(cls, settings: Settings) -> BatchPolicy:
        """The policy `settings` configure."""
        return cls(
            settings.max_batch_size,
            settings.max_batch_pixels,
            settings.max_wait_ms / 1000.0,
            settings.max_queue,
            settings.request_timeout_s,
        )


@dataclass(eq=False)  # compared by identity: the queue removes exactly this item
class _Item:
    key: Hashable
    feeds: Feeds
    rows: int
    pixels: int
    future: asyncio.Future[Feeds]
    job: Job[Any, Any]


@dataclass(frozen=True)
class _Done(Generic[R]):
    """A job that ran and finished in the thread that prepared it."""

    value: R


def merge(feeds: list[Feeds]) -> Feeds:
    """Concatenate per-request feeds along the batch axis (no copy for a batch of one)."""
    if len(feeds) == 1:
        return feeds[0]
    return {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}


def split(outputs: Feeds, rows: list[int]) -> list[Feeds]:
    """Cut batch outputs back into per-request views, in order."""
    bounds = np.cumsum([0, *rows]).tolist()
    return [{name: value[start:end] for name, value in outputs.items()} for start, end in pairwise(bounds)]


class MicroBatcher:
    """Admission, queue, worker task and inference thread of one engine."""

    def __init__(self, engine: OnnxEngine, policy: BatchPolicy) -> None:
        self.engine = engine
        self.policy = policy
        self.process = ProcessLoad()  # replaced by the app's shared one in `start`
        # Called with +1 / -1 as requests are admitted and answered, and with (reason, phase) for each
        # abandoned request; the app attaches its metrics here.
        self.on_depth: Callable[[int], None] | None = None
        self.on_abandoned: Callable[[Reason, Phase], None] | None = None
        # One inference thread per graph: a batcher runs one batch at a time, graphs run side by side.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inference")
        self._items: deque[_Item] = deque()
        self._admitted = 0  # requests between admission and answer
        self._incoming = 0  # requests preparing in a thread that will queue here unless the graph is idle
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Guards runs in progress (worker batches and inline runs) and a job's abandoned/phase pair,
        # which worker threads and the event loop both read and write.
        self._lock = threading.Lock()
        self._running = 0

    @property
    def queued(self) -> int:
        """Requests whose feeds wait in the queue for the worker."""
        return len(self._items)

    # ------------------------------------------------------------------ lifecycle

    def start(self, process: ProcessLoad) -> None:
        """Start the worker on the running loop; `process` counts requests over all graphs."""
        self.process = process
        self._loop = asyncio.get_running_loop()
        self._task = self._loop.create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker; queued requests fail as overloaded (the service is shutting down)."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for item in self._items:
            if not item.future.done():
                item.future.set_exception(OverloadedError("the service is shutting down"))
        self._items.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    # ------------------------------------------------------------------ admission

    @asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        """A slot for one request until it is answered; 503 `overloaded` at once when none is free."""
        if self._admitted >= self.policy.max_queue:
            raise OverloadedError("the model is at capacity; retry shortly", headers={"Retry-After": "1"})
        self._count(+1)
        try:
            yield
        finally:
            self._count(-1)

    def _count(self, delta: int) -> None:
        self._admitted += delta
        self.process.in_flight += delta
        if self.on_depth is not None:
            self.on_depth(delta)

    # ------------------------------------------------------------------ one request

    async def execute(self, job: Job[Any, R], deadline: float) -> R:
        """Prepare -> run -> finish one admitted request, by `deadline` (event-loop time); 504 after it.

        Cancelling the calling task (the client disconnected) abandons the job as a passed deadline does.
        """
        try:
            async with asyncio.timeout_at(deadline):
                return await self._stages(job)
        except TimeoutError as error:
            self._abandon(job, "deadline")
            raise RequestTimeoutError(f"the request did not finish within {self.policy.timeout_s:g} s") from error
        except asyncio.CancelledError:
            self._abandon(job, "disconnect")
            raise
        finally:
            tracer().record_job(job, self.engine.label)

    async def _stages(self, job: Job[Any, R]) -> R:
        if job.small and self.process.in_flight <= 1:
            # The hop to a thread and back costs more than a small sequence model's run; blocking the
            # loop is harmless while nothing else is in flight, and `small` bounds how long a request
            # arriving meanwhile waits to be read.
            outcome = self._prepare_or_run_inline(job)
        else:
            self._incoming += 1  # lets the worker wait for this request rather than run a lone one
            try:
                outcome = await run_in_threadpool(self._prepare_or_run_inline, job)
            finally:
                self._incoming -= 1
        if isinstance(outcome, _Done):
            return outcome.value
        outputs = await self._submit(job, outcome)
        job.enter("finishing")
        return await run_in_threadpool(job.finish, outputs, outcome.context)

    def _prepare_or_run_inline(self, job: Job[Any, R]) -> Prepared[Any] | _Done[R]:
        """In a worker thread: prepare; if the graph is idle, also run and finish here."""
        prepared = job.prepare()
        with self._lock:
            if job.abandoned or self._running or self._items:
                return prepared  # an abandoned job is not run; its caller is gone
            self._running += 1
            job.enter("running")
        try:
            outputs = self.engine.run(prepared.feeds)
        finally:
            with self._lock:
                self._running -= 1
                waiting = bool(self._items)
            if waiting and self._loop is not None:  # requests queued behind this run: the worker goes on
                self._loop.call_soon_threadsafe(self._wakeup.set)
        job.enter("finishing")
        return _Done(job.finish(outputs, prepared.context))

    async def _submit(self, job: Job[Any, Any], prepared: Prepared[Any]) -> Feeds:
        rows = len(next(iter(prepared.feeds.values())))
        future = asyncio.get_running_loop().create_future()
        item = _Item(prepared.key, prepared.feeds, rows, prepared.pixels, future, job)
        job.enter("queued")
        self._items.append(item)
        self._wakeup.set()
        try:
            return await item.future
        except asyncio.CancelledError:
            # Dropped before it runs (the worker also skips items whose future is done).
            if item in self._items:
                self._items.remove(item)
            raise

    def _abandon(self, job: Job[Any, Any], reason: Reason) -> None:
        with self._lock:
            job.abandoned = True
            phase = job.phase
        logger.info("request abandoned (%s) while %s", reason, phase)
        if self.on_abandoned is not None:
            self.on_abandoned(reason, phase)

    # ------------------------------------------------------------------ the worker

    def _take_batch(self) -> list[_Item]:
        first = self._items.popleft()
        batch, rows, pixels = [first], first.rows, first.pixels
        for item in list(self._items):
            if rows >= self.policy.max_batch_size:
                break
            fits = rows + item.rows <= self.policy.max_batch_size
            fits = fits and pixels + item.pixels <= self.policy.max_batch_pixels  # images: small ones only
            if item.key == first.key and fits:
                self._items.remove(item)
                batch.append(item)
                rows += item.rows
                pixels += item.pixels
        return [item for item in batch if not item.future.done()]

    async def _gather_company(self) -> None:
        # Wait only while more requests are known to be coming; a lone request never waits.
        deadline = time.perf_counter() + self.policy.max_wait_s
        while self._incoming > 0 and sum(i.rows for i in self._items) < self.policy.max_batch_size:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                return
            self._wakeup.clear()
            try:
                await asyncio.wait_for(self._wakeup.wait(), remaining)
            except TimeoutError:
                return

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._items or self._running:  # nothing to do, or an inline run holds the graph
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.policy.max_wait_s > 0:
                await self._gather_company()
            batch = self._take_batch()
            if not batch:
                continue
            with self._lock:
                self._running += 1
                for item in batch:
                    item.job.enter("running")
            try:
                feeds = merge([i.feeds for i in batch])
                outputs = await loop.run_in_executor(self._executor, self.engine.run, feeds)
            except Exception as error:  # hand the failure to every waiting request
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            finally:
                with self._lock:
                    self._running -= 1
            for item, part in zip(batch, split(outputs, [i.rows for i in batch]), strict=True):
                if not item.future.done():  # an abandoned request's part is discarded
                    item.future.set_result(part)
