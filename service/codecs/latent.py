"""Latents <-> bytes: JSON (`{"shape", "dtype", "data": base64 little-endian}`) or `.npy`.

Parsing reads the declared shape and dtype first and hands the shape to the caller's `check_shape`
(the model's latent spec and size limits) before the data is decoded, and the data must hold exactly
what the shape declares: no array is ever sized from a declaration alone. (`np.load` allocates the
shape a `.npy` header declares before reading a byte of data, so it is not used on request bodies.)
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.lib import format as npy_format

from service.errors import DecodingError, InvalidInputError

NPY_MIME = "application/x-npy"
ShapeCheck = Callable[[tuple[int, ...]], object]  # raises to refuse the shape
# A latent has at most a batch axis and three more (channels, height, width); NumPy refuses over 64.
MAX_LATENT_RANK = 8
# No latent axis comes near this: 2^32 - 1 is the widest side a codec stream's header can declare, and
# each latent cell stands for several pixels. Larger sizes are refused as invalid (422) before the
# model's check (which answers 413 with the image size a plausible shape decodes to).
MAX_LATENT_DIMENSION = 2**32
# Float widths a `.npy` latent may use; it is converted to float32.
_NPY_FLOAT_SIZES = (2, 4, 8)


def _no_check(shape: tuple[int, ...]) -> None:
    return None


def check_declared_shape(shape: object, where: str) -> tuple[int, ...]:
    """A declared latent shape as a tuple: rank 1 to `MAX_LATENT_RANK`, every size 1 to `MAX_LATENT_DIMENSION`.

    Checked before the shape reaches the model's check or any allocation; booleans (`true` is an int
    in Python) are not sizes. The byte count is then computed with Python integers, which do not wrap.
    """
    if not isinstance(shape, list | tuple) or not 1 <= len(shape) <= MAX_LATENT_RANK:
        raise InvalidInputError(f"{where} must be a list of 1 to {MAX_LATENT_RANK} positive integers")
    if not all(type(d) is int and 1 <= d <= MAX_LATENT_DIMENSION for d in shape):
        raise InvalidInputError(
            f"{where} {list(shape)[:MAX_LATENT_RANK]} must hold positive integers of at most {MAX_LATENT_DIMENSION} "
            "(a zero-length axis holds no latent)"
        )
    return tuple(shape)


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


def latent_from_json(payload: Any, check_shape: ShapeCheck = _no_check) -> np.ndarray:
    """Parse the JSON form; the shape is checked before the data is decoded; shape and byte count must agree."""
    if not isinstance(payload, dict):
        raise InvalidInputError("latent must be an object with shape, dtype and data")
    shape, dtype, data = payload.get("shape"), payload.get("dtype", "float32"), payload.get("data")
    if dtype != "float32":
        raise InvalidInputError(f"latent dtype must be float32, got {dtype!r}")
    if not isinstance(shape, list):
        raise InvalidInputError("latent shape must be a non-empty list of positive integers")
    shape = list(check_declared_shape(shape, "latent shape"))
    check_shape(tuple(shape))
    if not isinstance(data, str):
        raise InvalidInputError("latent data must be a base64 string")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as error:
        raise DecodingError("latent data is not valid base64") from error
    expected = math.prod(shape) * 4  # Python integers: np.prod wraps around on a huge declared shape
    if len(raw) != expected:
        raise InvalidInputError(f"latent data holds {len(raw)} bytes; shape {shape} needs {expected}")
    return np.frombuffer(raw, dtype="<f4").reshape(shape).astype(np.float32)


def _npy_header(stream: io.BytesIO) -> tuple[tuple[int, ...], bool, np.dtype[Any]]:
    """(shape, Fortran order, dtype) from a `.npy` header; the stream is left at the data."""
    try:
        version = npy_format.read_magic(stream)
        if version == (1, 0):
            return npy_format.read_array_header_1_0(stream)
        if version == (2, 0):
            return npy_format.read_array_header_2_0(stream)
    except (ValueError, OSError, EOFError, SyntaxError) as error:
        raise DecodingError("the body is not a valid .npy file") from error
    raise DecodingError(f".npy format version {version[0]}.{version[1]} is not supported; send 1.0 or 2.0")


def latent_from_npy(data: bytes, check_shape: ShapeCheck = _no_check) -> np.ndarray:
    """Parse `.npy` bytes: header checked (dtype, shape, then `check_shape`) before the data is read.

    No pickles: only plain float arrays are accepted.
    """
    stream = io.BytesIO(data)
    shape, fortran_order, dtype = _npy_header(stream)
    if dtype.hasobject:  # what np.load(allow_pickle=False) refuses as unreadable
        raise DecodingError("the .npy body holds pickled objects, which are not read")
    if dtype.kind != "f" or dtype.itemsize not in _NPY_FLOAT_SIZES:
        raise InvalidInputError("the .npy latent must hold floating-point values (float16, float32 or float64)")
    shape = check_declared_shape(shape, "the .npy latent's shape")
    check_shape(shape)
    raw = memoryview(data)[stream.tell() :]
    needed = math.prod(shape) * dtype.itemsize
    if len(raw) != needed:
        raise DecodingError(f"the .npy data holds {len(raw)} bytes; its header's shape {list(shape)} needs {needed}")
    array = np.frombuffer(raw, dtype=dtype)
    array = array.reshape(shape[::-1]).T if fortran_order else array.reshape(shape)
    return array.astype(np.float32)
