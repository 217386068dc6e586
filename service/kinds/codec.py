"""Compression models (task `compress`): image -> bitstream (encode), bitstream -> image (decode).

`reconstruct` on a compression model is both in turn, through the real bitstream, so the answer shows
what the stream holds and its headers report the real bits per pixel (header included) and the PSNR.
Stages: `prepare_codec_image` (as an image model's, keeping the original pixels for scoring),
`finish_stream` (entropy-code the rounded latent, wrap it with the header, sign it when the service has
`AE_STREAM_KEY`), `prepare_stream` (check the stream's signature as `AE_STREAM_KEY` and
`AE_STREAM_ACCEPT_UNSIGNED` require, its header against the model and the size limits, then decode the
latent). `read_origin` (service.codecs.bitstream) reads just the model name and version off a stream, so
that `POST /v1/decode` and a codec's decode route can pick the version that wrote it first.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np

from service.api.bodies import image_bytes, require_media
from service.codecs.bitstream import MIME as STREAM
from service.codecs.bitstream import Header, StreamAuthentication, pack, unpack
from service.codecs.image import choose_image_format, encode_image
from service.config import Settings
from service.errors import DecodingError
from service.kinds.base import Call, ModelHandler
from service.kinds.image import Size, answerable, finish_image, image_spec, prepare_image
from service.limits import SizeLimits, check_run_size
from service.model import LoadedModel
from service.stages import Answer, Feeds, Job, Prepared, run_direct


@dataclass(frozen=True)
class Original:
    """An image's size and its pixels, (C, H, W) in [0, 1]: what reconstruct scores the decoded image against."""

    size: Size
    pixels: np.ndarray


@dataclass(frozen=True)
class EncodedImage:
    """A stream and the image it was made from."""

    stream: bytes
    original: Original

    @property
    def bits_per_pixel(self) -> float:
        """Bits of the whole stream (header and checksum included) per original pixel."""
        height, width = self.original.size
        return len(self.stream) * 8 / (height * width)

    def headers(self) -> dict[str, str]:
        """The stream's measured rate and the original size, as answers carry them."""
        height, width = self.original.size
        return {
            "X-Bits-Per-Pixel": f"{self.bits_per_pixel:.6f}",
            "X-Image-Height": str(height),
            "X-Image-Width": str(width),
        }


def prepare_codec_image(model: LoadedModel, data: bytes, settings: Settings) -> Prepared[Original]:
    """As `prepare_image`, keeping the original pixels (a view) for scoring the reconstruction."""
    prepared = prepare_image(model, data, settings)
    height, width = prepared.context
    original = prepared.feeds["image"][0, :, :height, :width]
    return Prepared(prepared.key, prepared.feeds, Original((height, width), original), prepared.pixels)


def stream_authentication(settings: Settings) -> StreamAuthentication:
    """How this service signs the streams it writes and which streams it decodes."""
    return StreamAuthentication(settings.stream_key_bytes(), settings.stream_accept_unsigned)


def finish_stream(outputs: Feeds, original: Original, model: LoadedModel, auth: StreamAuthentication) -> EncodedImage:
    """Entropy-code the rounded latent and wrap it with the header (one untiled tile), signed if `auth` has a key.

    `auth` travels in the job's partials, not the raw key: its repr hides the key wherever a job is shown.
    """
    assert model.tables is not None
    payload = model.tables.encode(outputs["latent"][0])
    m = model.manifest
    height, width = original.size
    header = Header(m.name, m.version, model.tables.hash, height, width, channels=image_spec(model).channels)
    return EncodedImage(pack(header, payload, auth.key), original)


def prepare_stream(model: LoadedModel, data: bytes, settings: Settings) -> Prepared[Size]:
    """Check that a stream belongs to this model and decode its latent; the key is the latent shape."""
    assert model.tables is not None
    header, payload = unpack(data, stream_authentication(settings))
    m = model.manifest
    if (header.name, header.version) != (m.name, m.version):
        raise DecodingError(
            f"stream was made by {header.name}/{header.version}, not {m.name}/{m.version} "
            "(POST /v1/decode decodes a stream with the version that made it)"
        )
    if header.table_hash != model.tables.hash:
        raise DecodingError("stream was coded with other probability tables than this model's")
    spec = image_spec(model)
    if header.channels != spec.channels:
        raise DecodingError(
            f"stream codes a {_channels(header.channels)} image, and {m.name}/{m.version} "
            f"codes {_channels(spec.channels)} images"
        )
    # From the header alone, before a symbol is decoded: the payload may be tiny whatever size it declares.
    f = spec.stride_multiple
    check_run_size("stream declaring", header.height, header.width, f, SizeLimits.from_settings(settings))
    rows, columns = -(-header.height // f), -(-header.width // f)
    latent = model.tables.decode(payload, rows, columns)
    return Prepared(latent.shape, {"latent": latent[None]}, (header.height, header.width), rows * columns * f * f)


def _channels(count: int) -> str:
    """A channel count as a reader says it: "3-channel (RGB)"."""
    return f"{count}-channel ({'gray' if count == 1 else 'RGB'})"


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two images in the same 0..peak range (the evaluation commands use it too)."""
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(peak**2 / mse))


def finish_scored_image(
    outputs: Feeds, size: Size, original: Original, mime: str, png_level: int
) -> tuple[bytes, float]:
    """The decoded image, encoded for the answer, and its PSNR against the original."""
    height, width = size
    pixels = outputs["reconstruction"][0, :, :height, :width]
    quantized = np.rint(np.clip(pixels, 0, 1) * 255.0)
    reference = np.rint(np.clip(original.pixels, 0, 1) * 255.0)
    return encode_image(pixels, mime, png_level), psnr(reference, quantized)


def codec_encode(model: LoadedModel, data: bytes, settings: Settings) -> EncodedImage:
    """An encoded image's stream (one request, no batching)."""
    auth = stream_authentication(settings)
    job = Job(partial(prepare_codec_image, model, data, settings), partial(finish_stream, model=model, auth=auth))
    return run_direct(model.engine_for("encode"), job)


def codec_decode(model: LoadedModel, stream: bytes, settings: Settings) -> np.ndarray:
    """The (C, H, W) pixels in [0, 1] a stream decodes to, unquantized (one request, no batching)."""

    def crop(outputs: Feeds, size: Size) -> np.ndarray:
        return outputs["reconstruction"][0, :, : size[0], : size[1]]

    return run_direct(model.engine_for("decode"), Job(partial(prepare_stream, model, stream, settings), crop))


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

    async def _encoded(self, call: Call) -> EncodedImage:
        data = await image_bytes(call.request, call.body)
        job = Job(
            partial(prepare_codec_image, self.model, data, self.settings),
            partial(finish_stream, model=self.model, auth=stream_authentication(self.settings)),
        )
        return await self.run("encode", call, job)

    async def encode(self, call: Call) -> Answer:
        """The bitstream of an image, with its rate in X-Bits-Per-Pixel."""
        encoded = await self._encoded(call)
        return Answer(encoded.stream, STREAM, encoded.headers())

    async def decode(self, call: Call) -> Answer:
        """The image a bitstream of this model holds; a foreign or damaged stream is 400."""
        mime = choose_image_format(call.request.headers.get("accept"))
        require_media(call.request, STREAM)
        level = self.settings.png_compress_level

        def finish(outputs: Feeds, size: Size) -> Answer:
            return Answer(finish_image(outputs, size, mime, level), mime)

        return await self.run(
            "decode", call, Job(partial(prepare_stream, self.model, call.body, self.settings), finish)
        )

    async def reconstruct(self, call: Call) -> Answer:
        """Encode then decode through the real stream; X-Bits-Per-Pixel and X-PSNR report it."""
        mime = choose_image_format(call.request.headers.get("accept"))
        encoded = await self._encoded(call)
        level = self.settings.png_compress_level

        def finish(outputs: Feeds, size: Size) -> Answer:
            image, quality = finish_scored_image(outputs, size, encoded.original, mime, level)
            return Answer(image, mime, {**encoded.headers(), "X-PSNR": f"{quality:.3f}"})

        prepare = answerable(partial(prepare_stream, self.model, encoded.stream, self.settings), mime)
        return await self.run("decode", call, Job(prepare, finish))
