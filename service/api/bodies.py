"""Request bodies: read under a deadline, then checked by content type (raw images, multipart, JSON, latents).

What runs on the event loop is cheap: headers and media types. Parsing JSON and latents is part of a
request's prepare stage, which runs in a worker thread (see `service.batching`).
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from service.codecs.json_body import parse_json
from service.codecs.latent import NPY_MIME, ShapeCheck, latent_from_json, latent_from_npy
from service.errors import (
    BodyTimeoutError,
    ClientGoneError,
    DecodingError,
    InvalidInputError,
    PayloadTooLargeError,
    UnsupportedMediaTypeError,
)

IMAGE_TYPES = ("image/png", "image/jpeg", "image/webp", "image/bmp", "image/tiff", "image/gif")


def media_type(request: Request) -> str:
    """The bare, lower-cased media type of the request ('' when absent)."""
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


async def read_body(request: Request, limit: int, timeout_s: float) -> bytes:
    """The request body within `timeout_s`, refusing more than `limit` bytes without reading them all.

    Past the deadline: 408 with `Connection: close`, so a client trickling its body is cut off. A client
    that disconnects while sending is a normal event: 499 `client_gone` (logged at info, never as an error).
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(f"body of {declared} bytes exceeds the limit of {limit} bytes")
    chunks, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLargeError(f"body exceeds the limit of {limit} bytes")
                chunks.append(chunk)
    except ClientDisconnect as error:
        raise ClientGoneError("the client disconnected while sending the body") from error
    except TimeoutError as error:
        message = f"the body was not received within {timeout_s:g} s"
        raise BodyTimeoutError(message, headers={"Connection": "close"}) from error
    return b"".join(chunks)


async def image_bytes(request: Request, body: bytes) -> bytes:
    """Image bytes from a raw `image/*` body or a multipart form's `file` field."""
    kind = media_type(request)
    if kind.startswith("image/"):
        return body
    if kind == "multipart/form-data":

        async def replay() -> dict[str, Any]:
            return {"type": "http.request", "body": body, "more_body": False}

        try:
            form = await Request(request.scope, replay).form(max_files=1, max_fields=8)
        except Exception as error:  # starlette raises several types for malformed multipart
            raise DecodingError("malformed multipart form") from error
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise InvalidInputError("the multipart form needs a `file` field holding the image")
        return await upload.read()
    raise UnsupportedMediaTypeError(
        f"send an image ({', '.join(IMAGE_TYPES)}) or multipart/form-data with a `file` field; got {kind or 'none'}"
    )


def require_media(request: Request, media: str) -> None:
    """415 unless the body is of exactly one media type (JSON, or a stream as application/octet-stream)."""
    kind = media_type(request)
    if kind != media:
        raise UnsupportedMediaTypeError(f"send Content-Type: {media}; got {kind or 'none'}")


def _size_from_headers(request: Request) -> tuple[int, int] | None:
    """(height, width) from X-Image-Height and X-Image-Width: both or neither, ASCII decimals of 1 to 9 digits.

    `str.isdigit` alone is true for characters `int` refuses ("²", 500 before) and for thousands of
    digits (which `int` refuses beyond 4300); 9 digits are far above any image side the limits allow.
    """
    height, width = request.headers.get("x-image-height"), request.headers.get("x-image-width")
    if height is None and width is None:
        return None
    sides = (height or "", width or "")
    if not all(side.isascii() and side.isdigit() and len(side) <= 9 and int(side) > 0 for side in sides):
        raise InvalidInputError("X-Image-Height and X-Image-Width must both be positive integers (ASCII digits)")
    return int(sides[0]), int(sides[1])


def _size_from_json(payload: dict[str, Any]) -> tuple[int, int] | None:
    size = payload.get("image_size")
    if size is None:
        return None
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size)):
        raise InvalidInputError("image_size must be [height, width] with positive integers")
    return size[0], size[1]


def latent_source(request: Request) -> tuple[str, tuple[int, int] | None]:
    """The latent's media type (415 unless JSON or `.npy`) and, for `.npy`, the size in X-Image-* headers."""
    kind = media_type(request)
    if kind == NPY_MIME:
        return kind, _size_from_headers(request)
    if kind == "application/json":
        return kind, None
    raise UnsupportedMediaTypeError(f"send the latent as application/json or {NPY_MIME}; got {kind or 'none'}")


def parse_latent(
    kind: str, body: bytes, header_size: tuple[int, int] | None, check_shape: ShapeCheck
) -> tuple[np.ndarray, tuple[int, int] | None]:
    """(latent, optional original size) from a body of `kind` (see `latent_source`); a prepare stage.

    `check_shape` sees the declared shape before the latent's data is decoded.
    """
    if kind == NPY_MIME:
        return latent_from_npy(body, check_shape), header_size
    payload = parse_json(body)
    return latent_from_json(payload, check_shape), _size_from_json(payload) if isinstance(payload, dict) else None
