"""The typed stages of a request: prepare (a worker thread) -> run (the graph's batcher) -> finish (a thread).

`prepare` decodes and validates a request into graph feeds with a batching key: the feeds of requests
with equal keys are concatenated along the batch axis and run as one batch. `finish` turns that
request's slice of the outputs into its answer. Stages are synchronous and CPU-bound (Pillow, NumPy
and ONNX Runtime release the GIL for their heavy parts). A `Job` carries one request's two stages with
their types: the context `prepare` hands to `finish` (C) and what `finish` returns (R).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from starlette.responses import Response

from service.engine import OnnxEngine
from service.errors import ServiceError

Feeds = dict[str, np.ndarray]
C = TypeVar("C")
R = TypeVar("R")
# Where a request is when it is abandoned: only `running` and `finishing` mean its graph ran.
T = TypeVar("T")
Phase = Literal["preparing", "queued", "running", "finishing"]


@dataclass(frozen=True)
class Prepared(Generic[C]):
    """One request's graph feeds (leading axis = its rows), its batching key, and what `finish` needs.

    `pixels`: the padded pixels an image request runs on (0 for other kinds); a batch of images holds
    at most `AE_MAX_BATCH_PIXELS` of them.
    """

    key: Hashable
    feeds: Feeds
    context: C
    pixels: int = 0


@dataclass
class Job(Generic[C, R]):
    """One request's work for a batcher.

    `small`: the request's whole work may run on the event loop when the process is otherwise idle
    (a small JSON body; see `MicroBatcher.execute`). `phase` and `abandoned` are the batcher's
    bookkeeping: once abandoned (client gone, deadline passed) a job that has not run will not.
    """

    prepare: Callable[[], Prepared[C]]
    finish: Callable[[Feeds, C], R]
    small: bool = False
    phase: Phase = field(default="preparing", init=False)
    abandoned: bool = field(default=False, init=False)
    # (phase, time.time_ns()) as the job entered each phase: what its trace spans are written from.
    marks: list[tuple[Phase, int]] = field(default_factory=lambda: [("preparing", time.time_ns())], init=False)

    def enter(self, phase: Phase) -> None:
        """Move to `phase`, noting when (one clock read; `service.tracing` turns the marks into spans)."""
        self.phase = phase
        self.marks.append((phase, time.time_ns()))


@dataclass(frozen=True)
class Answer:
    """A finished answer, built in the worker thread: bytes, media type and headers."""

    body: bytes
    media_type: str
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> Response:
        """The HTTP response."""
        return Response(self.body, media_type=self.media_type, headers=self.headers)


def run_direct(engine: OnnxEngine, job: Job[C, R]) -> R:
    """Prepare -> run -> finish for one request, without batching (evaluation code and tests)."""
    prepared = job.prepare()
    return job.finish(engine.run(prepared.feeds), prepared.context)


async def run_all(coroutines: list[Coroutine[Any, Any, T]]) -> list[T]:
    """Run coroutines together (an OIP request's rows, an image's tiles).

    The first failure cancels the rest and is raised as itself (a service error before any other).
    """
    if len(coroutines) == 1:  # the common request of one row: no task group to set up
        return [await coroutines[0]]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in coroutines]
    except BaseExceptionGroup as failures:
        first = failures.exceptions[0]
        service = [e for e in failures.exceptions if isinstance(e, ServiceError)]
        raise (service[0] if service else first) from None
    return [task.result() for task in tasks]
