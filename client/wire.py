"""Requests and answers as data (no I/O): what to send for each operation and how to read the answer.

`Client` and `AsyncClient` differ only in how they send a `Call`; everything about the wire format
lives here once: image bodies, `.npy` latents with their size headers, the sequence JSON, and the
compressed stream's header.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from PIL import Image

from client.results import Compressed, ImageResult, Latent, ModelInfo, SeriesReconstruction, VersionInfo

ImageInput = bytes | str | Path | Image.Image | np.ndarray
SeriesInput = Sequence[Sequence[float]] | Sequence[Sequence[Sequence[float]]] | np.ndarray

NPY = "application/x-npy"
STREAM = "application/octet-stream"
STREAM_MAGIC = b"AEIC"


@dataclass(frozen=True)
class Call:
    """One HTTP request: a path under the base URL with its query parameters, and a raw or JSON body."""

    method: str
    path: str
    content: bytes | None = None
    json: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)


def model_path(model: str, operation: str, version: int | None = None) -> str:
    """`/v1/models/{name}[/versions/{v}]/{operation}`."""
    versioned = f"/versions/{version}" if version is not None else ""
    return f"/v1/models/{model}{versioned}/{operation}"


def image_bytes(image: ImageInput) -> bytes:
    """An image body: file bytes as they are (the server reads the format from the bytes), else PNG."""
    if isinstance(image, bytes):
        return image
    if isinstance(image, str | Path):
        return Path(image).read_bytes()
    picture = Image.fromarray(image) if isinstance(image, np.ndarray) else image
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def image_call(
    model: str,
    operation: str,
    image: ImageInput,
    version: int | None,
    accept: str = "*/*",
    params: dict[str, str] | None = None,
) -> Call:
    """POST an image body (labelled PNG: the server decides the format from the bytes, not the label)."""
    headers = {"content-type": "image/png", "accept": accept}
    path = model_path(model, operation, version)
    return Call("POST", path, content=image_bytes(image), headers=headers, params=params or {})


def rate_params(quality: float | None, target_bpp: float | None, max_bytes: int | None) -> dict[str, str]:
    """The query parameters of a variable-rate codec's encode; ValueError for more than one of the three.

    The server checks the ranges (quality in [0, 1], 0 < target_bpp <= 64, max_bytes >= 1) and answers
    422 for them, as it does for any of the three sent to a fixed-rate codec.
    """
    asked: dict[str, str] = {}
    # repr of a float round-trips exactly; max_bytes goes as digits (the server refuses "1e3").
    if quality is not None:
        asked["quality"] = repr(float(quality))
    if target_bpp is not None:
        asked["target_bpp"] = repr(float(target_bpp))
    if max_bytes is not None:
        asked["max_bytes"] = str(int(max_bytes))
    if len(asked) > 1:
        raise ValueError(f"ask for one of quality, target_bpp and max_bytes, not {' and '.join(asked)}")
    return asked


def latent_call(model: str, latent: Latent | np.ndarray, version: int | None) -> Call:
    """POST a latent as `.npy`, with the size to crop to when it is known."""
    array, size = (latent.array, latent.image_size) if isinstance(latent, Latent) else (latent, None)
    out = io.BytesIO()
    np.save(out, np.ascontiguousarray(array, dtype="<f4"), allow_pickle=False)
    headers = {"content-type": NPY}
    if size is not None:
        headers |= {"x-image-height": str(size[0]), "x-image-width": str(size[1])}
    return Call("POST", model_path(model, "decode", version), content=out.getvalue(), headers=headers)


def series_payload(series: SeriesInput, **options: Any) -> dict[str, Any]:
    """`{"sequences": [...]}` with the options that are set; each series becomes plain JSON numbers."""
    sequences = [np.asarray(one, dtype=np.float64).tolist() for one in series]
    return {"sequences": sequences, **{key: value for key, value in options.items() if value is not None}}


def read_models(answer: httpx.Response) -> list[ModelInfo]:
    """`GET /v1/models` as typed records (each version keeps its full description in `raw`)."""
    return [
        ModelInfo(
            name=model["name"],
            default_version=int(model["default_version"]),
            versions=tuple(_version_info(raw) for raw in model["versions"]),
        )
        for model in answer.json()["models"]
    ]


def _version_info(raw: dict[str, Any]) -> VersionInfo:
    return VersionInfo(
        version=int(raw["version"]),
        task=str(raw.get("task")),
        family=str(raw.get("family")),
        input_kind=str(raw.get("input", {}).get("kind")),
        operations=tuple(raw.get("operations", ())),
        raw=raw,
    )


def read_latent(answer: httpx.Response) -> Latent:
    """An `.npy` latent and its `X-Image-Height`/`X-Image-Width`."""
    array = np.load(io.BytesIO(answer.content), allow_pickle=False)
    height, width = answer.headers.get("x-image-height"), answer.headers.get("x-image-width")
    return Latent(array, (int(height), int(width)) if height and width else None)


def read_image(answer: httpx.Response) -> ImageResult:
    """An image answer and the PSNR and rate a codec's reconstruct reports."""
    return ImageResult(
        answer.content, psnr=_float_header(answer, "x-psnr"), bits_per_pixel=_float_header(answer, "x-bits-per-pixel")
    )


def read_compressed(answer: httpx.Response) -> Compressed:
    """A codec's encode answer; model and version from the stream header, which names who wrote it.

    `quality` is the one the server coded at (`X-Quality`), None from a fixed-rate codec.
    """
    model, version = stream_origin(answer.content)
    return Compressed(
        stream=answer.content,
        bits_per_pixel=_float_header(answer, "x-bits-per-pixel") or 0.0,
        model=model,
        version=version,
        height=int(answer.headers.get("x-image-height", 0)),
        width=int(answer.headers.get("x-image-width", 0)),
        quality=_float_header(answer, "x-quality"),
    )


def stream_origin(stream: bytes) -> tuple[str, int]:
    """(model, version) named by a stream's header: magic, format, [flags,] name length, name, version.

    Format 1 has no flags byte. Only these front fields are read; the server checks everything else.
    """
    if stream[:4] != STREAM_MAGIC or len(stream) < 6:
        raise ValueError("not a compressed-image stream (bad magic)")
    at = 5 if stream[4] == 1 else 6
    length = stream[at]
    name = stream[at + 1 : at + 1 + length].decode("utf-8", "replace")
    (version,) = struct.unpack_from(">H", stream, at + 1 + length)
    return name, version


def read_embeddings(answer: httpx.Response) -> np.ndarray:
    """`{"embeddings": [[...]]}` as a float32 (series, size) array."""
    return np.asarray(answer.json()["embeddings"], dtype=np.float32)


def read_series_reconstruction(answer: httpx.Response) -> SeriesReconstruction:
    """A sequence reconstruct answer as arrays; percentiles and flags only when the server sent them."""
    body = answer.json()
    percentiles, anomaly = body.get("percentiles"), body.get("anomaly")
    return SeriesReconstruction(
        reconstructions=[np.asarray(one, dtype=np.float32) for one in body.get("reconstructions", [])],
        errors=np.asarray(body["errors"], dtype=np.float64),
        percentiles=None if percentiles is None else np.asarray(percentiles, dtype=np.float64),
        anomaly=None if anomaly is None else np.asarray(anomaly, dtype=bool),
        model=str(body.get("model")),
        version=str(body.get("version")),
    )


def _float_header(answer: httpx.Response, name: str) -> float | None:
    value = answer.headers.get(name)
    return float(value) if value is not None else None
