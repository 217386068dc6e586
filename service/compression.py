"""Stages of the compression models: image -> bitstream (encode), bitstream -> image (decode).

`reconstruct` on a compression model is both in turn, so the answer shows what the stream holds,
and its headers report the real bits per pixel (header included) and the PSNR.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from service.codecs.bitstream import Header, pack, unpack
from service.codecs.image import encode_image
from service.config import Settings
from service.errors import DecodingError
from service.limits import SizeLimits, check_run_size
from service.pipelines import Feeds, Prepared, image_spec, prepare_image
from service.repository import LoadedModel


@dataclass
class EncodedImage:
    """A stream and what reconstruct needs to score it."""

    stream: bytes
    height: int
    width: int
    original: np.ndarray  # (C, H, W) in [0, 1]

    @property
    def bits_per_pixel(self) -> float:
        """Bits of the whole stream (header and checksum included) per original pixel."""
        return len(self.stream) * 8 / (self.height * self.width)


def prepare_codec_image(model: LoadedModel, data: bytes, settings: Settings) -> Prepared:
    """As `prepare_image`, keeping the original pixels (a view) for scoring the reconstruction."""
    prepared = prepare_image(model, data, settings)
    height, width = prepared.context
    original = prepared.feeds["image"][0, :, :height, :width]
    return Prepared(prepared.key, prepared.feeds, ((height, width), original))


def finish_stream(outputs: Feeds, context: tuple[tuple[int, int], np.ndarray], model: LoadedModel) -> EncodedImage:
    """Entropy-code the rounded latent and wrap it with the header."""
    assert model.tables is not None
    size, original = context
    payload = model.tables.encode(outputs["latent"][0])
    m = model.manifest
    header = Header(m.name, m.version, model.tables.hash, size[0], size[1])
    return EncodedImage(pack(header, payload), size[0], size[1], original)


def prepare_stream(model: LoadedModel, data: bytes, settings: Settings) -> Prepared:
    """Check that a stream belongs to this model and decode its latent; the key is the latent shape."""
    assert model.tables is not None
    header, payload = unpack(data)
    m = model.manifest
    if (header.name, header.version) != (m.name, m.version):
        raise DecodingError(f"stream was made by {header.name}/{header.version}, not {m.name}/{m.version}")
    if header.table_hash != model.tables.hash:
        raise DecodingError("stream was coded with other probability tables than this model's")
    # From the header alone, before a symbol is decoded: the payload may be tiny whatever size it declares.
    f = image_spec(model).stride_multiple
    check_run_size("stream declaring", header.height, header.width, f, SizeLimits.from_settings(settings))
    latent = model.tables.decode(payload, -(-header.height // f), -(-header.width // f))
    return Prepared(latent.shape, {"latent": latent[None]}, (header.height, header.width))


def psnr(reference: np.ndarray, test: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB between two images in the same 0..peak range (the evaluation commands use it too)."""
    mse = float(np.mean((reference.astype(np.float64) - test.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * float(np.log10(peak**2 / mse))


def finish_scored_image(
    outputs: Feeds, size: tuple[int, int], original: np.ndarray, mime: str, settings: Settings
) -> tuple[bytes, float]:
    """The decoded image, encoded for the answer, and its PSNR against the original."""
    height, width = size
    pixels = outputs["reconstruction"][0, :, :height, :width]
    quantized = np.rint(np.clip(pixels, 0, 1) * 255.0)
    reference = np.rint(np.clip(original, 0, 1) * 255.0)
    return encode_image(pixels, mime, settings.png_compress_level), psnr(reference, quantized)
