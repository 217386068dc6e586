"""Container overhead: what an image file may carry besides its pixels, checked before Pillow reads it.

Pillow walks a container's structure in Python, one step per chunk, segment, block or fill byte, so a
body's cost can grow with its structure rather than its pixels. Measured on the 2-core dev machine
(Pillow 13): an 8x8 PNG carrying 2 million empty ancillary chunks (32 MB) took 5.5 s to open, an 8x8
JPEG with 30 MB of 0xFF fill bytes before its first marker 49.7 s, 8 million empty APP1 segments
11.6 s, an 8x8 GIF with 6 million comment blocks 2.9 s; a TIFF tag of 7 million LONG values became a
142 MB tuple. Each walk here costs at most `MAX_PIECES` cheap steps and refuses, with 413, a body whose
structure is over these bounds, however small its image:

- metadata (PNG chunks other than IHDR, PLTE, IDAT, fdAT and IEND; JPEG segments before the first scan;
  GIF extension blocks before the first image; the first TIFF directory's entries): at most
  `MAX_METADATA_PIECES` pieces and `MAX_METADATA_BYTES` bytes in all;
- structure in all (PNG chunks, JPEG segments and fill bytes, GIF sub-blocks): at most `MAX_PIECES`.

Real files are far inside: a camera JPEG has ~15 segments and under 1 MB of EXIF, XMP and ICC; a PNG
written by Pillow, libpng or fpng has at most a few thousand IDAT chunks for 32 MB. A walk stops at the
first sign of a malformed structure and lets Pillow refuse the body (400); only what is well-formed
enough to cost something is counted. WebP and BMP are parsed by C code or a fixed header and are not walked.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass

from service.errors import PayloadTooLargeError

MAX_METADATA_PIECES = 1024
MAX_METADATA_BYTES = 8 * 1024 * 1024
MAX_PIECES = 65536

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# Chunks that carry the image itself (fdAT: the frames of an APNG after the first); the rest is metadata.
_PNG_IMAGE_CHUNKS = frozenset({b"IHDR", b"PLTE", b"IDAT", b"fdAT", b"IEND"})
_JPEG_FILL = re.compile(rb"\xff+")
# JPEG markers without a length field: SOI, EOI, TEM, RST0-7.
_JPEG_STANDALONE = frozenset({0xD8, 0xD9, 0x01, *range(0xD0, 0xD8)})
_JPEG_SOS = 0xDA
# TIFF field types -> bytes per value (1 BYTE, 2 ASCII, 3 SHORT, 4 LONG, 5 RATIONAL, 6 SBYTE, 7 UNDEFINED,
# 8 SSHORT, 9 SLONG, 10 SRATIONAL, 11 FLOAT, 12 DOUBLE, 13 IFD, 16 LONG8, 17 SLONG8, 18 IFD8).
_TIFF_TYPE_SIZES = {
    **{1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4},
    **{10: 8, 11: 4, 12: 8, 13: 4, 16: 8, 17: 8, 18: 8},
}
_REMEDY = "strip the file's metadata (or re-save it with any image tool) and send it again"


@dataclass
class _Tally:
    """Counts of one walk, refusing as soon as a bound is passed (so a walk never outlasts its bounds)."""

    kind: str
    pieces: int = 0
    metadata_pieces: int = 0
    metadata_bytes: int = 0

    def piece(self, count: int = 1) -> None:
        self.pieces += count
        if self.pieces > MAX_PIECES:
            raise PayloadTooLargeError(
                f"the {self.kind} has more than {MAX_PIECES} structural pieces (chunks, segments, blocks "
                f"or fill bytes) for one image; {_REMEDY}"
            )

    def metadata(self, size: int) -> None:
        self.metadata_pieces += 1
        self.metadata_bytes += size
        if self.metadata_pieces > MAX_METADATA_PIECES:
            raise PayloadTooLargeError(
                f"the {self.kind} carries more than {MAX_METADATA_PIECES} metadata pieces; {_REMEDY}"
            )
        if self.metadata_bytes > MAX_METADATA_BYTES:
            raise PayloadTooLargeError(
                f"the {self.kind} carries more than {MAX_METADATA_BYTES // (1024 * 1024)} MiB of metadata; {_REMEDY}"
            )


def check_container(data: bytes) -> None:
    """413 when the container of an image (PNG, JPEG, GIF, TIFF) carries more than an image needs."""
    if data.startswith(_PNG_SIGNATURE):
        _walk_png(data)
    elif data.startswith(b"\xff\xd8"):
        _walk_jpeg(data)
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        _walk_gif(data)
    elif data[:4] in (b"II*\x00", b"MM\x00*"):
        _walk_tiff(data)


def _walk_png(data: bytes) -> None:
    tally = _Tally("PNG")
    at = len(_PNG_SIGNATURE)
    while at + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, at)
        tally.piece()
        if kind not in _PNG_IMAGE_CHUNKS:
            tally.metadata(length)
        if kind == b"IEND":
            return
        at += 12 + length  # length, type, data, CRC


def _walk_jpeg(data: bytes) -> None:
    tally = _Tally("JPEG")
    at = 2  # after SOI
    while at < len(data):
        fill = _JPEG_FILL.match(data, at)
        if fill is None:
            return  # not a marker: malformed, Pillow refuses it
        # Each marker and each fill byte before it is one step of Pillow's marker loop.
        tally.piece(fill.end() - at)
        at = fill.end()
        if at >= len(data):
            return
        marker = data[at]
        at += 1
        if marker in _JPEG_STANDALONE:
            continue
        if at + 2 > len(data):
            return
        (length,) = struct.unpack_from(">H", data, at)
        if marker == _JPEG_SOS:
            return  # entropy-coded data follows: libjpeg's C code reads the rest
        if 0xE0 <= marker <= 0xEF or marker == 0xFE:  # APPn, COM
            tally.metadata(length)
        at += length


def _walk_gif(data: bytes) -> None:
    tally = _Tally("GIF")
    if len(data) < 13:
        return
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # logical screen descriptor, global colours
    while at < len(data):
        introducer = data[at]
        if introducer != 0x21:  # 0x2C: the first image (Pillow stops there), 0x3B: trailer, else malformed
            return
        at += 2  # introducer, label
        size = 0
        while at < len(data):
            block = data[at]
            tally.piece()
            at += 1 + block
            size += block
            if block == 0:
                break
        tally.metadata(size)


def _walk_tiff(data: bytes) -> None:
    tally = _Tally("TIFF")
    if len(data) < 8:
        return  # a byte order mark with no directory offset: Pillow refuses it (400)
    order = "<" if data[:2] == b"II" else ">"
    (offset,) = struct.unpack_from(order + "I", data, 4)
    if offset + 2 > len(data):
        return
    (entries,) = struct.unpack_from(order + "H", data, offset)
    for index in range(entries):
        at = offset + 2 + 12 * index
        if at + 12 > len(data):
            return
        _tag, kind, count = struct.unpack_from(order + "HHI", data, at)
        size = _TIFF_TYPE_SIZES.get(kind, 1) * count
        # Pillow turns every value into a Python object: a numeric tag of many values costs ~20x its bytes.
        tally.metadata(size if size > 4 else 0)
