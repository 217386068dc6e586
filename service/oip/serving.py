"""One OIP inference from parsed bytes to output tensors, shared by the REST routes and the gRPC servicer.

Admission comes first (503 when the graph's queue is full, before any parsing), then the request is
parsed (in a worker thread when its body is large: JSON tensors cost time proportional to their size),
then run by its deadline. The caller owns cancellation: the REST route cancels on a client disconnect,
gRPC cancels the handler's task when its client cancels.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from service.config import Settings
from service.oip.inference import infer
from service.oip.models import OipModel
from service.oip.rest import InferRequest
from service.oip.tensors import Tensor


async def run_inference(
    oip: OipModel, settings: Settings, parse: Callable[[], InferRequest], size: int
) -> tuple[InferRequest, list[Tensor]]:
    """Admit, parse (`size`: the body's bytes), infer; the parsed request and its outputs."""
    handler = oip.model.handler
    admitting = handler.batcher_for(handler.admitting_operation(oip.operation))
    async with admitting.admit():
        deadline = asyncio.get_running_loop().time() + settings.request_timeout_s
        small = size <= settings.loop_inline_max_bytes
        request = parse() if small else await asyncio.to_thread(parse)
        return request, await infer(oip, request, settings, deadline, small)
