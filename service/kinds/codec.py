"""Compression models (task `compress`): image -> bitstream (encode), bitstream -> image (decode).

`reconstruct` on a compression model is both in turn, through the real bitstream, so the answer shows
what the stream holds and its headers report the real bits per pixel (header included) and the PSNR.
Stages: `prepare_codec_image` (as an image model's, keeping the original pixels for scoring),
`finish_stream` (entropy-code the rounded latent, wrap it with the header, sign it when the service has
`AE_STREAM_KEY`), `prepare_stream` (check the stream's signature as `AE_STREAM_KEY` and
`AE_STREAM_ACCEPT_UNSIGNED` require, its header against the model and the size limits, then decode the
latent). `read_origin` (service.codecs.bitstream) reads just the model name and version off a stream, so
that `POST /v1/decode` and a codec's decode route can pick the version that wrote it first, and the
channels it codes, which pick the graphs: a codec with a gray variant codes a gray image as one channel
(its gray graphs and tables, a 1-channel stream) and decodes such a stream to a gray image.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np
from starlette.concurrency import run_in_threadpool

from service.api.bodies import image_bytes, require_media
from service.codecs.bitstream import MIME as STREAM
from service.codecs.bitstream import Stream, StreamAuthentication, read_origin, read_stream
from service.codecs.hyperprior import QUALITY_STEPS
from service.codecs.image import check_answer_size, choose_image_format, encode_image, image_is_gray
from service.codecs.rate_control import DEFAULT_RATE, RateRequest, rate_request
from service.config import Settings
from service.engine import release_freed_memory
from service.errors import DecodingError
from service.kinds.base import Call, ModelHandler
from service.kinds.codec_tiles import (
    decode_tiles,
    encode_tiles,
    payload_latent,
    rate_controlled_stream,
    refuse_fixed_rate,
    stream_header,
)
from service.kinds.image import (
    Frame,
    Size,
    answer_pixels,
    answerable,
    decode_for_graph,
    finish_image,
    image_header,
    image_spec,
    prepare_image,
)
from service.limits import SizeLimits, check_run_size
from service.model import LoadedModel
from service.stages import Answer, Feeds, Job, Prepared, run_direct

T = TypeVar("T")


@dataclass(frozen=True)
class Original:
    """An image's frame and its pixels as coded, (C, H, W) in [0, 1]: what reconstruct scores the decoded image against.

    C is 1 when the codec's gray graphs coded it; a gray image coded on RGB graphs has three equal channels.
    """

    frame: Frame
    pixels: np.ndarray

    @property
    def coded_channels(self) -> int:
        """The channels the stream codes: 1 (gray variant) or 3."""
        return self.pixels.shape[0]


@dataclass(frozen=True)
class EncodedImage:
    """A stream and the image it was made from."""

    stream: bytes
    original: Original
    quality: int | None = None  # a variable-rate codec's u16 quality; None for the fixed-rate ladder

    @property
    def bits_per_pixel(self) -> float:
        """Bits of the whole stream (header and checksum included) per original pixel."""
        frame = self.original.frame
        return len(self.stream) * 8 / (frame.height * frame.width)

    def headers(self) -> dict[str, str]:
        """The stream's measured rate and the original size, as answers carry them."""
        frame = self.original.frame
        headers = {
            "X-Bits-Per-Pixel": f"{self.bits_per_pixel:.6f}",
            "X-Image-Height": str(frame.height),
            "X-Image-Width": str(frame.width),
        }
        if self.quality is not None:
            headers["X-Quality"] = f"{self.quality / QUALITY_STEPS:.6f}"
        return headers


def prepare_codec_image(
    model: LoadedModel, data: bytes, settings: Settings, gray_graph: bool = False
) -> Prepared[Original]:
    """As `prepare_image`, keeping the original pixels (a view) for scoring the reconstruction."""
    prepared = prepare_image(model, data, settings, gray_graph)
    frame = prepared.context
    original = prepared.feeds["image"][0, :, : frame.height, : frame.width]
    return Prepared(prepared.key, prepared.feeds, Original(frame, original), prepared.pixels)


def stream_authentication(settings: Settings) -> StreamAuthentication:
    """How this service signs the streams it writes and which streams it decodes."""
    return StreamAuthentication(settings.stream_key_bytes(), settings.stream_accept_unsigned)


def finish_stream(
    outputs: Feeds,
    original: Original,
    model: LoadedModel,
    auth: StreamAuthentication,
    rate: RateRequest = DEFAULT_RATE,
    deadline: float | None = None,
) -> EncodedImage:
    """Entropy-code the latent at the rate asked and wrap it with the header (one untiled tile).

    Signed when `auth` has a key.

    `auth` travels in the job's partials, not the raw key: its repr hides the key wherever a job is shown.
    """
    header, coder = stream_header(model, original.frame, original.coded_channels)
    stream, quality = rate_controlled_stream(model, header, coder, [outputs["latent"][0]], auth, rate, deadline)
    return EncodedImage(stream, original, quality)


def read_checked_stream(model: LoadedModel, data: bytes, settings: Settings) -> Stream:
    """A stream of this model, parsed and checked (signature, model, channels, tables, size); 400 / 413 else.

    Everything is checked from the header, before a symbol is decoded: a payload may be tiny whatever
    size it declares.
    """
    stream = read_stream(data, stream_authentication(settings))
    header, m = stream.header, model.manifest
    if (header.name, header.version) != (m.name, m.version):
        raise DecodingError(
            f"stream was made by {header.name}/{header.version}, not {m.name}/{m.version} "
            "(POST /v1/decode decodes a stream with the version that made it)"
        )
    spec = image_spec(model)
    gray = header.channels == 1 and spec.channels == 3
    if header.channels != spec.channels and not (gray and model.has_gray_variant):
        raise DecodingError(
            f"stream codes a {_channels(header.channels)} image, and {m.name}/{m.version} "
            f"codes {_channels(spec.channels)} images"
        )
    if header.table_hash != model.tables_for(header.channels == 1).hash:
        raise DecodingError("stream was coded with other probability tables than this model's")
    check_run_size(
        "stream declaring", header.height, header.width, spec.stride_multiple, SizeLimits.from_settings(settings)
    )
    return stream


def prepare_stream(model: LoadedModel, data: bytes, settings: Settings) -> Prepared[Frame]:
    """Check that an untiled stream belongs to this model and decode its latent; the key is the latent shape."""
    stream = read_checked_stream(model, data, settings)
    header = stream.header
    if header.tile_side:
        raise DecodingError("a tiled stream decodes tile by tile (service.kinds.codec_tiles), not in one run")
    latent, pixels = payload_latent(model, header, stream.tiles[0], header.height, header.width)
    frame = Frame(header.height, header.width, gray=header.channels == 1)
    return Prepared(latent.shape, {"latent": latent[None]}, frame, pixels)


def _channels(count: int) -> str:
    """A channel count as a reader says it: "3-channel (RGB)"."""
    return f"{count}-channel ({'gray' if count == 1 else 'RGB'})"


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two images in the same 0..peak range (the evaluation commands use it too).

    Summed a slice of rows at a time in float64: a 3000 x 2000 answer scored whole would need several
    float64 copies of itself (~150 MB each) at once.
    """
    total, rows = 0.0, max(1, (1 << 20) // max(1, reference[..., 0, :].size))
    for start in range(0, reference.shape[-2], rows):
        part = reference[..., start : start + rows, :].astype(np.float64) - test[..., start : start + rows, :]
        total += float(np.square(part).sum())
    mse = total / reference.size
    return float("inf") if mse == 0 else 10.0 * float(np.log10(peak**2 / mse))


def _as_8_bit(pixels: np.ndarray) -> np.ndarray:
    """Pixels in [0, 1] as the 8-bit values an answer holds."""
    return (np.clip(pixels, 0, 1) * 255.0 + 0.5).astype(np.uint8)


def finish_scored_image(outputs: Feeds, original: Original, mime: str, png_level: int) -> tuple[bytes, float]:
    """The decoded image, encoded for the answer (gray for a gray original), and its PSNR against the original."""
    pixels = answer_pixels(outputs, original.frame)
    # A gray image coded on RGB graphs was fed as three equal channels: score the answer against one.
    reference = _as_8_bit(original.pixels[: pixels.shape[0]])
    return encode_image(pixels, mime, png_level), psnr(reference, _as_8_bit(pixels))


def codec_encode(model: LoadedModel, data: bytes, settings: Settings, rate: RateRequest = DEFAULT_RATE) -> EncodedImage:
    """An encoded image's stream in one run, untiled whatever its size (evaluation code and tests)."""
    auth = stream_authentication(settings)
    gray = model.has_gray_variant and image_is_gray(data)
    prepare = partial(prepare_codec_image, model, data, settings, gray)
    finish = partial(finish_stream, model=model, auth=auth, rate=rate)
    return run_direct(model.engine_for("encode", gray), Job(prepare, finish))


def codec_decode(model: LoadedModel, stream: bytes, settings: Settings) -> np.ndarray:
    """The (C, H, W) pixels in [0, 1] an untiled stream decodes to, unquantized (one run, no batching)."""
    gray = read_origin(stream).channels == 1
    return run_direct(
        model.engine_for("decode", gray), Job(partial(prepare_stream, model, stream, settings), answer_pixels)
    )


class CodecHandler(ModelHandler):
    """encode: image -> stream; decode: stream -> image; reconstruct: image -> stream -> image, scored."""

    @classmethod
    def serves(cls, model: LoadedModel) -> bool:
        """Models with entropy tables: their latents become bitstreams."""
        return model.tables is not None

    def decodes_streams(self) -> bool:
        """A codec's decode takes its streams (`POST /v1/decode` and the decode route follow their headers)."""
        return True

    def admitting_operation(self, operation: str) -> str:
        """Reconstruct starts on the encoder: admission there, then the decoder's batcher runs the rest."""
        return "encode" if operation == "reconstruct" else operation

    async def encoded(
        self,
        data: bytes,
        deadline: float,
        take_share: Callable[[Size], None] | None = None,
        rate: RateRequest = DEFAULT_RATE,
    ) -> EncodedImage:
        """The stream of an encoded image at the `rate` asked, tiled when a side is over AE_CODEC_TILE_SIDE.

        A gray image runs on the gray graphs when the model has them. `take_share` takes the image's
        share of a request's pixel budget (OIP batches), from the header, before anything is decoded.
        """
        settings = self.settings
        gray_image, size = await image_header(data, settings)
        if take_share is not None:
            take_share(size)
        gray = gray_image and self.model.has_gray_variant
        auth = stream_authentication(settings)
        encoder = self.batcher_for("encode", gray)
        side = settings.codec_tile_side
        if side and max(size) > side:
            frame, pixels = await run_in_threadpool(decode_for_graph, self.model, data, settings, gray)
            stream, quality = await encode_tiles(self.model, encoder, frame, pixels, auth, side, deadline, rate)
            # Each tile's run is too small to trim the heap (engine.TRIM_AFTER_BYTES); the request's
            # image-sized buffers were not: give them back, as a large single run does.
            await run_in_threadpool(release_freed_memory)
            return EncodedImage(stream, Original(frame, pixels), quality)
        job = Job(
            partial(prepare_codec_image, self.model, data, settings, gray),
            partial(finish_stream, model=self.model, auth=auth, rate=rate, deadline=deadline),
        )
        return await encoder.execute(job, deadline)

    async def decoded(self, stream: bytes, deadline: float, mime: str, finish: Callable[[Feeds, Frame], T]) -> T:
        """`finish` of the image a stream of this model holds (tiled or not); a foreign or damaged stream is 400.

        The answer's size is checked against the format `mime` (406) before the stream is decoded.
        """
        origin = read_origin(stream)  # the fixed front of the header: constant work
        decoder = self.batcher_for("decode", origin.channels == 1)
        if not origin.tile_side:
            prepare = answerable(partial(prepare_stream, self.model, stream, self.settings), mime)
            return await decoder.execute(Job(prepare, finish), deadline)
        checked = await run_in_threadpool(read_checked_stream, self.model, stream, self.settings)
        check_answer_size(mime, checked.header.height, checked.header.width)
        outputs, frame = await decode_tiles(self.model, decoder, checked, deadline)
        answer = await run_in_threadpool(finish, outputs, frame)
        del outputs  # the assembled image, before the heap is trimmed (as after encoding tiles)
        await run_in_threadpool(release_freed_memory)
        return answer

    def _rate(self, call: Call) -> RateRequest:
        """The rate a request asks; 422 before any pixel is decoded if malformed or asked of a fixed-rate codec."""
        rate = rate_request(call.request.query_params, call.request.headers)
        refuse_fixed_rate(self.model, rate)
        return rate

    async def encode(self, call: Call) -> Answer:
        """The bitstream of an image at the rate asked, with its rate in X-Bits-Per-Pixel (and X-Quality)."""
        data = await image_bytes(call.request, call.body)
        encoded = await self.encoded(data, call.deadline, rate=self._rate(call))
        return Answer(encoded.stream, STREAM, encoded.headers())

    async def decode(self, call: Call) -> Answer:
        """The image a bitstream of this model holds; a foreign or damaged stream is 400."""
        mime = choose_image_format(call.request.headers.get("accept"))
        require_media(call.request, STREAM)
        level = self.settings.png_compress_level

        def finish(outputs: Feeds, frame: Frame) -> Answer:
            return Answer(finish_image(outputs, frame, mime, level), mime)

        return await self.decoded(call.body, call.deadline, mime, finish)

    async def reconstruct(self, call: Call) -> Answer:
        """Encode then decode through the real stream; X-Bits-Per-Pixel and X-PSNR report it."""
        mime = choose_image_format(call.request.headers.get("accept"))
        data = await image_bytes(call.request, call.body)
        encoded = await self.encoded(data, call.deadline, rate=self._rate(call))
        level = self.settings.png_compress_level

        def finish(outputs: Feeds, frame: Frame) -> Answer:
            image, quality = finish_scored_image(outputs, encoded.original, mime, level)
            return Answer(image, mime, {**encoded.headers(), "X-PSNR": f"{quality:.3f}"})

        return await self.decoded(encoded.stream, call.deadline, mime, finish)
