"""OIP inference: check the request's tensors against the model's, run the kind's stages, pick the outputs.

The stages are the `/v1` ones (`service.kinds`), run through the same per-graph micro-batchers, so an
OIP request batches with `/v1` requests of the same shape, is admitted and limited by the same rules,
and is abandoned the same way when its client leaves or its deadline passes.
"""

from __future__ import annotations

from service.config import Settings
from service.oip.checks import selected_outputs
from service.oip.image_inference import infer_images
from service.oip.models import OipModel
from service.oip.rest import InferRequest
from service.oip.sequence_inference import infer_sequences
from service.oip.tensors import Tensor


async def infer(
    oip: OipModel, request: InferRequest, settings: Settings, deadline: float, small: bool = False
) -> list[Tensor]:
    """Run one inference request; its outputs in the order the request asks for.

    `small`: the body was small, so a sequence request's whole work may run on the event loop of an idle
    process, as a small `/v1` JSON body's does (`service.batching`).
    """
    if oip.model.manifest.input.kind == "image":
        outputs = await infer_images(oip, request, settings, deadline)
    else:
        outputs = await infer_sequences(oip, request, settings, deadline, small)
    return selected_outputs(oip, request, outputs)
