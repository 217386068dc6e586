"""Images <-> arrays: decode any common format to the model's channels, encode the answer, pad and crop.

Decoding is defensive: only the documented formats are read (`ACCEPTED_FORMATS`: Pillow's other
readers, EPS, DDS, PSD, FITS and the rest, never see client bytes), the container's overhead is bounded
before Pillow walks it (`service.codecs.containers`), the size is read from the header and checked
before any pixel is decoded (so a decompression bomb costs nothing), and any failure inside a decoder
becomes a DecodingError whose message names no internals.

The bytes decide the format, not the declared type: any `image/*` body is read as whichever accepted
format its bytes are (clients often label a JPEG `image/png` or `image/jpg`), and a body that is none of
them is refused with 400 whatever its declared type says. Refusing on a mismatch would break those
clients and protect nothing, since the readers that run are the same either way.

The limits are the service's own (`AE_MAX_IMAGE_PIXELS`, `AE_MAX_IMAGE_SIDE`), applied per call to the
size the model runs the image at, padded to its stride multiple (`service.limits`). Pillow's process-wide
guard (`Image.MAX_IMAGE_PIXELS`) is left as it is for every other importer, training included; an
image above it that the service's limit allows is opened by its format's reader directly (see
`_open`), never by changing that global, which other threads read at the same time.
"""

from __future__ import annotations

import io
import logging
import struct
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from service.codecs.containers import check_container
from service.codecs.png import encode_png
from service.errors import (
    DecodingError,
    InvalidInputError,
    NotAcceptableError,
    OverloadedError,
    PayloadTooLargeError,
    ServiceError,
)
from service.limits import SizeLimits, check_run_size

logger = logging.getLogger(__name__)

# The formats a request body may be, as Pillow names them: those the API documents (`IMAGE_TYPES` in
# service/api/bodies.py), no others. A camera JPEG with an MPF segment is opened by the JPEG reader too.
ACCEPTED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "TIFF", "GIF")
UNDECODABLE = "the body is not a decodable image; send a PNG, JPEG, WebP, BMP, TIFF or GIF file"
# Response formats by MIME type -> Pillow format name.
OUTPUT_FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
# The longest side each answer format can hold: WebP's 14-bit size fields, libjpeg's JPEG_MAX_DIMENSION.
# PNG holds 2^31 - 1, more than any limit the service allows.
OUTPUT_MAX_SIDE = {"image/webp": 16383, "image/jpeg": 65500}
_SIXTEEN_BIT_MODES = {"I;16", "I;16B", "I;16L", "I;16N", "I"}
# Pillow modes of single-channel images: what "a gray image" means to the service. A palette image
# and an RGB image whose channels happen to be equal are colour images by their mode.
GRAY_MODES = frozenset({"1", "L", "LA", "La", "F", *_SIXTEEN_BIT_MODES})
# ITU-R BT.601 luma, as Pillow's convert("L"): how a colour answer to a gray image becomes gray.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def luma(pixels: np.ndarray) -> np.ndarray:
    """(1, H, W) gray from (3, H, W) RGB pixels (float); single-channel pixels are returned as they are."""
    if pixels.shape[0] == 1:
        return pixels
    return np.tensordot(LUMA, pixels, axes=1)[None]


def _to_model_channels(image: Image.Image, channels: int | None) -> np.ndarray:
    """(C, H, W) float32 in [0, 1] from any mode: 16-bit, CMYK, palette, RGBA, LA, 1-bit.

    `channels` None keeps the image's own: 1 for the gray modes, 3 for every other.
    """
    if channels is None:
        channels = 1 if image.mode in GRAY_MODES else 3
    if image.mode in _SIXTEEN_BIT_MODES:
        # Pillow's 16-bit -> 8-bit convert clips instead of scaling; scale ourselves and keep precision.
        gray = np.asarray(image, dtype=np.float32) / 65535.0
        gray = np.clip(gray, 0.0, 1.0)[None]
        return gray if channels == 1 else np.repeat(gray, 3, axis=0)
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")  # keeps palette transparency from turning into random colours
    converted = image.convert("L" if channels == 1 else "RGB")
    array = np.asarray(converted, dtype=np.float32) / 255.0
    return array[None] if channels == 1 else array.transpose(2, 0, 1)


def _open_with_format_reader(data: bytes) -> Image.Image:
    """`Image.open` less its pixel guard: the first registered reader that accepts the bytes.

    Only header parsing happens here, as in `Image.open`; the caller checks the size before decoding.
    """
    Image.init()
    prefix = data[:16]
    for name in ACCEPTED_FORMATS:  # the same fence as `Image.open(..., formats=ACCEPTED_FORMATS)`
        factory, accept = Image.OPEN[name]
        if accept is not None and accept(prefix) is not True:
            continue  # not this format (a string is Pillow's "almost, but not quite")
        try:
            return factory(io.BytesIO(data), "")
        except (SyntaxError, IndexError, TypeError, struct.error):
            continue  # what Image.open also treats as "try the next format"
    raise UnidentifiedImageError("cannot identify image file")


def _open(data: bytes) -> Image.Image:
    """Open an image whatever Pillow's process-wide limit; the service checks its own limit next.

    Pillow refuses images above twice `Image.MAX_IMAGE_PIXELS` while opening them. Such an image may
    still be within the service's limit (set above Pillow's default), so it is opened again by its
    format's reader, without the guard. Multi-frame readers (GIF, TIFF, WebP, ICO) check frame sizes
    against Pillow's limit themselves; those refusals become 413 in `decode_image`.
    """
    try:
        return Image.open(io.BytesIO(data), formats=ACCEPTED_FORMATS)
    except Image.DecompressionBombError:
        return _open_with_format_reader(data)


def decode_image(data: bytes, channels: int | None, limits: SizeLimits, multiple: int = 1) -> np.ndarray:
    """Encoded image bytes -> (C, H, W) float32 in [0, 1], EXIF orientation applied.

    `channels`: 1 or 3 converts to that many; None keeps the image's own (1 for gray modes, else 3).

    413 from the header alone when the image, padded to `multiple` (the model's stride), is over `limits`.
    An EXIF rotation swaps height and width, which changes neither the padded pixel count nor the longest
    padded side.
    """
    if not data:
        raise DecodingError("the request body is empty; send an encoded image")
    check_container(data)  # 413 before Pillow walks a structure larger than any image needs
    try:
        with warnings.catch_warnings():
            # Pillow warns on odd EXIF (the image itself may be fine) and, between one and two times its
            # own limit, with DecompressionBombWarning: the service's limit below is the one that counts.
            warnings.simplefilter("ignore")
            opened = _open(data)
            width, height = opened.size
            check_run_size("image of", height, width, multiple, limits)
            opened.seek(0)  # first frame of an animation
            image = ImageOps.exif_transpose(opened)
            return _to_model_channels(image, channels)
    except ServiceError:
        raise  # the size checks above
    except Image.DecompressionBombError as error:  # a multi-frame reader's own check (see `_open`)
        raise PayloadTooLargeError("image exceeds the decoder's pixel limit") from error
    except MemoryError as error:
        # The size was checked first, so this is the server short of memory, not a broken body.
        raise OverloadedError("the server is short of memory for this image; retry later") from error
    except Exception as error:
        # Any failure inside a reader is the body's: Pillow's readers raise far more than OSError and
        # ValueError on hostile bytes (DDS NotImplementedError, SPIDER AttributeError, a TIFF XMP tag of
        # numbers TypeError). The client gets a fixed message; the exception goes to the log.
        logger.info("undecodable image body: %s: %s", type(error).__name__, error)
        raise DecodingError(UNDECODABLE) from error


def image_is_gray(data: bytes) -> bool:
    """Whether an encoded image is single-channel, from its header alone (as `image_size`)."""
    return _header(data).mode in GRAY_MODES


def image_facts(data: bytes) -> tuple[bool, tuple[int, int]]:
    """(single-channel, (height, width)) of an encoded image, from one read of its header."""
    header = _header(data)
    width, height = header.size
    return header.mode in GRAY_MODES, (height, width)


def _header(data: bytes) -> Image.Image:
    """The opened (not decoded) image: its size and mode; 400 for bytes no accepted reader takes."""
    if not data:
        raise DecodingError("an image element is empty; send an encoded image")
    check_container(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return _open(data)
    except Exception as error:  # as in `decode_image`: any reader failure is the body's
        raise DecodingError(UNDECODABLE) from error


def image_size(data: bytes) -> tuple[int, int]:
    """(height, width) of an encoded image from its header alone (EXIF rotation swaps them, not their product)."""
    width, height = _header(data).size
    return height, width


def check_fixed_size(image: np.ndarray, fixed_size: tuple[int, int] | None) -> None:
    """A dense-bottleneck model takes one size only; others are refused, never resized."""
    if fixed_size is not None and tuple(image.shape[-2:]) != tuple(fixed_size):
        raise InvalidInputError(
            f"this model takes {fixed_size[0]}x{fixed_size[1]} images only (height x width); "
            f"got {image.shape[-2]}x{image.shape[-1]}"
        )


def pad_to_multiple(batch: np.ndarray, multiple: int) -> np.ndarray:
    """Edge-replicate the bottom and right of (N, C, H, W) so H and W are multiples of `multiple`.

    Edge padding (not zeros) keeps the border statistics natural, so the crop is unaffected by it;
    torch's `replicate` mode is the same operation, which keeps training and serving in parity.
    """
    pad_h = -batch.shape[-2] % multiple
    pad_w = -batch.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return batch
    return np.pad(batch, ((0, 0), (0, 0), (0, pad_h), (0, pad_w)), mode="edge")


def choose_image_format(accept: str | None) -> str:
    """The response MIME type from an Accept header (PNG unless another supported type is asked for)."""
    if not accept:
        return "image/png"
    for part in accept.split(","):
        mime = part.split(";")[0].strip().lower()
        if mime in OUTPUT_FORMATS:
            return mime
        if mime in ("*/*", "image/*"):
            return "image/png"
    raise NotAcceptableError(f"cannot answer {accept!r}; choose one of {', '.join(OUTPUT_FORMATS)}")


def check_answer_size(mime: str, height: int, width: int) -> None:
    """406 when an answer of `height` x `width` pixels does not fit the format `mime` the client chose.

    The encoders fail on such sizes (Pillow raises, which answered 500): WebP holds 16383 pixels per side,
    JPEG 65500. Cheap enough to call before inference as well, where the answer's size is known.
    """
    longest = OUTPUT_MAX_SIDE.get(mime)
    if longest is not None and max(height, width) > longest:
        raise NotAcceptableError(
            f"a {OUTPUT_FORMATS[mime]} answer holds at most {longest} pixels per side and this one is "
            f"{height}x{width} (height x width); ask for image/png (Accept: image/png)"
        )


def encode_image(image: np.ndarray, mime: str, png_level: int) -> bytes:
    """(C, H, W) float in [0, 1] -> encoded bytes (PNG through `encode_png`: fpng at level 1, the default).

    The format's size limit is checked before any encoding work (406, see `check_answer_size`).
    """
    check_answer_size(mime, image.shape[-2], image.shape[-1])
    pixels = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    hwc = pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0)
    fmt = OUTPUT_FORMATS[mime]
    if fmt == "PNG":
        return encode_png(hwc, png_level)
    out = io.BytesIO()
    Image.fromarray(hwc).save(out, format=fmt, quality=95)
    return out.getvalue()
