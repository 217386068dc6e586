"""What every model kind's handler shares: the way from an HTTP request to a batched answer.

`ModelHandler.answer` is the whole request path of an inference route:

    409 unless the model offers the operation
    -> read the body (size limit, read deadline; before admission)
    -> admission by the graph's batcher (503 when full)
    -> the kind's operation: parse the body -> Job(prepare, finish) -> batcher.execute -> Answer
    -> the response

A kind (image, sequence, codec) subclasses it and implements the operations it offers; each
operation parses on the event loop only what is cheap or bounded and leaves the rest to its stages.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from fastapi import Request, Response

from service.api.bodies import read_body
from service.batching import BatchPolicy, MicroBatcher, ProcessLoad
from service.config import Settings
from service.errors import ClientGoneError, InvalidInputError
from service.manifest import graph_role
from service.model import LoadedModel
from service.stages import Answer, Job, R
from service.tracing import tracer


@dataclass(frozen=True)
class Call:
    """One admitted request: the request, its body, and the event-loop time its answer is due by."""

    request: Request
    body: bytes
    deadline: float


Operation = Callable[[Call], Awaitable[Answer]]


class ModelHandler(ABC):
    """Serves one loaded model version: its operations, and one micro-batcher per graph."""

    def __init__(self, model: LoadedModel, settings: Settings) -> None:
        self.model = model
        self.settings = settings
        policy = BatchPolicy.from_settings(settings)
        self.batchers = {role: MicroBatcher(engine, policy) for role, engine in model.engines.items()}
        self._operations: dict[str, Operation] = {
            "encode": self.encode,
            "decode": self.decode,
            "reconstruct": self.reconstruct,
        }

    @classmethod
    @abstractmethod
    def serves(cls, model: LoadedModel) -> bool:
        """Whether this kind serves `model` (the registry asks each kind in turn)."""

    # ------------------------------------------------------------------ lifecycle

    def start(self, process: ProcessLoad) -> None:
        """Start the batchers on the running loop."""
        for batcher in self.batchers.values():
            batcher.start(process)

    async def stop(self) -> None:
        """Stop the batchers."""
        await asyncio.gather(*(b.stop() for b in self.batchers.values()))

    # ------------------------------------------------------------------ the request path

    async def answer(self, operation: str, request: Request) -> Response:
        """Serve one request for `operation` (encode, decode or reconstruct)."""
        self.model.require(operation)  # 409 before reading a byte
        admitting = self.batcher_for(self.admitting_operation(operation))
        settings = self.settings
        with tracer().span("read body"):
            body = await read_body(request, settings.max_body_bytes, settings.body_read_timeout_s)
        async with admitting.admit(), cancelled_on_disconnect(request):
            deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
            answer = await self._operations[operation](Call(request, body, deadline))
        return answer.response()

    def decodes_streams(self) -> bool:
        """Whether this kind decodes compressed streams, whose header names the version that wrote them."""
        return False

    def admitting_operation(self, operation: str) -> str:
        """The operation whose graph admits requests for `operation` (its own, unless a kind chains graphs)."""
        return operation

    def batcher_for(self, operation: str, gray: bool = False) -> MicroBatcher:
        """The batcher of the graph `operation` runs (its gray variant's with `gray`); 409 when not offered.

        Gray requests are admitted by the RGB graph's batcher (`answer` admits before the body is read),
        so one queue bound covers both.
        """
        self.model.require(operation)
        return self.batchers[graph_role(operation, gray and self.model.has_gray_variant)]

    async def run(self, operation: str, call: Call, job: Job[Any, R], gray: bool = False) -> R:
        """Run one job on the graph of `operation` (or its gray variant's), by the request's deadline."""
        return await self.batcher_for(operation, gray).execute(job, call.deadline)

    def ids(self) -> dict[str, Any]:
        """The model's name and version, as answers carry them."""
        return {"model": self.model.manifest.name, "version": self.model.manifest.version}

    # ------------------------------------------------------------------ the operations

    async def encode(self, call: Call) -> Answer:
        """The model's latent or embedding of the request (kinds that offer encode override this)."""
        raise self._not_offered("encode")

    async def decode(self, call: Call) -> Answer:
        """What a latent or embedding decodes to (kinds that offer decode override this)."""
        raise self._not_offered("decode")

    async def reconstruct(self, call: Call) -> Answer:
        """The request passed through the whole model (kinds that offer reconstruct override this)."""
        raise self._not_offered("reconstruct")

    def _not_offered(self, operation: str) -> Exception:
        self.model.require(operation)  # raises 409 for models whose manifest leaves it out
        return RuntimeError(f"{type(self).__name__} has no {operation} though the manifest offers it")


def object_fields(payload: Any, *names: str) -> list[Any]:
    """The named fields of a JSON object body; 422 naming them when it is not such an object."""
    if not isinstance(payload, dict) or any(n not in payload for n in names):
        keys = ", ".join(f'"{n}": [...]' for n in names)
        raise InvalidInputError(f"the body must be an object {{{keys}}}")
    return [payload[n] for n in names]


@asynccontextmanager
async def cancelled_on_disconnect(request: Request) -> AsyncIterator[None]:
    """Cancel the request's work when its client disconnects; the answer is then 499 `client_gone`.

    The body has been read, so the next ASGI message is the disconnect (uvicorn sends it when the
    connection closes). The batcher sees the cancellation and drops the request's work (see
    `MicroBatcher.execute`).
    """
    task = asyncio.current_task()
    assert task is not None
    gone = False

    async def watch() -> None:
        nonlocal gone
        while (await request.receive())["type"] != "http.disconnect":
            pass
        gone = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        yield
    except asyncio.CancelledError:
        if not gone:
            raise
        task.uncancel()
        raise ClientGoneError("the client disconnected before the answer was ready") from None
    finally:
        watcher.cancel()
        if gone and task.cancelling():  # disconnected just as the work finished: nothing to cancel
            task.uncancel()
