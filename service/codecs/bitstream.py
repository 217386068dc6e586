"""The compressed-image bitstream: header, entropy-coded latent, checksum.

Layout (big-endian integers):

    magic "AEIC" | format version u8 | name length u8 | name (UTF-8) | model version u16
    | table hash (8 bytes, sha256 prefix of the entropy tables file) | height u32 | width u32
    | payload length u32 | payload | crc32 u32 of everything before it

The payload is the rounded latent, channel by channel, range-coded with `constriction` using the
model's integer probability tables. Decoding checks every field before it decodes a symbol:
a truncated, corrupted or foreign stream is refused, never turned into garbage pixels. The tables
are integers and the coder's model is built from them the same way on every machine, so the same
bytes decode to the same latent everywhere.
"""

from __future__ import annotations

import hashlib
import json
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import constriction
import numpy as np

from service.errors import DecodingError

MAGIC = b"AEIC"
FORMAT_VERSION = 1
MIME = "application/octet-stream"
_FIXED = struct.Struct(">HQII")  # model version, table hash, height, width


@dataclass(frozen=True)
class Header:
    """Everything in a stream but the payload."""

    name: str
    version: int
    table_hash: bytes
    height: int
    width: int


class EntropyTables:
    """Per-channel integer pmfs over contiguous integer supports, and the coder models built from them."""

    def __init__(self, path: Path) -> None:
        raw = path.read_bytes()
        self.hash = hashlib.sha256(raw).digest()[:8]
        spec = json.loads(raw)
        self.precision = int(spec["precision"])
        self.offsets = np.array([t["offset"] for t in spec["tables"]], dtype=np.int64)
        self.sizes = np.array([len(t["pmf"]) for t in spec["tables"]], dtype=np.int64)
        # Integer tables -> exact float64 fractions -> the coder's own fixed-point model, identically everywhere.
        # A channel whose support is a single value (a channel training switched off) costs no bits
        # and has no model: its value is known.
        total = float(1 << self.precision)
        self.models = [
            constriction.stream.model.Categorical(np.asarray(t["pmf"], dtype=np.float64) / total, perfect=False)
            if len(t["pmf"]) > 1
            else None
            for t in spec["tables"]
        ]

    @property
    def channels(self) -> int:
        """Latent channels the tables cover."""
        return len(self.models)

    def encode(self, latent: np.ndarray) -> bytes:
        """Round a (C, h, w) latent, clip it to each channel's support, range-code it."""
        symbols = np.rint(latent).astype(np.int64) - self.offsets[:, None, None]
        symbols = np.clip(symbols, 0, (self.sizes - 1)[:, None, None]).astype(np.int32)
        encoder = constriction.stream.queue.RangeEncoder()
        for channel, model in enumerate(self.models):
            if model is not None:
                encoder.encode(symbols[channel].ravel(), model)
        return encoder.get_compressed().astype("<u4").tobytes()

    def decode(self, payload: bytes, height: int, width: int) -> np.ndarray:
        """The (C, height, width) float32 latent of a payload."""
        if len(payload) % 4:
            raise DecodingError("bitstream payload is not a whole number of 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        count = height * width
        try:
            rows = [
                decoder.decode(model, count) if model is not None else np.zeros(count, np.int32)
                for model in self.models
            ]
        except Exception as error:  # constriction reports exhausted or invalid data as generic errors
            raise DecodingError("bitstream payload could not be decoded") from error
        symbols = np.stack(rows).reshape(self.channels, height, width).astype(np.int64)
        return (symbols + self.offsets[:, None, None]).astype(np.float32)


def pack(header: Header, payload: bytes) -> bytes:
    """Serialize a stream."""
    name = header.name.encode("utf-8")
    body = (
        MAGIC
        + bytes([FORMAT_VERSION, len(name)])
        + name
        + _FIXED.pack(header.version, int.from_bytes(header.table_hash, "big"), header.height, header.width)
        + struct.pack(">I", len(payload))
        + payload
    )
    return body + struct.pack(">I", zlib.crc32(body))


def unpack(data: bytes) -> tuple[Header, bytes]:
    """Parse and check a stream's structure and checksum (not yet which model it belongs to)."""
    if len(data) < len(MAGIC) + 2 or data[:4] != MAGIC:
        raise DecodingError("not a compressed-image stream (bad magic)")
    if data[4] != FORMAT_VERSION:
        raise DecodingError(f"unsupported stream format version {data[4]} (this service reads {FORMAT_VERSION})")
    if len(data) < 4 + 4:
        raise DecodingError("stream is truncated")
    body, (checksum,) = data[:-4], struct.unpack(">I", data[-4:])
    if zlib.crc32(body) != checksum:
        raise DecodingError("stream checksum mismatch: truncated or corrupted")
    name_end = 6 + data[5]
    fixed_end = name_end + _FIXED.size
    if len(body) < fixed_end + 4:
        raise DecodingError("stream is truncated")
    try:
        name = body[6:name_end].decode("utf-8")
    except UnicodeDecodeError as error:
        raise DecodingError("stream model name is not UTF-8") from error
    version, table_hash, height, width = _FIXED.unpack(body[name_end:fixed_end])
    (length,) = struct.unpack(">I", body[fixed_end : fixed_end + 4])
    payload = body[fixed_end + 4 :]
    if len(payload) != length:
        raise DecodingError("stream payload length does not match its header")
    if height == 0 or width == 0:
        raise DecodingError("stream declares an empty image")
    return Header(name, version, table_hash.to_bytes(8, "big"), height, width), payload
