"""Entropy coding of a codec's rounded latent with its integer tables (`constriction`'s range coder).

Each latent channel has an integer pmf over a contiguous support (`offset` .. `offset + size - 1`)
written at export (training/entropy_tables.py). Two codings use them:

- **escaped** (what this release writes; stream flag ESCAPE_CODED): each channel's model is its pmf
  plus one escape symbol of the smallest probability. A value inside the support is its symbol; a value
  outside it is the escape symbol, and after the channel's symbols each escaped value follows exactly,
  bypass-coded: its distance from the support's offset, zigzag-mapped to n >= 0, as the bit length of n
  (uniform over 0..34) and the bits below n's leading one (uniform, 16 at a time). So the rounded
  latent comes back exactly, whatever its values: every integer a float32 latent can hold below 2^31
  in magnitude (a stream refuses larger ones when it is written). An escape costs about the value's
  bits plus 23; a latent that stays in range costs almost nothing more (the escape symbol takes
  1/65537 of each channel's mass).
- **clipped** (written before the flag existed, still decoded): values outside the support were
  clipped to its ends, a distortion the rate did not show; a channel whose support is one value cost
  nothing (its value is known).

The tables are integers and the coder's models are built from them the same way on every machine,
so the same bytes decode to the same latent everywhere.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Protocol

import constriction
import numpy as np

from service.errors import DecodingError

_LENGTHS = 35  # bit lengths 0..34 of a zigzag-mapped distance below 2^33
_CHUNK_BITS = 16

_LENGTH_MODEL = constriction.stream.model.Uniform(_LENGTHS)
_CHUNK_FAMILY = constriction.stream.model.Uniform()  # per-symbol sizes


class LatentCoder(Protocol):
    """What a codec's streams need of its entropy model: this module's tables, or service.codecs.hyperprior's."""

    hash: bytes  # 8 bytes a stream names its entropy model by
    variable_rate: bool  # whether it codes at a quality (carried in the stream)

    @property
    def channels(self) -> int:
        """Latent channels."""

    def encode(self, latent: np.ndarray, quality: int | None) -> bytes:
        """A payload of a (C, h, w) latent, at a u16 quality when `variable_rate`."""

    def decode(self, payload: bytes, height: int, width: int, escaped: bool, quality: int | None) -> np.ndarray:
        """The (C, height, width) float32 latent the decoder graph takes."""


class EntropyTables:
    """Per-channel integer pmfs over contiguous integer supports, and the coder models built from them."""

    variable_rate = False

    def __init__(self, path: Path) -> None:
        raw = path.read_bytes()
        self._build(json.loads(raw), hashlib.sha256(raw).digest()[:8])

    @classmethod
    def from_spec(cls, spec: dict[str, Any], table_hash: bytes) -> EntropyTables:
        """Tables from an already parsed `{"precision": P, "tables": [{"offset": o, "pmf": [...]}, ...]}`."""
        tables = cls.__new__(cls)
        tables._build(spec, table_hash)
        return tables

    def _build(self, spec: dict[str, Any], table_hash: bytes) -> None:
        self.hash = table_hash
        self.precision = int(spec["precision"])
        self.offsets = np.array([t["offset"] for t in spec["tables"]], dtype=np.int64)
        self.sizes = np.array([len(t["pmf"]) for t in spec["tables"]], dtype=np.int64)
        # Integer tables -> exact float64 fractions -> the coder's own fixed-point model, identically everywhere.
        total = float(1 << self.precision)
        pmfs = [np.asarray(t["pmf"], dtype=np.float64) for t in spec["tables"]]
        if any(len(pmf) == 0 or (pmf < 1).any() or pmf.sum() != total for pmf in pmfs):
            raise ValueError(f"every table needs counts of at least 1 summing to 2^{self.precision}")
        self.clipped_models = [
            constriction.stream.model.Categorical(pmf / total, perfect=False) if len(pmf) > 1 else None for pmf in pmfs
        ]
        self.escaped_models = [
            constriction.stream.model.Categorical(np.append(pmf, 1.0) / (total + 1.0), perfect=False) for pmf in pmfs
        ]

    @property
    def channels(self) -> int:
        """Latent channels the tables cover."""
        return len(self.sizes)

    def encode(self, latent: np.ndarray, quality: int | None = None) -> bytes:
        """Round a (C, h, w) latent and range-code it exactly (escaped coding; see the module doc).

        The tables code at one rate: `quality` is for variable-rate coders and must be None here.
        """
        assert quality is None, "a factorized codec has one rate"
        values = np.rint(latent.astype(np.float64))
        if not np.isfinite(values).all() or np.abs(values).max(initial=0) >= 2**31:
            raise ValueError("latent holds values outside the int32 range a stream codes")
        encoder = constriction.stream.queue.RangeEncoder()
        for channel, row in enumerate(values.astype(np.int64).reshape(self.channels, -1)):
            self.encode_values(encoder, channel, row)
        return encoder.get_compressed().astype("<u4").tobytes()

    def encode_values(self, encoder: constriction.stream.queue.RangeEncoder, table: int, values: np.ndarray) -> None:
        """Code integer `values` with table `table`, escaping those outside its support (exact for |v| < 2^31)."""
        size = self.sizes[table]
        row = values - self.offsets[table]
        outside = (row < 0) | (row >= size)
        encoder.encode(np.where(outside, size, row).astype(np.int32), self.escaped_models[table])
        if outside.any():
            _encode_escaped(encoder, row[outside])

    def decode_values(self, decoder: constriction.stream.queue.RangeDecoder, table: int, count: int) -> np.ndarray:
        """`count` integers coded by `encode_values` with table `table` (int64)."""
        return self._decode_channel(decoder, table, count, escaped=True) + self.offsets[table]

    def decode(
        self, payload: bytes, height: int, width: int, escaped: bool = True, quality: int | None = None
    ) -> np.ndarray:
        """The (C, height, width) float32 latent of a payload, coded `escaped` or (older streams) clipped."""
        if quality is not None:
            raise DecodingError("stream carries a quality, which this fixed-rate codec's streams never do")
        if len(payload) % 4:
            raise DecodingError("bitstream payload is not a whole number of 32-bit words")
        decoder = constriction.stream.queue.RangeDecoder(np.frombuffer(payload, dtype="<u4").astype(np.uint32))
        count = height * width
        rows = []
        try:
            for channel in range(self.channels):
                rows.append(self._decode_channel(decoder, channel, count, escaped))
        except DecodingError:
            raise
        except Exception as error:  # constriction reports exhausted or invalid data as generic errors
            raise DecodingError("bitstream payload could not be decoded") from error
        symbols = np.stack(rows).reshape(self.channels, height, width)
        return (symbols + self.offsets[:, None, None]).astype(np.float32)

    def _decode_channel(
        self, decoder: constriction.stream.queue.RangeDecoder, channel: int, count: int, escaped: bool
    ) -> np.ndarray:
        if not escaped:
            model = self.clipped_models[channel]
            return decoder.decode(model, count).astype(np.int64) if model is not None else np.zeros(count, np.int64)
        row = decoder.decode(self.escaped_models[channel], count).astype(np.int64)
        outside = row == self.sizes[channel]
        if outside.any():
            row[outside] = _decode_escaped(decoder, int(outside.sum()))
        return row


def _chunks(lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For values of bit `lengths`, the chunks carrying their bits below the leading one, in coding order.

    (owner: which value each chunk belongs to, shift: the bits below the chunk, take: the chunk's bits),
    most significant chunk first, 16 bits each but a value's last. Vectorized: a hostile stream may
    escape every symbol, and decoding it must cost what decoding any stream of its size costs.
    """
    below = np.maximum(lengths - 1, 0)  # bits under the leading one
    counts = (below + _CHUNK_BITS - 1) // _CHUNK_BITS
    owner = np.repeat(np.arange(len(lengths)), counts)
    index = np.arange(len(owner)) - np.repeat(np.cumsum(counts) - counts, counts)
    left = below[owner] - _CHUNK_BITS * index  # bits still to carry when the chunk starts
    take = np.minimum(left, _CHUNK_BITS)
    return owner, left - take, take


def _encode_escaped(encoder: constriction.stream.queue.RangeEncoder, distances: np.ndarray) -> None:
    """Bypass-code out-of-support distances exactly: zigzag, bit length, then the bits below the top one."""
    zigzag = np.where(distances >= 0, 2 * distances, -2 * distances - 1).astype(np.int64)
    # Bit lengths, exactly: below 2^53 an int64 is exact in float64, and frexp's exponent of n > 0 is
    # its bit length (no libm rounding, unlike a log2); frexp(0) gives 0, the length of 0.
    lengths = np.frexp(zigzag.astype(np.float64))[1].astype(np.int64)
    encoder.encode(lengths.astype(np.int32), _LENGTH_MODEL)
    owner, shift, take = _chunks(lengths)
    if len(owner):
        chunks = (zigzag[owner] >> shift) & ((1 << take) - 1)
        encoder.encode(chunks.astype(np.int32), _CHUNK_FAMILY, (1 << take).astype(np.int32))


def _decode_escaped(decoder: constriction.stream.queue.RangeDecoder, count: int) -> np.ndarray:
    """`count` escaped distances, as `_encode_escaped` wrote them."""
    lengths = decoder.decode(_LENGTH_MODEL, count).astype(np.int64)
    zigzag = np.where(lengths > 0, np.left_shift(1, np.maximum(lengths - 1, 0)), 0).astype(np.int64)
    owner, shift, take = _chunks(lengths)
    if len(owner):
        chunks = decoder.decode(_CHUNK_FAMILY, (1 << take).astype(np.int32)).astype(np.int64)
        np.add.at(zigzag, owner, chunks << shift)
    return np.where(zigzag % 2 == 0, zigzag // 2, -(zigzag + 1) // 2)
