"""OIP inference on image models and codecs: a batch of encoded images (or streams, or latents) per request.

Each row is its own job on the graph's batcher (rows of one padded size share a run, with each other and
with `/v1` requests). The request's rows together must fit the pixel limit of one image
(`AE_MAX_IMAGE_PIXELS`, on padded sizes read from headers before decoding; `PixelBudget`): a request of
many images costs what one image of the limit may cost, not that many times over. Gray images and
gray streams run on a model's gray graphs as on `/v1` (service.kinds.image, service.kinds.codec).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from functools import partial

import numpy as np

from service.codecs.bitstream import read_stream
from service.codecs.image import image_size
from service.codecs.rate_control import PARAMETERS as RATE_PARAMETERS
from service.codecs.rate_control import RateRequest, rate_request
from service.config import Settings
from service.errors import InvalidInputError, PayloadTooLargeError
from service.kinds.codec import (
    CodecHandler,
    EncodedImage,
    finish_scored_image,
    stream_authentication,
)
from service.kinds.image import (
    Frame,
    Size,
    answerable,
    check_latent_shape,
    finish_image,
    image_spec,
    prepare_image,
    prepare_latent,
    runs_gray,
)
from service.limits import padded
from service.oip.checks import check_batch, check_parameters, checked_inputs
from service.oip.models import OipModel
from service.oip.rest import InferRequest
from service.oip.tensors import BYTES, Tensor
from service.stages import C, Feeds, Job, Prepared, run_all

PNG = "image/png"


class PixelBudget:
    """The padded pixels one request's images may run on together: one image's limit (AE_MAX_IMAGE_PIXELS).

    Each row's prepare stage takes its share, read from the image's header before it is decoded, so no
    row decodes once the request is over; rows prepare in worker threads, hence the lock.
    """

    def __init__(self, oip: OipModel, settings: Settings, rows: int) -> None:
        self.oip = oip
        self.rows = rows
        self.limit = self.left = settings.max_image_pixels
        self.multiple = image_spec(oip.model).stride_multiple
        self._lock = threading.Lock()

    def take(self, size: Size) -> None:
        """Take one row's padded pixels; 413 when the request's rows together would exceed the limit."""
        pixels = padded(size[0], self.multiple) * padded(size[1], self.multiple)
        with self._lock:
            if pixels > self.left:
                raise PayloadTooLargeError(
                    f"{self.oip.name}: the request's images run on more than {self.limit} padded pixels together "
                    "(the limit of one image applies to a whole request); send fewer or smaller images per request"
                )
            self.left -= pixels

    def check_all(self, sizes: list[Size]) -> None:
        """Take every row's share at once (rows whose sizes are known before any work)."""
        for size in sizes:
            self.take(size)

    def image(self, prepare: Callable[[], Prepared[C]], data: bytes) -> Callable[[], Prepared[C]]:
        """`prepare` of an encoded image, after its share is taken (its size read from the header alone).

        A lone image needs no share: its own decode checks it against the same limit, from its header.
        """
        if self.rows == 1:
            return prepare

        def budgeted() -> Prepared[C]:
            self.take(image_size(data))
            return prepare()

        return budgeted


# A row's prepare stage, and whether it runs on the model's gray graphs.
Row = tuple[Callable[[], Prepared[Frame]], bool]


async def _png_rows(oip: OipModel, operation: str, rows: Sequence[Row], settings: Settings, deadline: float) -> Tensor:
    """Each row's prepare stage through `operation`'s graph, cropped and encoded as PNG: the `image` output."""
    handler = oip.model.handler
    finish = partial(finish_image, mime=PNG, png_level=settings.png_compress_level)
    images = await run_all(
        [
            handler.batcher_for(operation, gray).execute(Job(answerable(prepare, PNG), finish), deadline)
            for prepare, gray in rows
        ]
    )
    return Tensor("image", BYTES, (len(images),), images)


async def infer_images(oip: OipModel, request: InferRequest, settings: Settings, deadline: float) -> list[Tensor]:
    """One request to an image model's or a codec's operation."""
    inputs = checked_inputs(oip, request)
    model, operation = oip.model, oip.operation
    variable_rate = model.tables is not None and model.tables.variable_rate and operation != "decode"
    check_parameters(oip, request, frozenset(RATE_PARAMETERS) if variable_rate else frozenset())
    if operation == "decode":
        if model.tables is not None:
            return await _decode_streams(oip, inputs["stream"].elements(), settings, deadline)
        return await _decode_latents(oip, inputs, settings, deadline)
    elements = inputs["image"].elements()
    check_batch(oip, len(elements), settings.max_batch_size, "images")
    budget = PixelBudget(oip, settings, len(elements))
    if model.tables is not None:
        # A variable-rate codec's rate: the request's parameters, as the /v1 query (one for every row).
        rate = rate_request({k: str(v) for k, v in request.parameters.items() if k in RATE_PARAMETERS}, {})
        return await _codec_images(oip, elements, budget, settings, deadline, rate)
    if operation == "reconstruct":
        return [await _reconstructed(oip, elements, budget, settings, deadline)]
    return await _encoded_latents(oip, elements, budget, settings, deadline)


async def _reconstructed(
    oip: OipModel, elements: list[bytes], budget: PixelBudget, settings: Settings, deadline: float
) -> Tensor:
    grays = [await runs_gray(oip.model, data, settings) for data in elements]
    rows = [
        (budget.image(partial(prepare_image, oip.model, data, settings, gray), data), gray)
        for data, gray in zip(elements, grays, strict=True)
    ]
    return await _png_rows(oip, "reconstruct", rows, settings, deadline)


async def _encoded_latents(
    oip: OipModel, elements: list[bytes], budget: PixelBudget, settings: Settings, deadline: float
) -> list[Tensor]:
    def latent_and_size(outputs: Feeds, frame: Frame) -> tuple[np.ndarray, Size]:
        return outputs["latent"][0], (frame.height, frame.width)

    batcher = oip.model.handler.batcher_for("encode")
    jobs = [
        Job(budget.image(partial(prepare_image, oip.model, data, settings), data), latent_and_size) for data in elements
    ]
    rows = await run_all([batcher.execute(job, deadline) for job in jobs])
    if len({latent.shape for latent, _ in rows}) > 1:
        raise InvalidInputError(
            f"{oip.name}: the images of one encode request must share their padded size (their latents form one "
            "tensor); send differently sized images in separate requests"
        )
    latents = np.stack([latent for latent, _ in rows]).astype(np.float32, copy=False)
    sizes = np.asarray([size for _, size in rows], np.int64)
    return [Tensor("latent", "FP32", latents.shape, latents), Tensor("image_size", "INT64", sizes.shape, sizes)]


async def _decode_latents(
    oip: OipModel, inputs: dict[str, Tensor], settings: Settings, deadline: float
) -> list[Tensor]:
    latent = inputs["latent"]
    rows = latent.shape[0]
    check_batch(oip, rows, settings.max_batch_size, "latents")
    # From the declared shape, before the data is used: each latent's image, and all of them together.
    full = check_latent_shape(oip.model, latent.shape[1:], settings)
    PixelBudget(oip, settings, rows).check_all([full] * rows)
    sizes: list[Size | None] = [None] * rows
    if "image_size" in inputs:
        declared = inputs["image_size"].array()
        if declared.shape[0] != rows:
            raise InvalidInputError(f"{oip.name}: image_size must hold one [height, width] per latent")
        sizes = [(int(h), int(w)) for h, w in declared]
    values = latent.array()
    prepares: list[Row] = [
        (partial(prepare_latent, oip.model, values[i].astype(np.float32), sizes[i], settings), False)
        for i in range(rows)
    ]
    return [await _png_rows(oip, "decode", prepares, settings, deadline)]


def _codec(oip: OipModel) -> CodecHandler:
    handler = oip.model.handler
    assert isinstance(handler, CodecHandler), "only codecs take and give streams"
    return handler


async def _decode_streams(oip: OipModel, streams: list[bytes], settings: Settings, deadline: float) -> list[Tensor]:
    check_batch(oip, len(streams), settings.max_batch_size, "streams")
    auth = stream_authentication(settings)

    def declared_sizes() -> list[Size]:  # checksums and signatures, no entropy decoding
        return [(s.header.height, s.header.width) for s in (read_stream(data, auth) for data in streams)]

    if len(streams) > 1:  # a lone stream's own decode checks its declared size against the same limit
        PixelBudget(oip, settings, len(streams)).check_all(await asyncio.to_thread(declared_sizes))
    finish = partial(finish_image, mime=PNG, png_level=settings.png_compress_level)
    images = await run_all([_codec(oip).decoded(stream, deadline, PNG, finish) for stream in streams])
    return [Tensor("image", BYTES, (len(images),), images)]


async def _codec_images(
    oip: OipModel, elements: list[bytes], budget: PixelBudget, settings: Settings, deadline: float, rate: RateRequest
) -> list[Tensor]:
    """A codec's encode (streams and their rates) or reconstruct (through the real stream, scored)."""
    handler, level = _codec(oip), settings.png_compress_level
    # A lone image needs no share: its own decode checks it against the same limit, from its header.
    take_share = budget.take if len(elements) > 1 else None

    async def round_trip(data: bytes) -> tuple[EncodedImage, bytes, float]:
        stream = await handler.encoded(data, deadline, take_share, rate)

        def finish(outputs: Feeds, frame: Frame) -> tuple[bytes, float]:
            return finish_scored_image(outputs, stream.original, PNG, level)

        image, quality = await handler.decoded(stream.stream, deadline, PNG, finish)
        return stream, image, quality

    rows = len(elements)
    if oip.operation == "encode":
        streams = await run_all([handler.encoded(data, deadline, take_share, rate) for data in elements])
        rates = np.asarray([s.bits_per_pixel for s in streams], np.float32)
        stream_tensor = Tensor("stream", BYTES, (rows,), [s.stream for s in streams])
        return [stream_tensor, Tensor("bits_per_pixel", "FP32", (rows,), rates)]
    trips = await run_all([round_trip(data) for data in elements])
    rates = np.asarray([s.bits_per_pixel for s, _, _ in trips], np.float32)
    psnrs = np.asarray([q for _, _, q in trips], np.float32)
    return [
        Tensor("image", BYTES, (rows,), [image for _, image, _ in trips]),
        Tensor("bits_per_pixel", "FP32", (rows,), rates),
        Tensor("psnr", "FP32", (rows,), psnrs),
    ]
