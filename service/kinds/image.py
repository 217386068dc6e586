"""Image autoencoders and denoisers: image in; a latent, or an image of the same size, out.

Stages: `prepare_image` (decode, check against the limits on the padded size, pad), `prepare_latent`
(a latent checked against the model's latent spec, as its declared shape was before its data was
decoded), and the finishes that crop and encode. A denoiser is an image model with only `reconstruct`.

Gray images (single-channel modes: L, LA, 1, 16-bit, float) are answered gray. A model with a gray
variant (`Manifest.has_gray_variant`) runs them on its gray graphs; `runs_gray` reads the mode from the
image's header before the request is queued, since the variant's graphs have batchers of their own. A
model without one runs them replicated to RGB and answers the luma of its RGB answer. Latents (encode,
decode) always belong to the RGB graphs, so that any latent decodes with the one decoder.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from functools import partial
from typing import NamedTuple

import numpy as np
import orjson

from service.api.bodies import image_bytes, latent_source, parse_latent
from service.codecs.image import (
    check_answer_size,
    check_fixed_size,
    choose_image_format,
    decode_image,
    encode_image,
    image_facts,
    image_is_gray,
    luma,
    pad_to_multiple,
)
from service.codecs.latent import NPY_MIME, latent_to_json, latent_to_npy
from service.config import Settings
from service.errors import InvalidInputError
from service.kinds.base import Call, ModelHandler
from service.limits import SizeLimits, check_run_size
from service.manifest import ImageInputSpec
from service.model import LoadedModel
from service.stages import Answer, Feeds, Job, Prepared, run_direct

# A (height, width).
Size = tuple[int, int]


class Frame(NamedTuple):
    """What the finishes need of the original image: its size (to crop to) and whether it was gray."""

    height: int
    width: int
    gray: bool = False


def image_spec(model: LoadedModel) -> ImageInputSpec:
    """The image input spec, or 422 when the model takes sequences."""
    spec = model.manifest.input
    if not isinstance(spec, ImageInputSpec):
        raise InvalidInputError(f"model {model.manifest.name!r} takes sequences (JSON), not images")
    return spec


async def image_header(data: bytes, settings: Settings) -> tuple[bool, Size]:
    """(single-channel, (height, width)) of an encoded image from its header alone.

    A small body's header is read inline, a large one's in a worker thread; a body no reader takes is
    400 here, as its decoding would be.
    """
    if len(data) <= settings.loop_inline_max_bytes:
        return image_facts(data)
    return await asyncio.to_thread(image_facts, data)


async def runs_gray(model: LoadedModel, data: bytes, settings: Settings) -> bool:
    """Whether `data` runs on the model's gray graphs: a gray image, and a model with a gray variant."""
    if not model.has_gray_variant:
        return False
    gray, _ = await image_header(data, settings)
    return gray


def decode_for_graph(
    model: LoadedModel, data: bytes, settings: Settings, gray_graph: bool = False
) -> tuple[Frame, np.ndarray]:
    """The image's frame and its pixels (C, H, W) as the graphs (the gray ones with `gray_graph`) take them.

    Unpadded; the limits are checked on the padded size, from the header, before anything is decoded.
    """
    spec = image_spec(model)
    channels = 1 if gray_graph or spec.channels == 1 else None  # None: as the image is, gray or RGB
    image = decode_image(data, channels, SizeLimits.from_settings(settings), spec.stride_multiple)
    check_fixed_size(image, spec.fixed_size)
    frame = Frame(image.shape[1], image.shape[2], gray=image.shape[0] == 1)
    if not gray_graph and image.shape[0] != spec.channels:
        image = np.repeat(image, spec.channels, axis=0)  # a gray image on an RGB graph
    return frame, image


def prepare_image(model: LoadedModel, data: bytes, settings: Settings, gray_graph: bool = False) -> Prepared[Frame]:
    """Decode, check and pad an image for the RGB graphs or (`gray_graph`) the gray ones; the key is the padded size."""
    frame, image = decode_for_graph(model, data, settings, gray_graph)
    batch = pad_to_multiple(image[None], image_spec(model).stride_multiple)
    height, width = batch.shape[-2:]
    return Prepared((height, width), {"image": batch}, frame, height * width)


def answer_pixels(outputs: Feeds, frame: Frame) -> np.ndarray:
    """The reconstruction cropped to the original size, gray (luma) when the original was gray."""
    pixels = outputs["reconstruction"][0, :, : frame.height, : frame.width]
    return luma(pixels) if frame.gray else pixels


def finish_image(outputs: Feeds, frame: Frame, mime: str, png_level: int) -> bytes:
    """Crop the reconstruction to the original size and encode it (gray for a gray original)."""
    return encode_image(answer_pixels(outputs, frame), mime, png_level)


def check_latent_shape(model: LoadedModel, shape: tuple[int, ...], settings: Settings) -> Size:
    """The (height, width) of the image a latent of `shape` decodes to, which the graph runs on.

    422 when the shape does not fit the model's latent spec, 413 when that image is over the limits.
    Parsing calls it on the declared shape, before the latent's data is decoded.
    """
    expected = model.manifest.latent
    if len(shape) == len(expected.shape) + 1 and shape[0] == 1:
        shape = shape[1:]  # a batch of one is accepted too
    fixed = [d for d in expected.shape if isinstance(d, int)]
    if len(shape) != len(expected.shape) or list(shape[: len(fixed)]) != fixed or min(shape, default=0) < 1:
        raise InvalidInputError(f"latent shape {list(shape)} does not match {expected.shape}")
    spec = image_spec(model)
    f = spec.stride_multiple
    full = (shape[1] * f, shape[2] * f) if expected.kind == "spatial" else spec.fixed_size
    assert full is not None
    what = f"latent of shape {list(shape)} decodes to an image of"
    check_run_size(what, full[0], full[1], f, SizeLimits.from_settings(settings))
    return full


def prepare_latent(model: LoadedModel, latent: np.ndarray, size: Size | None, settings: Settings) -> Prepared[Frame]:
    """Check a latent against the model's latent spec and the size limits; the key is its shape.

    A declared `size` must pad to exactly the image the latent decodes to, which the limits were checked on.
    """
    full = check_latent_shape(model, latent.shape, settings)
    if latent.ndim == len(model.manifest.latent.shape) + 1:
        latent = latent[0]  # a batch of one
    if not np.isfinite(latent).all():
        raise InvalidInputError("latent holds NaN or Inf")
    f = image_spec(model).stride_multiple
    if size is not None and not (
        0 < size[0] <= full[0] and 0 < size[1] <= full[1] and full[0] - size[0] < f and full[1] - size[1] < f
    ):
        raise InvalidInputError(f"image size {size[0]}x{size[1]} does not fit a latent decoding to {full[0]}x{full[1]}")
    feeds = {"latent": np.ascontiguousarray(latent[None])}
    return Prepared(latent.shape, feeds, Frame(*(size or full)), full[0] * full[1])


def answerable(prepare: Callable[[], Prepared[Frame]], mime: str) -> Callable[[], Prepared[Frame]]:
    """`prepare`, then a check that the answer's size fits the chosen format (406), before inference."""

    def checked() -> Prepared[Frame]:
        prepared = prepare()
        check_answer_size(mime, prepared.context.height, prepared.context.width)
        return prepared

    return checked


def image_reconstruct(model: LoadedModel, data: bytes, mime: str, settings: Settings) -> bytes:
    """Encoded image in, encoded reconstruction of the same size out (one request, no batching)."""
    gray = model.has_gray_variant and image_is_gray(data)
    job = Job(
        partial(prepare_image, model, data, settings, gray),
        partial(finish_image, mime=mime, png_level=settings.png_compress_level),
    )
    return run_direct(model.engine_for("reconstruct", gray), job)


class ImageHandler(ModelHandler):
    """encode: image -> latent (JSON, or `.npy` on request); decode: latent -> image; reconstruct: image -> image."""

    @classmethod
    def serves(cls, model: LoadedModel) -> bool:
        """Every model that takes images and has no entropy tables (those are codecs)."""
        return isinstance(model.manifest.input, ImageInputSpec) and model.tables is None

    async def encode(self, call: Call) -> Answer:
        """The latent of an image, as JSON or (Accept: application/x-npy) as `.npy`."""
        data = await image_bytes(call.request, call.body)
        npy = NPY_MIME in call.request.headers.get("accept", "")
        job = Job(partial(prepare_image, self.model, data, self.settings), partial(self._latent_answer, npy=npy))
        return await self.run("encode", call, job)

    def _latent_answer(self, outputs: Feeds, frame: Frame, npy: bool) -> Answer:
        latent = outputs["latent"][0]
        height, width = frame.height, frame.width
        if npy:
            headers = {"X-Image-Height": str(height), "X-Image-Width": str(width)}
            return Answer(latent_to_npy(latent), NPY_MIME, headers)
        body = {**latent_to_json(latent), "image_size": [height, width], **self.ids()}
        return Answer(orjson.dumps(body), "application/json")

    async def decode(self, call: Call) -> Answer:
        """The image a latent (JSON or `.npy`) decodes to, cropped to its original size when given."""
        mime = choose_image_format(call.request.headers.get("accept"))
        kind, header_size = latent_source(call.request)

        def prepare() -> Prepared[Frame]:
            check = partial(check_latent_shape, self.model, settings=self.settings)
            latent, size = parse_latent(kind, call.body, header_size, check)
            return prepare_latent(self.model, latent, size, self.settings)

        small = len(call.body) <= self.settings.loop_inline_max_bytes
        job = Job(answerable(prepare, mime), partial(self._image_answer, mime=mime), small)
        return await self.run("decode", call, job)

    async def reconstruct(self, call: Call) -> Answer:
        """The image passed through the model (reconstructed, or denoised), at its own size."""
        mime = choose_image_format(call.request.headers.get("accept"))
        data = await image_bytes(call.request, call.body)
        gray = await runs_gray(self.model, data, self.settings)
        prepare = answerable(partial(prepare_image, self.model, data, self.settings, gray), mime)
        return await self.run("reconstruct", call, Job(prepare, partial(self._image_answer, mime=mime)), gray)

    def _image_answer(self, outputs: Feeds, frame: Frame, mime: str) -> Answer:
        return Answer(finish_image(outputs, frame, mime, self.settings.png_compress_level), mime)
