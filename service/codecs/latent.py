"""Latents <-> bytes: JSON (`{"shape", "dtype", "data": base64 little-endian}`) or `.npy`."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import numpy as np

from service.errors import DecodingError, InvalidInputError

NPY_MIME = "application/x-npy"


def latent_to_json(latent: np.ndarray) -> dict[str, Any]:
    """The JSON form of a float32 latent."""
    little = latent.astype("<f4", copy=False)
    return {
        "shape": list(little.shape),
        "dtype": "float32",
        "data": base64.b64encode(little.tobytes()).decode("ascii"),
    }


def latent_to_npy(latent: np.ndarray) -> bytes:
    """`.npy` bytes (readable with `numpy.load`)."""
    out = io.BytesIO()
    np.save(out, latent.astype("<f4", copy=False), allow_pickle=False)
    return out.getvalue()


def latent_from_json(payload: Any) -> np.ndarray:
    """Parse the JSON form; shape and byte count must agree."""
    if not isinstance(payload, dict):
        raise InvalidInputError("latent must be an object with shape, dtype and data")
    shape, dtype, data = payload.get("shape"), payload.get("dtype", "float32"), payload.get("data")
    if dtype != "float32":
        raise InvalidInputError(f"latent dtype must be float32, got {dtype!r}")
    if not (isinstance(shape, list) and all(isinstance(d, int) and d > 0 for d in shape) and shape):
        raise InvalidInputError("latent shape must be a non-empty list of positive integers")
    if not isinstance(data, str):
        raise InvalidInputError("latent data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise DecodingError("latent data is not valid base64") from error
    expected = int(np.prod(shape)) * 4
    if len(raw) != expected:
        raise InvalidInputError(f"latent data holds {len(raw)} bytes; shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def latent_from_npy(data: bytes) -> np.ndarray:
    """Parse `.npy` bytes (no pickles: object arrays are refused)."""
    try:
        array = np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise DecodingError("the body is not a valid .npy file") from error
    if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
        raise InvalidInputError("the .npy latent must hold floating-point values")
    return array.astype(np.float32)
