"""Micro-batching: requests with compatible shapes share one ONNX Runtime run.

One `MicroBatcher` per engine (a model version's graph). Requests queue as items with a shape key;
a worker takes the oldest item and every queued item with the same key, up to `max_batch_size`,
runs them as one batch in a worker thread, and splits the outputs back.

- An idle server never waits: the worker waits up to `max_wait_ms` for company only while other
  requests are known to be on their way (decoding their bodies); otherwise a lone request runs
  at once.
- A request that finds its batcher idle (nothing queued, nothing running) runs inline in the thread
  that prepared it: no hand-off at all (`try_inline` / `end_inline`).
- The queue is bounded: a full queue answers 503 `overloaded` with Retry-After at once, instead of
  letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Hashable
from concurrent.futures import Executor
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from service.engine import OnnxEngine
from service.errors import OverloadedError, RequestTimeoutError

Feeds = dict[str, np.ndarray]


@dataclass
class _Item:
    key: Hashable
    feeds: Feeds
    rows: int
    future: asyncio.Future[Feeds]


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
    """Queue + worker task for one engine."""

    def __init__(
        self, engine: OnnxEngine, executor: Executor, max_batch_size: int, max_wait_ms: float, max_queue: int
    ) -> None:
        self.engine = engine
        self.executor = executor
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_ms / 1000.0
        self.max_queue = max_queue
        self.items: deque[_Item] = deque()
        self.incoming = 0  # requests decoding their bodies that will submit here soon
        self.admitted = 0  # requests anywhere between admission and answer (see PipelineRunner.admitted)
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # Runs in progress (worker batches and inline runs); read and written from several threads.
        self._lock = threading.Lock()
        self._running = 0

    def try_inline(self) -> bool:
        """Claim the engine for one inline run when nothing is queued or running (any thread)."""
        with self._lock:
            if self._running or self.items:
                return False
            self._running += 1
            return True

    def end_inline(self) -> None:
        """Release a claim taken with `try_inline`."""
        with self._lock:
            self._running -= 1

    def start(self) -> None:
        """Start the worker on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._work())

    async def stop(self) -> None:
        """Stop the worker; queued requests fail as not ready."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        for item in self.items:
            if not item.future.done():
                item.future.set_exception(OverloadedError("the service is shutting down"))
        self.items.clear()

    async def submit(self, key: Hashable, feeds: Feeds, timeout_s: float) -> Feeds:
        """Queue one request's feeds (leading axis = its rows) and wait for its outputs."""
        if len(self.items) >= self.max_queue:
            raise OverloadedError("the model's queue is full; retry shortly", headers={"Retry-After": "1"})
        rows = len(next(iter(feeds.values())))
        item = _Item(key, feeds, rows, asyncio.get_running_loop().create_future())
        self.items.append(item)
        self._wakeup.set()
        try:
            async with asyncio.timeout(timeout_s):
                # On timeout the future is cancelled, and the worker skips items whose future is done.
                return await item.future
        except TimeoutError as error:
            raise RequestTimeoutError(f"the request did not finish within {timeout_s:g} s") from error

    def _take_batch(self) -> list[_Item]:
        first = self.items.popleft()
        batch, rows = [first], first.rows
        for item in list(self.items):
            if rows >= self.max_batch_size:
                break
            if item.key == first.key and rows + item.rows <= self.max_batch_size:
                self.items.remove(item)
                batch.append(item)
                rows += item.rows
        return [item for item in batch if not item.future.done()]

    async def _gather_company(self) -> None:
        # Wait only while more requests are known to be coming; a lone request never waits.
        deadline = time.perf_counter() + self.max_wait_s
        while self.incoming > 0 and sum(i.rows for i in self.items) < self.max_batch_size:
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
            if not self.items:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            if self.max_wait_s > 0:
                await self._gather_company()
            batch = self._take_batch()
            if not batch:
                continue
            with self._lock:
                self._running += 1
            try:
                outputs = await loop.run_in_executor(self.executor, self.engine.run, merge([i.feeds for i in batch]))
            except Exception as error:  # hand the failure to every waiting request
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(error)
                continue
            finally:
                with self._lock:
                    self._running -= 1
            for item, part in zip(batch, split(outputs, [i.rows for i in batch]), strict=True):
                if not item.future.done():
                    item.future.set_result(part)
