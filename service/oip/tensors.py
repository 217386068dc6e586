"""OIP tensors: datatypes, and the checks that make a declared tensor safe to use.

A tensor arrives as (name, datatype, shape) and either JSON `data` or raw bytes (the binary-tensor
extension on REST, `raw_input_contents` on gRPC). Every check on the declared shape runs before the data
is touched: the element count must fit the limit and match the bytes actually sent, so a header that
declares a huge shape costs nothing. Raw numeric data becomes a NumPy view of the body (no copy); BYTES
elements are each a 4-byte little-endian length and that many bytes.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from service.errors import DecodingError, InvalidInputError, PayloadTooLargeError

# Numeric datatypes the service reads or writes, and their NumPy types (little-endian, as the protocol says).
NUMERIC = {
    "BOOL": np.dtype(np.bool_),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
BYTES = "BYTES"
MAX_RANK = 8
# Elements of one tensor: a float32 tensor of this many is 256 MiB, beyond any body the service reads
# (AE_MAX_BODY_BYTES bounds the bytes; this bounds what JSON `data` may claim).
MAX_ELEMENTS = 64 * 1024 * 1024
_LENGTH = struct.Struct("<I")


@dataclass(frozen=True)
class TensorSpec:
    """What model metadata says of one input or output: its name, datatype and shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    optional: bool = False

    def metadata(self) -> dict[str, Any]:
        """The metadata entry: `{"name", "datatype", "shape"}`."""
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass
class Tensor:
    """A tensor with its data: a NumPy array, or for BYTES a list of byte strings (flattened, row-major)."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray | list[bytes]
    parameters: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """The bytes of its data (BYTES: the elements' lengths, without their framing)."""
        return sum(map(len, self.data)) if isinstance(self.data, list) else int(self.data.nbytes)

    def array(self) -> np.ndarray:
        """The numeric data in its shape; 400 for a BYTES tensor."""
        if isinstance(self.data, list):
            raise InvalidInputError(f"input {self.name!r} must be numeric, not BYTES")
        return self.data

    def elements(self) -> list[bytes]:
        """The BYTES elements; 400 for a numeric tensor."""
        if not isinstance(self.data, list):
            raise InvalidInputError(f"input {self.name!r} must be BYTES")
        return self.data


def declared_shape(name: str, shape: Any) -> tuple[int, ...]:
    """A declared shape checked: a list of at most MAX_RANK integers >= 0 whose product is within MAX_ELEMENTS."""
    if not isinstance(shape, list | tuple) or len(shape) > MAX_RANK:
        raise InvalidInputError(f"input {name!r}: shape must be a list of at most {MAX_RANK} integers")
    if not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise InvalidInputError(f"input {name!r}: shape {list(shape)} must hold integers >= 0")
    if math.prod(shape) > MAX_ELEMENTS:
        raise PayloadTooLargeError(f"input {name!r}: shape {list(shape)} exceeds {MAX_ELEMENTS} elements")
    return tuple(shape)


def check_datatype(name: str, datatype: Any) -> str:
    """A datatype the service reads; 400 naming the ones it does."""
    if datatype != BYTES and datatype not in NUMERIC:
        raise InvalidInputError(f"input {name!r}: datatype {datatype!r} is not one of {[*NUMERIC, BYTES]}")
    return str(datatype)


def from_raw(name: str, datatype: str, shape: tuple[int, ...], raw: bytes | memoryview) -> Tensor:
    """A tensor from its raw bytes (binary extension or gRPC raw contents); 400 when sizes disagree."""
    count = math.prod(shape)
    if datatype == BYTES:
        return Tensor(name, datatype, shape, split_bytes(name, raw, count))
    dtype = NUMERIC[datatype]
    if len(raw) != count * dtype.itemsize:
        raise DecodingError(
            f"input {name!r}: {len(raw)} bytes of data for shape {list(shape)} of {datatype} "
            f"({count * dtype.itemsize} expected)"
        )
    return Tensor(name, datatype, shape, np.frombuffer(raw, dtype).reshape(shape))


def split_bytes(name: str, raw: bytes | memoryview, count: int) -> list[bytes]:
    """BYTES elements from their serialized form: each a 4-byte little-endian length, then the bytes."""
    view, elements, offset = memoryview(raw), [], 0
    for _ in range(count):
        if offset + 4 > len(view):
            raise DecodingError(f"input {name!r}: BYTES data ends inside an element's length")
        (size,) = _LENGTH.unpack_from(view, offset)
        offset += 4
        if offset + size > len(view):
            raise DecodingError(f"input {name!r}: a BYTES element of {size} bytes runs past the data")
        elements.append(bytes(view[offset : offset + size]))
        offset += size
    if offset != len(view):
        raise DecodingError(f"input {name!r}: {len(view) - offset} bytes left after {count} BYTES elements")
    return elements


def join_bytes(elements: list[bytes]) -> bytes:
    """The serialized form of BYTES elements (what `split_bytes` reads)."""
    return b"".join(_LENGTH.pack(len(e)) + e for e in elements)


def from_json(name: str, datatype: str, shape: tuple[int, ...], data: Any) -> Tensor:
    """A tensor from JSON `data` (flat or nested lists, row-major); 400 when it does not fit the shape."""
    count = math.prod(shape)
    if datatype == BYTES:
        raise InvalidInputError(
            f"input {name!r}: BYTES data (encoded images, streams) must be sent as binary data "
            "(the binary-tensor extension: parameters.binary_data_size and Inference-Header-Content-Length)"
        )
    try:
        array = np.asarray(data, dtype=NUMERIC[datatype])
    except (ValueError, TypeError, OverflowError) as error:
        raise InvalidInputError(f"input {name!r}: data must be a list of {datatype} numbers") from error
    if array.size != count:
        raise InvalidInputError(f"input {name!r}: {array.size} values for shape {list(shape)} ({count} expected)")
    return Tensor(name, datatype, shape, array.reshape(shape))


def to_raw(tensor: Tensor) -> bytes:
    """The raw bytes of an output tensor (binary extension, gRPC raw contents)."""
    if isinstance(tensor.data, list):
        return join_bytes(tensor.data)
    return np.ascontiguousarray(tensor.data, NUMERIC[tensor.datatype]).tobytes()


def to_json_data(tensor: Tensor) -> list[Any]:
    """The flattened JSON data of a numeric output tensor."""
    assert not isinstance(tensor.data, list), "BYTES outputs always go as binary data"
    flat: list[Any] = np.asarray(tensor.data).reshape(-1).tolist()
    return flat
