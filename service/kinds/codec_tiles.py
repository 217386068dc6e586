"""Tiled codec streams: an image with a side above AE_CODEC_TILE_SIDE is coded as independent tiles.

Why: a graph's peak memory grows with the pixels one run covers (up to ~1000 bytes per pixel for the
committed codecs), so a 3000 x 2000 photo in one run would need gigabytes. Cut into S x S tiles
(service.codecs.tiles), each tile is its own job on the graph's batcher: a run's memory is bounded by the
tile, tiles of one image run concurrently (batched together when small enough, else one after another
on the graph), and each tile's latent is its own payload in the stream's tile table. Tiles share no
context, so their seams cost some PSNR and rate: measured in docs/benchmarks.md ("Codec tiles").

Encoding decodes the image once (a worker thread), then each tile crops and pads its part; decoding
reads and checks the whole stream once, then each tile decodes its own payload, and a worker thread
assembles the image. The image-sized buffers (the decoded image, the assembled answer) are what stays
proportional to the image. At most `TILES_IN_FLIGHT` tiles of one request are prepared, queued or run at
a time: a stream of a thousand small tiles must not fill the graph's queue and the thread pool ahead of
other requests. A run covers one tile only for streams written in tiles: an untiled stream (written
before tiles, or with AE_CODEC_TILE_SIDE=0) still decodes in one run, within the pixel limit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from dataclasses import replace
from functools import partial
from typing import Any, TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

from service.batching import MicroBatcher
from service.codecs.bitstream import Header, Stream, StreamAuthentication, pack_tiles
from service.codecs.entropy import LatentCoder
from service.codecs.image import pad_to_multiple
from service.codecs.rate_control import RateRequest, stream_within
from service.codecs.tiles import Box, tile_boxes
from service.errors import InvalidInputError, RequestTimeoutError
from service.kinds.image import Frame, image_spec
from service.model import LoadedModel
from service.stages import Feeds, Job, Prepared, run_all

T = TypeVar("T")
# Tiles of one request in flight at once: enough to keep a graph busy (one tile preparing while another
# runs) and to batch small tiles, few enough that one request cannot crowd out the others.
TILES_IN_FLIGHT = 4


async def _each_tile(batcher: MicroBatcher, jobs: list[Job[Any, T]], deadline: float) -> list[T]:
    """The jobs' results in order, at most TILES_IN_FLIGHT of them on the batcher at a time."""
    gate = asyncio.Semaphore(TILES_IN_FLIGHT)

    async def gated(job: Job[Any, T]) -> T:
        async with gate:
            return await batcher.execute(job, deadline)

    coroutines: list[Coroutine[Any, Any, T]] = [gated(job) for job in jobs]
    return await run_all(coroutines)


def stream_header(model: LoadedModel, frame: Frame, channels: int, tile_side: int = 0) -> tuple[Header, LatentCoder]:
    """The header of a stream this model writes of an image, and the coder its payloads are coded with."""
    tables = model.tables_for(gray=channels == 1)
    m = model.manifest
    return Header(m.name, m.version, tables.hash, frame.height, frame.width, channels, tile_side), tables


def refuse_fixed_rate(model: LoadedModel, rate: RateRequest) -> None:
    """422 when a rate is asked of a fixed-rate codec (the ladder): each of its models has one rate."""
    if rate.asked and not model.tables_for(gray=False).variable_rate:
        m = model.manifest
        raise InvalidInputError(
            f"{m.name}/{m.version} codes at one fixed rate: quality, target_bpp and max_bytes need a "
            "variable-rate codec (image-codec)"
        )


def rate_controlled_stream(
    model: LoadedModel,
    header: Header,
    coder: LatentCoder,
    latents: list[np.ndarray],
    auth: StreamAuthentication,
    rate: RateRequest,
    deadline: float | None = None,
) -> tuple[bytes, int | None]:
    """(stream, u16 quality or None) of the tiles' latents, at the rate asked (service.codecs.rate_control).

    A fixed-rate codec (the ladder) refuses any rate request with 422: each of its models has one rate.
    Entropy coding, repeated when bisecting: call it from a worker thread.
    """

    def write(quality: int | None) -> bytes:
        payloads = [coder.encode(latent, quality) for latent in latents]
        return pack_tiles(replace(header, quality=quality), payloads, auth.key)

    if not coder.variable_rate:
        refuse_fixed_rate(model, rate)
        return write(None), None
    budget = rate.budget(header.height, header.width)
    if budget is None:
        quality = rate.fixed_quality()
        return write(quality), quality
    return stream_within(write, budget, deadline)


def payload_latent(
    model: LoadedModel, header: Header, payload: bytes, height: int, width: int
) -> tuple[np.ndarray, int]:
    """(latent, padded pixels) of one payload of a checked stream, coding `height` x `width` pixels."""
    f = image_spec(model).stride_multiple
    rows, columns = -(-height // f), -(-width // f)
    latent = model.tables_for(header.channels == 1).decode(payload, rows, columns, header.escaped, header.quality)
    return latent, rows * columns * f * f


def _tile_image(pixels: np.ndarray, box: Box, stride: int) -> Prepared[Box]:
    crop = pixels[:, box.top : box.top + box.height, box.left : box.left + box.width]
    batch = pad_to_multiple(np.ascontiguousarray(crop)[None], stride)
    height, width = batch.shape[-2:]
    return Prepared((height, width), {"image": batch}, box, height * width)


def _latent(outputs: Feeds, box: Box) -> np.ndarray:
    return outputs["latent"][0]


async def encode_tiles(
    model: LoadedModel,
    encoder: MicroBatcher,
    frame: Frame,
    pixels: np.ndarray,
    auth: StreamAuthentication,
    side: int,
    deadline: float,
    rate: RateRequest,
) -> tuple[bytes, int | None]:
    """(tiled stream, u16 quality or None) of a decoded image (`decode_for_graph`), each tile a job on `encoder`."""
    stride = image_spec(model).stride_multiple
    boxes = tile_boxes(frame.height, frame.width, side)
    jobs = [Job(partial(_tile_image, pixels, box, stride), _latent) for box in boxes]
    latents = await _each_tile(encoder, jobs, deadline)
    header, coder = stream_header(model, frame, pixels.shape[0], side)
    # Entropy coding (repeated when searching a size target's quality): a worker thread, which also stops
    # its search at the deadline; the request is answered 504 then.
    try:
        async with asyncio.timeout_at(deadline):
            return await run_in_threadpool(rate_controlled_stream, model, header, coder, latents, auth, rate, deadline)
    except TimeoutError:
        raise RequestTimeoutError("the request ran past its deadline while coding its tiles") from None


def _tile_latent(model: LoadedModel, stream: Stream, index: int, box: Box) -> Prepared[Box]:
    latent, pixels = payload_latent(model, stream.header, stream.tiles[index], box.height, box.width)
    return Prepared(latent.shape, {"latent": latent[None]}, box, pixels)


def _tile_pixels(outputs: Feeds, box: Box) -> np.ndarray:
    return outputs["reconstruction"][0, :, : box.height, : box.width]


async def decode_tiles(
    model: LoadedModel, decoder: MicroBatcher, stream: Stream, deadline: float
) -> tuple[Feeds, Frame]:
    """A checked tiled stream's image, each tile a job on `decoder`: (outputs as one run's, frame)."""
    header = stream.header
    boxes = tile_boxes(header.height, header.width, header.tile_side)
    jobs = [Job(partial(_tile_latent, model, stream, index, box), _tile_pixels) for index, box in enumerate(boxes)]
    tiles = await _each_tile(decoder, jobs, deadline)

    def assemble() -> np.ndarray:  # an image-sized buffer: a worker thread, not the event loop
        image = np.empty((tiles[0].shape[0], header.height, header.width), np.float32)
        for box, tile in zip(boxes, tiles, strict=True):
            image[:, box.top : box.top + box.height, box.left : box.left + box.width] = tile
        return image

    image = await run_in_threadpool(assemble)
    return {"reconstruction": image[None]}, Frame(header.height, header.width, gray=header.channels == 1)
