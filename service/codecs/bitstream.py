"""The compressed-image bitstream: header, entropy-coded latent tiles, checksum, optional signature.

Format 2, written by this release (big-endian integers):

    magic "AEIC" | format version u8 = 2 | flags u8 (bit 0: signed; bit 1: escape-coded payloads;
    bit 2: quality field; the other bits must be 0)
    | name length u8 | name (UTF-8) | model version u16
    | table hash (8 bytes, sha256 prefix of the entropy tables file) | height u32 | width u32
    | channels u8 (of the coded image: 3 = RGB, 1 = gray) | tile side u16 | tile count u32
    | when flag bit 2: quality u16 (the variable-rate codec's quality x 65535, service.codecs.hyperprior)
    | per tile: payload length u32, payload
    | crc32 u32 of everything before it
    | when signed: HMAC-SHA256 (32 bytes) of everything before it, CRC included

Tile side 0 means one tile covering the whole image; a tile side S > 0 means ceil(H/S) x ceil(W/S)
tiles of S x S pixels (the last row and column cut to the image) in raster order (service.codecs.tiles:
S is a multiple of 64 from 128 up). Each tile is coded on its own. This release writes 3-channel
streams, and 1-channel ones for codecs with a gray variant (service.kinds.codec), untiled up to
AE_CODEC_TILE_SIDE pixels per side and tiled above it (service.kinds.codec_tiles).

Format 1, written by 0.1.0 and still decoded (as an unsigned stream):

    magic "AEIC" | format version u8 = 1 | name length u8 | name (UTF-8) | model version u16
    | table hash (8 bytes) | height u32 | width u32 | payload length u32 | payload | crc32 u32

Each payload is the rounded latent, channel by channel, range-coded with `constriction` using the
model's integer probability tables (service.codecs.entropy): exactly, with escapes for values outside a
table's support, when flag bit 1 is set (every stream this release writes); clipped to the supports in
streams written before it. The CRC catches accidental corruption only: anyone can write a
stream with a valid CRC, and a random payload decodes to some image. The HMAC, keyed with the service's
`AE_STREAM_KEY`, is what shows that this service wrote the stream and nobody altered it.

Decoding checks every field, and every length against the bytes present, before it allocates or
decodes anything: a truncated, corrupted, forged (with a key) or foreign stream is refused, never turned
into garbage pixels. The tables are integers and the coder's model is built from them the same way on
every machine, so the same bytes decode to the same latent everywhere.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from service.codecs.tiles import tile_side_problem
from service.errors import DecodingError

MAGIC = b"AEIC"
FORMAT_VERSION = 2  # the format this release writes
READABLE_FORMATS = (1, 2)
MIME = "application/octet-stream"

SIGNED = 0x01  # flags bit 0: an HMAC-SHA256 tag follows the CRC
ESCAPE_CODED = 0x02  # flags bit 1: payloads code out-of-table values exactly (service.codecs.entropy)
QUALITY = 0x04  # flags bit 2: a u16 quality follows the tile count (variable-rate codecs)
KNOWN_FLAGS = SIGNED | ESCAPE_CODED | QUALITY
TAG_BYTES = hashlib.sha256().digest_size
CRC_BYTES = 4
RGB_CHANNELS = 3

_FIXED = struct.Struct(">HQII")  # model version, table hash, height, width
_LAYOUT = struct.Struct(">BHI")  # format 2: channels, tile side, tile count
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


@dataclass(frozen=True)
class Header:
    """Everything in a stream but the tiles' payloads, the checksum and the signature."""

    name: str
    version: int
    table_hash: bytes
    height: int
    width: int
    channels: int = RGB_CHANNELS  # of the coded image: 3 (RGB) or 1 (gray)
    tile_side: int = 0  # 0: one tile covering the image
    escaped: bool = True  # payloads escape-coded (flag bit 1); False: clipped (streams before the flag)
    quality: int | None = None  # a variable-rate codec's quality as a u16 (flag bit 2); None: fixed-rate

    def tile_count(self) -> int:
        """How many tiles the layout holds: one untiled, else the grid of tile_side squares covering the image."""
        if self.tile_side == 0:
            return 1
        return -(-self.height // self.tile_side) * -(-self.width // self.tile_side)


@dataclass(frozen=True)
class Stream:
    """A parsed stream: its header, each tile's payload, and how it was written."""

    header: Header
    tiles: tuple[bytes, ...]
    format_version: int
    signed: bool


@dataclass(frozen=True)
class StreamAuthentication:
    """Which streams this service signs and decodes (`AE_STREAM_KEY`, `AE_STREAM_ACCEPT_UNSIGNED`).

    Without a key, streams are written unsigned and signed ones decode on their CRC alone (the tag
    cannot be checked). With a key, every stream written is signed, a stream decodes only if its tag
    matches, and unsigned streams are refused unless `accept_unsigned`.
    """

    key: bytes | None = field(default=None, repr=False)  # a secret: never in a repr, a log line or an answer
    accept_unsigned: bool = False

    def tag(self, signed_part: bytes) -> bytes:
        """The HMAC-SHA256 of `signed_part` under the key."""
        assert self.key is not None
        return hmac.new(self.key, signed_part, hashlib.sha256).digest()


UNAUTHENTICATED = StreamAuthentication()


# ---------------------------------------------------------------- writing


def pack_tiles(header: Header, tiles: Sequence[bytes], key: bytes | None = None) -> bytes:
    """Serialize a format 2 stream of `tiles` as given (signed when a key is given).

    The writer trusts its caller: it writes the tile count it is handed, so tests can build streams
    whose count contradicts their layout. The service writes one tile through `pack` and tiles through
    `service.kinds.codec_tiles`, whose grid always fits the header.
    """
    name = header.name.encode("utf-8")
    if len(name) > 255:
        raise ValueError(f"model name {header.name!r} is longer than a stream can hold (255 bytes)")
    flags = (SIGNED if key is not None else 0) | (ESCAPE_CODED if header.escaped else 0)
    flags |= QUALITY if header.quality is not None else 0
    parts = [
        MAGIC,
        bytes([FORMAT_VERSION, flags, len(name)]),
        name,
        _FIXED.pack(header.version, int.from_bytes(header.table_hash, "big"), header.height, header.width),
        _LAYOUT.pack(header.channels, header.tile_side, len(tiles)),
    ]
    if header.quality is not None:
        parts.append(_U16.pack(header.quality))
    for tile in tiles:
        parts += [_U32.pack(len(tile)), tile]
    body = b"".join(parts)
    stream = body + _U32.pack(zlib.crc32(body))
    if key is None:
        return stream
    return stream + StreamAuthentication(key).tag(stream)


def pack(header: Header, payload: bytes, key: bytes | None = None) -> bytes:
    """Serialize an untiled (one-tile) stream, signed when a key is given."""
    return pack_tiles(header, [payload], key)


# ---------------------------------------------------------------- reading


class _Reader:
    """Reads fields off the front of a stream's body, checking each length against the bytes left."""

    def __init__(self, body: bytes, at: int) -> None:
        self.body = body
        self.at = at

    @property
    def left(self) -> int:
        """Bytes not read yet."""
        return len(self.body) - self.at

    def take(self, size: int, what: str) -> bytes:
        """The next `size` bytes; 400 when fewer are left (checked before anything is copied)."""
        if size > self.left:
            raise DecodingError(f"stream is truncated: its {what} needs {size} bytes, {self.left} are left")
        chunk = self.body[self.at : self.at + size]
        self.at += size
        return chunk

    def u8(self, what: str) -> int:
        """The next byte as an integer."""
        return self.take(1, what)[0]

    def u32(self, what: str) -> int:
        """The next big-endian 32-bit unsigned integer."""
        (value,) = _U32.unpack(self.take(_U32.size, what))
        return value


def _read_prologue(data: bytes) -> tuple[int, bool, int]:
    """(format version, signed, bytes read) from the magic, the format version and the flags."""
    if len(data) < len(MAGIC) + 1 or data[: len(MAGIC)] != MAGIC:
        raise DecodingError("not a compressed-image stream (bad magic)")
    version = data[4]
    if version not in READABLE_FORMATS:
        readable = ", ".join(map(str, READABLE_FORMATS))
        raise DecodingError(f"unsupported stream format version {version} (this service reads {readable})")
    if version == 1:
        return version, False, 5
    if len(data) < 6:
        raise DecodingError("stream is truncated: it ends before its flags")
    flags = data[5]
    # Checked before the checksum: a flag this release does not know may change the trailer's layout,
    # and "made by a newer release" is the likely story, not corruption.
    if flags & ~KNOWN_FLAGS:
        raise DecodingError(
            f"stream flags 0x{flags:02x} set bits this service does not know (bits 0, signed, 1, escape-coded, "
            "and 2, quality, are defined): "
            "the stream was made by a newer release or is corrupted"
        )
    return version, bool(flags & SIGNED), 6


def _checked_body(data: bytes, signed: bool, prologue: int) -> bytes:
    """The bytes before the CRC, once the CRC matches them."""
    trailer = CRC_BYTES + (TAG_BYTES if signed else 0)
    if len(data) < prologue + trailer:
        raise DecodingError("stream is truncated: it ends before its checksum")
    checked = data[:-TAG_BYTES] if signed else data
    body, checksum = checked[:-CRC_BYTES], checked[-CRC_BYTES:]
    if zlib.crc32(body) != int.from_bytes(checksum, "big"):
        raise DecodingError("stream checksum mismatch: truncated or corrupted")
    return body


def _authenticate(data: bytes, format_version: int, signed: bool, auth: StreamAuthentication) -> None:
    """400 unless `auth` lets this stream decode; the tag is compared in constant time."""
    if auth.key is None:
        return  # signed or not, the CRC is all this server can check
    if not signed:
        if auth.accept_unsigned:
            return
        which = "a format 1 stream, which carries no signature" if format_version == 1 else "an unsigned stream"
        raise DecodingError(f"stream is not signed ({which}): this service decodes only streams it signed")
    if not hmac.compare_digest(data[-TAG_BYTES:], auth.tag(data[:-TAG_BYTES])):
        raise DecodingError("stream signature does not match: it was not made by this service or was altered")


def _read_name_and_size(reader: _Reader) -> tuple[str, int, bytes, int, int]:
    """(model name, model version, table hash, height, width): the fields both formats share."""
    raw_name = reader.take(reader.u8("model name length"), "model name")
    try:
        name = raw_name.decode("utf-8")
    except UnicodeDecodeError as error:
        raise DecodingError("stream model name is not UTF-8") from error
    version, table_hash, height, width = _FIXED.unpack(reader.take(_FIXED.size, "model version, table hash and size"))
    if height == 0 or width == 0:
        raise DecodingError("stream declares an empty image")
    return name, version, table_hash.to_bytes(8, "big"), height, width


def _read_format_1(reader: _Reader) -> tuple[Header, tuple[bytes, ...]]:
    """The header and the single payload of a format 1 stream."""
    header = Header(*_read_name_and_size(reader), escaped=False)
    length = reader.u32("payload length")
    if length != reader.left:
        raise DecodingError("stream payload length does not match its header")
    return header, (reader.take(length, "payload"),)


def _read_format_2(reader: _Reader, flags: int) -> tuple[Header, tuple[bytes, ...]]:
    """The header and the tiles of a format 2 stream; its channels and layout are checked first."""
    name, version, table_hash, height, width = _read_name_and_size(reader)
    channels = reader.u8("channel count")
    tile_side = int.from_bytes(reader.take(2, "tile side"), "big")
    count = reader.u32("tile count")
    quality = _U16.unpack(reader.take(_U16.size, "quality"))[0] if flags & QUALITY else None
    if channels not in (1, RGB_CHANNELS):
        raise DecodingError(f"stream declares {channels} channels: a stream codes 1 (gray) or 3 (RGB)")
    header = Header(name, version, table_hash, height, width, channels, tile_side, bool(flags & ESCAPE_CODED), quality)
    expected = header.tile_count()
    if count != expected:
        layout = "an untiled stream (tile side 0)" if tile_side == 0 else f"tiles of {tile_side} pixels"
        raise DecodingError(
            f"stream declares {count} tiles, but {layout} over {height}x{width} pixels holds {expected}"
        )
    if (problem := tile_side_problem(tile_side)) is not None:
        # Refused before the tile table is read: tiny tiles would make a graph run per few pixels.
        raise DecodingError(f"stream declares tiles of {tile_side} pixels: {problem}")
    if count * _U32.size > reader.left:
        raise DecodingError(f"stream is truncated: its table of {count} tiles does not fit in {reader.left} bytes")
    tiles = tuple(reader.take(reader.u32(f"tile {index} length"), f"tile {index} payload") for index in range(count))
    if reader.left:
        raise DecodingError(f"stream has {reader.left} bytes after its last tile, before its checksum")
    return header, tiles


def read_stream(data: bytes, auth: StreamAuthentication = UNAUTHENTICATED) -> Stream:
    """Parse a stream: structure, checksum, then (with a key) its signature, then every field.

    Not yet which model it belongs to: that is the caller's check. The signature is checked before any
    field past the flags is read, so a server holding a key never parses a forged header.
    """
    format_version, signed, prologue = _read_prologue(data)
    body = _checked_body(data, signed, prologue)
    _authenticate(data, format_version, signed, auth)
    reader = _Reader(body, prologue)
    if format_version == 1:
        header, tiles = _read_format_1(reader)
    else:
        header, tiles = _read_format_2(reader, flags=data[5])
    return Stream(header, tiles, format_version, signed)


class Origin(NamedTuple):
    """Who wrote a stream and what it codes, from the front of its header."""

    name: str
    version: int
    channels: int
    tile_side: int = 0


def read_origin(data: bytes) -> Origin:
    """The model name and version a stream's header names, and its channels; 400 for anything else.

    Reads only the fixed-size front of the header (magic, format, flags, name, version, table hash, size,
    channels): constant work whatever the body's size, with the same field readers, and so the same
    refusals, as `read_stream`. The checksum, the signature and the payload are checked when the stream
    is decoded, and the channel count then too (a format 1 stream is RGB).
    """
    format_version, _, prologue = _read_prologue(data)
    reader = _Reader(data, prologue)
    name, version, *_ = _read_name_and_size(reader)
    if format_version == 1:
        return Origin(name, version, RGB_CHANNELS)
    channels = reader.u8("channel count")
    return Origin(name, version, channels, int.from_bytes(reader.take(2, "tile side"), "big"))


def unpack(data: bytes, auth: StreamAuthentication = UNAUTHENTICATED) -> tuple[Header, bytes]:
    """The header and the payload of an untiled stream; 400 for a tiled one (read it with `read_stream`)."""
    stream = read_stream(data, auth)
    if len(stream.tiles) != 1:
        raise DecodingError(f"stream holds {len(stream.tiles)} tiles where one was expected")
    return stream.header, stream.tiles[0]
