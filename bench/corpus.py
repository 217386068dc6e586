"""A corpus of broken, hostile and unusual requests, each with the answer it must get.

    python -m bench.corpus OUT_DIR      # writes every case's body and cases.json (for curl or other tools)

`build_cases()` is the generator; tests/service/test_corpus.py runs the cases against a real `ae-serve`
on the default models. Bodies are generated, never committed. Each case belongs to a class (`group`),
counted by `count_by_group`; most hostile cases are well-formed containers (a valid PNG, `.npy` header,
JSON document or stream header) carrying one hostile field, so that they reach the code behind the first
parser instead of being refused by it.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import sys
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image

from service.codecs.bitstream import Header, pack, unpack

PNG = "image/png"
JSON = "application/json"
NPY = "application/x-npy"
STREAM = "application/octet-stream"


@dataclass(frozen=True)
class Case:
    """One request and the status (and error code) it must get.

    Header values are text as HTTP carries it, Latin-1: send them encoded so (`"\u00b2"` is the byte 0xB2).
    """

    name: str
    path: str
    body: bytes
    content_type: str | None
    status: int
    code: str | None = None
    method: str = "POST"
    headers: dict[str, str] = field(default_factory=dict)
    group: str = ""  # the class of input it tries (set by `build_cases` from the generator)


@dataclass(frozen=True)
class Targets:
    """Model names the corpus aims at (None: that kind of model is not served, its cases are skipped)."""

    image: str | None = "image-conv"
    sequence: str | None = "ecg-embed"
    codec: str | None = "image-codec-q2"
    reconstruct_only: str | None = "image-denoise"
    anomaly: str | None = "ecg-anomaly"  # a sequence model that reconstructs
    max_body_bytes: int = 32 * 1024 * 1024
    max_batch: int = 256
    max_length: int = 2000


# ---------------------------------------------------------------- generators


def image_bytes(array: np.ndarray, fmt: str = "PNG", mode: str | None = None, **options: object) -> bytes:
    """Encode an array with Pillow."""
    out = io.BytesIO()
    Image.fromarray(array, mode).save(out, format=fmt, **options)
    return out.getvalue()


def noise(height: int, width: int, channels: int = 3, seed: int = 0) -> np.ndarray:
    """Random uint8 pixels."""
    shape = (height, width, channels) if channels > 1 else (height, width)
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def png_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a size its few data bytes do not hold (a decompression bomb's header)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


def animated_gif() -> bytes:
    """A three-frame GIF."""
    frames = [Image.fromarray(noise(16, 16, seed=s)).convert("P") for s in range(3)]
    out = io.BytesIO()
    frames[0].save(out, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return out.getvalue()


def latent_json(shape: list[int], fill: float = 0.0) -> bytes:
    """A latent in the JSON form."""
    data = np.full(shape, fill, "<f4").tobytes()
    return json.dumps({"shape": shape, "dtype": "float32", "data": base64.b64encode(data).decode()}).encode()


def npy_bytes(array: np.ndarray) -> bytes:
    """An array as .npy."""
    out = io.BytesIO()
    np.save(out, array, allow_pickle=True)
    return out.getvalue()


def seqs(series: object) -> bytes:
    """A sequences request body."""
    return json.dumps({"sequences": series}).encode()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_with_chunks(extra: bytes, height: int = 8, width: int = 8) -> bytes:
    """A valid PNG with `extra` (encoded chunks) between its header and its image data."""
    png = image_bytes(noise(height, width))
    ihdr_end = 8 + 25  # signature, IHDR
    return png[:ihdr_end] + extra + png[ihdr_end:]


def png_split_idat(pieces: int) -> bytes:
    """A valid 8x8 PNG whose image data is spread over `pieces` IDAT chunks (empty deflate blocks between)."""
    raw = b"".join(b"\0" + noise(1, 8, seed=row).tobytes() for row in range(8))
    compressor = zlib.compressobj()
    head = compressor.compress(raw) + compressor.flush(zlib.Z_SYNC_FLUSH)
    tail = b"\x03\x00" + struct.pack(">I", zlib.adler32(raw))  # an empty final block, the checksum
    empty = png_chunk(b"IDAT", b"\x00\x00\x00\xff\xff")  # an empty stored block each
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", 8, 8, 8, 2, 0, 0, 0))
    body = png_chunk(b"IDAT", head) + empty * (pieces - 2) + png_chunk(b"IDAT", tail)
    return b"\x89PNG\r\n\x1a\n" + ihdr + body + png_chunk(b"IEND", b"")


def jpeg_with(segments: bytes, fill: int = 0) -> bytes:
    """A valid JPEG with `fill` 0xFF fill bytes and then `segments` (encoded markers) right after SOI."""
    jpeg = image_bytes(noise(8, 8), "JPEG")
    return jpeg[:2] + b"\xff" * fill + segments + jpeg[2:]


def jpeg_segment(marker: int, data: bytes) -> bytes:
    """One JPEG marker segment (APPn, COM, ...)."""
    return bytes([0xFF, marker]) + struct.pack(">H", len(data) + 2) + data


def gif_with_extensions(extensions: bytes) -> bytes:
    """A valid 8x8 GIF with `extensions` (encoded extension blocks) before its image."""
    out = io.BytesIO()
    Image.fromarray(noise(8, 8)).convert("P").save(out, format="GIF")
    gif = out.getvalue()
    first_image = _gif_first_image(gif)
    return gif[:first_image] + extensions + gif[first_image:]


def _gif_first_image(gif: bytes) -> int:
    """Where a GIF's first image descriptor starts (after the header, colours and any extensions)."""
    at = 13 + (3 << ((gif[10] & 7) + 1) if gif[10] & 0x80 else 0)
    while gif[at] == 0x21:  # an extension: introducer, label, sub-blocks up to an empty one
        at += 2
        while gif[at]:
            at += 1 + gif[at]
        at += 1
    return at


def gif_comment(text: bytes, block: int = 255) -> bytes:
    """A GIF comment extension holding `text` in sub-blocks of `block` bytes."""
    parts = [text[i : i + block] for i in range(0, len(text), block)]
    return b"\x21\xfe" + b"".join(bytes([len(p)]) + p for p in parts) + b"\x00"


def tiff_rgb(extra: Sequence[tuple[int, int, int, bytes]] = (), entries_padding: int = 0) -> bytes:
    """A valid little-endian 8x8 RGB TIFF with `extra` fields and `entries_padding` private ones.

    `extra`: (tag, type, count, value bytes); the private fields are tags 32768 and up, one SHORT each.
    """
    pixels = noise(8, 8).tobytes()
    base = [(256, 3, 1, 8), (257, 3, 1, 8), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 2)]
    base += [(277, 3, 1, 3), (278, 3, 1, 8), (279, 4, 1, len(pixels))]
    tags: list[tuple[int, int, int, bytes]] = [(t, k, c, struct.pack("<I", v)) for t, k, c, v in base]
    tags += list(extra)
    tags += [(32768 + i, 3, 1, struct.pack("<I", 1)) for i in range(entries_padding)]
    tags.append((273, 4, 1, b""))  # strip offset, filled in below
    tags.sort(key=lambda t: t[0])
    ifd_size = 2 + 12 * len(tags) + 4
    data_at = 8 + ifd_size
    out_of_line = b""
    entries = b""
    for tag, kind, count, value in tags:
        if tag == 273:
            value = b"<pixels>"
        if value == b"<pixels>":
            field_bytes = struct.pack("<I", 0xFFFFFFFF)  # placeholder
        elif len(value) <= 4:
            field_bytes = value.ljust(4, b"\0")
        else:
            field_bytes = struct.pack("<I", data_at + len(out_of_line))
            out_of_line += value
        entries += struct.pack("<HHI", tag, kind, count) + field_bytes
    pixel_at = data_at + len(out_of_line)
    entries = entries.replace(struct.pack("<I", 0xFFFFFFFF), struct.pack("<I", pixel_at), 1)
    header = b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags))
    return header + entries + struct.pack("<I", 0) + out_of_line + pixels


def other_format(fmt: str, mode: str = "RGB") -> bytes:
    """An image in a format Pillow reads but the API does not accept."""
    if mode == "F":
        return image_bytes(noise(8, 8, 1).astype(np.float32), fmt, mode="F")
    return image_bytes(noise(8, 8), fmt)


def dds_mutated() -> bytes:
    """A DDS file whose pixel-format flags name no format (Pillow's reader raised NotImplementedError: 500)."""
    dds = bytearray(other_format("DDS"))
    dds[80:84] = struct.pack("<I", 0x7FFF0000)  # ddspf.dwFlags
    return bytes(dds)


def npy_header(shape: object, descr: str = "<f4", data: bytes = b"\0" * 16, version: bytes = b"\x01\x00") -> bytes:
    """A `.npy` body from a header dict written by hand (so any shape, even one NumPy would refuse)."""
    text = f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}".encode()
    text += b" " * (-(10 + len(text) + 1) % 64) + b"\n"
    if version == b"\x01\x00":
        return b"\x93NUMPY" + version + struct.pack("<H", len(text)) + text + data
    return b"\x93NUMPY" + version + struct.pack("<I", len(text)) + text + data


def latent_json_raw(shape: object, data: str = "", extra: str = "") -> bytes:
    """A JSON latent written as text, so that shapes may hold numbers `json.dumps` would not write."""
    return f'{{"shape": {shape}, "dtype": "float32", "data": "{data}"{extra}}}'.encode()


# ---------------------------------------------------------------- cases


def _image_cases(m: str, t: Targets) -> list[Case]:
    p = f"/v1/models/{m}/reconstruct"
    good = image_bytes(noise(24, 40))
    rgb = noise(20, 30)
    return [
        Case("zero-byte-image", p, b"", PNG, 400, "undecodable_body"),
        Case("truncated-png", p, good[: len(good) // 3], PNG, 400, "undecodable_body"),
        Case("truncated-jpeg", p, image_bytes(rgb, "JPEG")[:200], "image/jpeg", 400, "undecodable_body"),
        Case("garbage-as-png", p, b"this is not an image" * 10, PNG, 400, "undecodable_body"),
        Case("png-claims-100000x100000", p, png_claiming(100_000, 100_000), PNG, 413, "payload_too_large"),
        Case("1x1", p, image_bytes(noise(1, 1)), PNG, 200),
        # A strip runs padded to the stride: a side is capped (AE_MAX_IMAGE_SIDE, 16384 by default).
        Case("1x16384", p, image_bytes(noise(1, 16_384)), PNG, 200),
        Case("1x100000", p, image_bytes(noise(1, 100_000)), PNG, 413, "payload_too_large"),
        Case("cmyk-jpeg", p, image_bytes(noise(20, 30, 4), "JPEG", mode="CMYK"), "image/jpeg", 200),
        Case("16-bit-png", p, image_bytes(np.full((20, 30), 50000, np.uint16)), PNG, 200),
        Case("animated-gif", p, animated_gif(), "image/gif", 200),
        Case("palette-png", p, image_bytes(np.asarray(Image.fromarray(rgb).convert("P"))), PNG, 200),
        Case("rgba-png", p, image_bytes(noise(20, 30, 4)), PNG, 200),
        Case("grayscale-png", p, image_bytes(noise(20, 30, 1)), PNG, 200),
        Case("webp", p, image_bytes(rgb, "WEBP"), "image/webp", 200),
        Case("tiff", p, image_bytes(rgb, "TIFF"), "image/tiff", 200),
        Case("bmp", p, image_bytes(rgb, "BMP"), "image/bmp", 200),
        Case("image-as-text-plain", p, good, "text/plain", 415, "unsupported_media_type"),
        Case("image-without-content-type", p, good, None, 415, "unsupported_media_type"),
        Case(
            "multipart-without-file",
            p,
            b'--x\r\nContent-Disposition: form-data; name="other"\r\n\r\nv\r\n--x--\r\n',
            "multipart/form-data; boundary=x",
            422,
            "invalid_input",
        ),
        Case("multipart-broken", p, b"--x\r\nnot a part", "multipart/form-data; boundary=x", 400, "undecodable_body"),
        Case("body-over-limit", p, b"\0" * (t.max_body_bytes + 1), PNG, 413, "payload_too_large"),
        Case("unacceptable-accept", p, good, PNG, 406, "not_acceptable", headers={"accept": "text/csv"}),
        Case("latent-wrong-shape", f"/v1/models/{m}/decode", latent_json([3, 2, 2]), JSON, 422, "invalid_input"),
        Case(
            "latent-bad-base64",
            f"/v1/models/{m}/decode",
            json.dumps({"shape": [8, 1, 1], "dtype": "float32", "data": "!!"}).encode(),
            JSON,
            400,
            "undecodable_body",
        ),
        Case(
            "latent-float64",
            f"/v1/models/{m}/decode",
            json.dumps({"shape": [1], "dtype": "float64", "data": ""}).encode(),
            JSON,
            422,
            "invalid_input",
        ),
        Case("latent-nan", f"/v1/models/{m}/decode", latent_json([8, 1, 1], float("nan")), JSON, 422, "invalid_input"),
        Case(
            "latent-npy-pickled-object",
            f"/v1/models/{m}/decode",
            npy_bytes(np.array([{"a": 1}], dtype=object)),
            NPY,
            400,
            "undecodable_body",
        ),
        Case("latent-npy-strings", f"/v1/models/{m}/decode", npy_bytes(np.array(["x"])), NPY, 422, "invalid_input"),
        Case(
            "latent-too-large-to-decode",
            f"/v1/models/{m}/decode",
            latent_json([8, 600, 600]),
            JSON,
            413,
            "payload_too_large",
        ),
    ]


def _sequence_cases(m: str, t: Targets) -> list[Case]:
    p = f"/v1/models/{m}/encode"
    return [
        Case("non-utf8-json", p, b"\xff\xfe{", JSON, 400, "undecodable_body"),
        Case("broken-json", p, b'{"sequences": [[1, 2', JSON, 400, "undecodable_body"),
        Case("deeply-nested-json", p, b"[" * 50_000 + b"]" * 50_000, JSON, 400, "undecodable_body"),
        Case("nan", p, b'{"sequences": [[1, NaN, 3]]}', JSON, 422, "invalid_input"),
        Case("inf", p, b'{"sequences": [[1, -Infinity]]}', JSON, 422, "invalid_input"),
        Case("strings-in-series", p, seqs([[1, "two", 3]]), JSON, 422, "invalid_input"),
        Case("booleans-in-series", p, seqs([[True, False]]), JSON, 422, "invalid_input"),
        Case("null-series", p, seqs([None]), JSON, 422, "invalid_input"),
        Case("ragged-steps", p, seqs([[[1], [2, 3]]]), JSON, 422, "invalid_input"),
        Case("wrong-feature-count", p, seqs([[[1, 2], [3, 4]]]), JSON, 422, "invalid_input"),
        Case("empty-series", p, seqs([[1, 2], []]), JSON, 422, "invalid_input"),
        Case("empty-batch", p, seqs([]), JSON, 422, "invalid_input"),
        Case("very-long-series", p, seqs([[0.5] * (t.max_length + 1)]), JSON, 422, "invalid_input"),
        Case("oversized-batch", p, seqs([[1.0, 2.0]] * (t.max_batch + 1)), JSON, 422, "invalid_input"),
        Case("not-an-object", p, b"[1, 2, 3]", JSON, 422, "invalid_input"),
        Case("wrong-key", p, b'{"series": [[1, 2]]}', JSON, 422, "invalid_input"),
        Case("json-as-text-plain", p, seqs([[1, 2]]), "text/plain", 415, "unsupported_media_type"),
        Case("image-to-sequence-model", p, image_bytes(noise(8, 8)), PNG, 415, "unsupported_media_type"),
        Case(
            "decode-wrong-embedding-size",
            f"/v1/models/{m}/decode",
            json.dumps({"embeddings": [[0.0] * 3], "lengths": [10]}).encode(),
            JSON,
            422,
            "invalid_input",
        ),
        Case(
            "decode-negative-length",
            f"/v1/models/{m}/decode",
            json.dumps({"embeddings": [[0.0] * 3], "lengths": [-1]}).encode(),
            JSON,
            422,
            "invalid_input",
        ),
        Case("good-sequences", p, seqs([[0.1, 0.5, 0.9, 0.3], [1.0, 2.0]]), JSON, 200),
    ]


def _codec_cases(m: str, stream: bytes) -> list[Case]:
    p = f"/v1/models/{m}/decode"
    flipped = bytearray(stream)
    flipped[len(stream) // 2] ^= 0x01
    header, payload = unpack(stream)
    foreign = pack(replace(header, name="some-other-codec"), payload)  # well-formed, another model's
    return [
        Case("stream-empty", p, b"", STREAM, 400, "undecodable_body"),
        Case("stream-truncated", p, stream[: len(stream) // 2], STREAM, 400, "undecodable_body"),
        Case("stream-corrupted", p, bytes(flipped), STREAM, 400, "undecodable_body"),
        Case("stream-foreign", p, foreign, STREAM, 400, "undecodable_body"),
        Case("stream-random-bytes", p, np.random.default_rng(3).bytes(500), STREAM, 400, "undecodable_body"),
        Case("stream-as-png", p, stream, PNG, 415, "unsupported_media_type"),
        Case("stream-valid", p, stream, STREAM, 200),
        *_stream_format_cases(p, header, payload),
    ]


def stream_format_2(
    header: Header, tile_table: bytes, flags: int = 0, tile_count: int = 1, after_tiles: bytes = b"", tag: bytes = b""
) -> bytes:
    """A format 2 stream with every field as given and a valid CRC (layout: service/codecs/bitstream.py)."""
    name = header.name.encode()
    fixed = struct.pack(">HQII", header.version, int.from_bytes(header.table_hash, "big"), header.height, header.width)
    layout = struct.pack(">BHI", header.channels, header.tile_side, tile_count)
    body = b"AEIC" + bytes([2, flags, len(name)]) + name + fixed + layout + tile_table + after_tiles
    return body + struct.pack(">I", zlib.crc32(body)) + tag


def stream_format_1(header: Header, payload: bytes) -> bytes:
    """The same stream in format 1, the layout 0.1.0 wrote (still decoded)."""
    name = header.name.encode()
    fixed = struct.pack(">HQII", header.version, int.from_bytes(header.table_hash, "big"), header.height, header.width)
    body = b"AEIC" + bytes([1, len(name)]) + name + fixed + struct.pack(">I", len(payload)) + payload
    return body + struct.pack(">I", zlib.crc32(body))


def _stream_format_cases(p: str, header: Header, payload: bytes) -> list[Case]:
    """Format 2 streams (CRC valid) with one field this release cannot honour each, and format 1 still served.

    The server runs without AE_STREAM_KEY, so a signed stream decodes on its CRC alone (tests/service/
    test_stream_format.py covers a server with a key).
    """
    tile = struct.pack(">I", len(payload)) + payload
    tiled = replace(header, tile_side=16)
    bad = "undecodable_body"

    def case(name: str, body: bytes, status: int = 400, code: str | None = bad) -> Case:
        return Case(f"stream-{name}", p, body, STREAM, status, code)

    return [
        case("format-1-served", stream_format_1(header, payload), 200, None),
        case("signed-unverifiable-served", stream_format_2(header, tile, flags=0x01, tag=bytes(32)), 200, None),
        case("signed-shorter-than-tag", stream_format_2(header, tile, flags=0x01)[:40]),
        case("flags-unknown-bit", stream_format_2(header, tile, flags=0x04)),  # bit 1 is escape coding
        case("flags-all-bits", stream_format_2(header, tile, flags=0xFF)),
        case("channels-1", stream_format_2(replace(header, channels=1), tile)),
        case("channels-0", stream_format_2(replace(header, channels=0), tile)),
        case("channels-255", stream_format_2(replace(header, channels=255), tile)),
        case("tile-side-16", stream_format_2(tiled, tile * tiled.tile_count(), tile_count=tiled.tile_count())),
        case("tile-side-65535", stream_format_2(replace(header, tile_side=65535), tile)),
        case("tile-count-0", stream_format_2(header, b"", tile_count=0)),
        case("tile-count-2", stream_format_2(header, tile * 2, tile_count=2)),
        case("tile-count-2**32-1", stream_format_2(header, tile, tile_count=2**32 - 1)),
        case("tile-length-2**32-1", stream_format_2(header, struct.pack(">I", 2**32 - 1) + payload)),
        case("tile-table-truncated", stream_format_2(header, tile[:2])),
        case("tile-payload-truncated", stream_format_2(header, tile[:-8])),
        case("trailing-bytes", stream_format_2(header, tile, after_tiles=bytes(16))),
        case(
            "format-2-height-2**32-1",
            stream_format_2(replace(header, height=2**32 - 1), tile),
            413,
            "payload_too_large",
        ),
    ]


def _decoder_cases(m: str) -> list[Case]:
    """Formats Pillow reads but the API does not accept, failures inside accepted readers, declared vs sniffed."""
    p = f"/v1/models/{m}/reconstruct"
    undecodable = [
        Case(f"{fmt.lower()}-as-png", p, other_format(fmt), PNG, 400, "undecodable_body")
        for fmt in ("PPM", "PCX", "TGA", "SGI", "ICO", "IM", "QOI", "EPS", "DDS", "JPEG2000")
    ]
    undecodable += [
        Case("spider-as-png", p, other_format("SPIDER", "F"), PNG, 400, "undecodable_body"),
        Case("dds-with-unknown-pixel-format", p, dds_mutated(), "image/x-dds", 400, "undecodable_body"),
        Case("ppm-as-its-own-type", p, other_format("PPM"), "image/x-portable-pixmap", 400, "undecodable_body"),
        # An XMP tag (700) holding numbers instead of bytes: Pillow's EXIF handling raised TypeError (500).
        Case("tiff-xmp-tag-of-numbers", p, tiff_rgb([(700, 4, 8, bytes(32))]), "image/tiff", 400, "undecodable_body"),
        Case("tiff-unknown-compression", p, _tiff_field(259, 12345), "image/tiff", 400, "undecodable_body"),
        Case("tiff-7-bits-per-sample", p, _tiff_field(258, 7), "image/tiff", 400, "undecodable_body"),
        Case("png-bad-ihdr-crc", p, _png_flip(30), PNG, 400, "undecodable_body"),
        Case("png-colour-type-5", p, _png_ihdr(colour=5), PNG, 400, "undecodable_body"),
        Case("png-bit-depth-3", p, _png_ihdr(depth=3), PNG, 400, "undecodable_body"),
        Case("png-zero-width", p, _png_ihdr(width=0), PNG, 400, "undecodable_body"),
        Case("png-idat-bad-zlib", p, _png_bad_zlib(), PNG, 400, "undecodable_body"),
        Case("gif-lzw-code-size-12", p, _gif_code_size(12), "image/gif", 400, "undecodable_body"),
        Case("bmp-7-bits-per-pixel", p, _bmp_bits(7), "image/bmp", 400, "undecodable_body"),
        Case("webp-truncated-riff", p, image_bytes(noise(16, 16), "WEBP")[:40], "image/webp", 400, "undecodable_body"),
        Case("jpeg-no-components", p, _jpeg_components(0), "image/jpeg", 400, "undecodable_body"),
    ]
    # The bytes decide the format (docs/hostile-input.md): a mislabelled accepted format is read.
    rgb = noise(12, 20)
    sniffed = [
        Case("png-labelled-jpeg", p, image_bytes(rgb), "image/jpeg", 200),
        Case("jpeg-labelled-png", p, image_bytes(rgb, "JPEG"), PNG, 200),
        Case("gif-labelled-webp", p, image_bytes(rgb, "GIF"), "image/webp", 200),
        Case("webp-labelled-bmp", p, image_bytes(rgb, "WEBP"), "image/bmp", 200),
        Case("bmp-labelled-tiff", p, image_bytes(rgb, "BMP"), "image/tiff", 200),
        Case("tiff-labelled-gif", p, image_bytes(rgb, "TIFF"), "image/gif", 200),
        Case("png-labelled-image-x-other", p, image_bytes(rgb), "image/x-other", 200),
    ]
    return undecodable + sniffed


def _tiff_field(tag: int, value: int) -> bytes:
    """The 8x8 RGB TIFF with one SHORT field set to `value`."""
    tiff = bytearray(tiff_rgb())
    entries = struct.unpack_from("<H", tiff, 8)[0]
    for index in range(entries):
        at = 10 + 12 * index
        if struct.unpack_from("<H", tiff, at)[0] == tag:
            struct.pack_into("<I", tiff, at + 8, value)
    return bytes(tiff)


def _png_flip(offset: int) -> bytes:
    png = bytearray(image_bytes(noise(8, 8)))
    png[offset] ^= 0xFF
    return bytes(png)


def _png_bad_zlib() -> bytes:
    """A PNG whose IDAT (CRC valid) holds bytes that are not a zlib stream."""
    png = image_bytes(noise(8, 8))
    idat = png.index(b"IDAT") - 4
    (length,) = struct.unpack_from(">I", png, idat)
    return png[:idat] + png_chunk(b"IDAT", b"\x78\x9c" + b"\xff" * (length - 2)) + png[idat + 12 + length :]


def _stream_length(stream: bytes, more: int) -> bytes:
    """A stream whose payload length field says `more` bytes more than it holds (its CRC recomputed)."""
    body = bytearray(stream[:-4])
    at = 6 + body[5] + 18  # magic, version, name length, name, model version, table hash, height, width
    struct.pack_into(">I", body, at, struct.unpack_from(">I", body, at)[0] + more)
    return bytes(body) + struct.pack(">I", zlib.crc32(bytes(body)))


def _png_ihdr(width: int = 8, height: int = 8, depth: int = 8, colour: int = 2) -> bytes:
    """A PNG whose IHDR (CRC valid) says what its image data does not hold."""
    png = image_bytes(noise(8, 8))
    ihdr = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0))
    return png[:8] + ihdr + png[8 + 25 :]


def _gif_code_size(size: int) -> bytes:
    plain = gif_with_extensions(b"")
    gif = bytearray(plain)
    gif[_gif_first_image(plain) + 10] = size  # LZW minimum code size, after the 10-byte image descriptor
    return bytes(gif)


def _bmp_bits(bits: int) -> bytes:
    bmp = bytearray(image_bytes(noise(8, 8), "BMP"))
    struct.pack_into("<H", bmp, 28, bits)
    return bytes(bmp)


def _jpeg_components(count: int) -> bytes:
    jpeg = bytearray(image_bytes(noise(8, 8), "JPEG"))
    sof = jpeg.index(b"\xff\xc0")
    jpeg[sof + 9] = count  # after marker, length, precision, height, width
    return bytes(jpeg)


def _number_cases(t: Targets) -> list[Case]:
    """Numbers JSON can write that float32 arithmetic cannot hold."""
    cases: list[Case] = []
    if t.sequence:
        p, d = f"/v1/models/{t.sequence}/encode", f"/v1/models/{t.sequence}/decode"
        huge = "1" + "0" * 400
        cases += [
            Case("int-of-5000-digits", p, b'{"sequences": [[1, ' + b"9" * 5000 + b"]]}", JSON, 422, "invalid_input"),
            Case("int-10**400", p, f'{{"sequences": [[1, {huge}, 3]]}}'.encode(), JSON, 422, "invalid_input"),
            Case("int-of-310-digits", p, f'{{"sequences": [[{"9" * 310}]]}}'.encode(), JSON, 422, "invalid_input"),
            Case("int-of-300-digits", p, f'{{"sequences": [[{"9" * 300}, 1]]}}'.encode(), JSON, 422, "invalid_input"),
            Case("float-1e999-with-nan", p, b'{"sequences": [[1e999, NaN]]}', JSON, 422, "invalid_input"),
            Case("values-1e308-encode", p, seqs([[1e308, 1e308, 1e308, -1e308, 5]]), JSON, 422, "invalid_input"),
            Case("values-plus-minus-1e308", p, seqs([[1e308, -1e308]]), JSON, 422, "invalid_input"),
            Case("value-1e31", p, seqs([[1.0, 1e31, 2.0]]), JSON, 422, "invalid_input"),
            Case("value-minus-1e31", p, seqs([[-1e31, 0.0]]), JSON, 422, "invalid_input"),
            Case("values-1e30-served", p, seqs([[1e30, -1e30, 0.5]]), JSON, 200),
            Case("int64-max-served", p, b'{"sequences": [[9223372036854775807, 1]]}', JSON, 200),
            Case("subnormal-served", p, seqs([[1e-320, 0.0, 5e-324]]), JSON, 200),
            Case(
                "embedding-int-10**400",
                d,
                f'{{"embeddings": [[{huge}]], "lengths": [4]}}'.encode(),
                JSON,
                422,
                "invalid_input",
            ),
            Case(
                "embedding-3.5e38",
                d,
                json.dumps({"embeddings": [[3.5e38] * 32], "lengths": [4]}).encode(),
                JSON,
                422,
                "invalid_input",
            ),
            Case("embedding-nan", d, b'{"embeddings": [[NaN]], "lengths": [4]}', JSON, 422, "invalid_input"),
            Case(
                "length-10**30",
                d,
                json.dumps({"embeddings": [[0.0] * 32], "lengths": [10**30]}).encode(),
                JSON,
                422,
                "invalid_input",
            ),
            Case(
                "length-2**64-1",
                d,
                json.dumps({"embeddings": [[0.0] * 32], "lengths": [2**64 - 1]}).encode(),
                JSON,
                422,
                "invalid_input",
            ),
            Case(
                "length-10**400",
                d,
                f'{{"embeddings": [[0.0]], "lengths": [{huge}]}}'.encode(),
                JSON,
                422,
                "invalid_input",
            ),
        ]
    if t.anomaly:
        r = f"/v1/models/{t.anomaly}/reconstruct"
        cases += [
            Case("values-1e308-reconstruct", r, seqs([[1e308, 1e308, 1e308, -1e308, 5]]), JSON, 422, "invalid_input"),
            Case("values-3e38-reconstruct", r, seqs([[3e38, -3e38, 3e38, -3e38]]), JSON, 422, "invalid_input"),
            Case("values-1e30-reconstruct-served", r, seqs([[1e30, -1e30, 1e30, -1e30]]), JSON, 200),
        ]
    if t.image:
        p = f"/v1/models/{t.image}/decode"
        huge = "1" + "0" * 400
        cases += [
            Case("latent-shape-10**400", p, latent_json_raw(f"[8, {huge}, 1]"), JSON, 422, "invalid_input"),
            Case(
                "latent-image-size-10**400",
                p,
                _latent_json_extra(f', "image_size": [{huge}, 8]'),
                JSON,
                422,
                "invalid_input",
            ),
            Case(
                "latent-image-size-float",
                p,
                _latent_json_extra(', "image_size": [16.0, 16]'),
                JSON,
                422,
                "invalid_input",
            ),
        ]
    return cases


def _latent_json_extra(extra: str) -> bytes:
    data = base64.b64encode(np.zeros((8, 2, 2), "<f4").tobytes()).decode()
    return latent_json_raw("[8, 2, 2]", data, extra)


def _shape_cases(m: str) -> list[Case]:
    """Latent shapes (JSON and `.npy` headers) and X-Image-* sizes: rank, signs, sizes, products, digits."""
    p = f"/v1/models/{m}/decode"
    good = np.zeros((8, 2, 2), "<f4")
    data16 = base64.b64encode(good.tobytes()).decode()
    bad = "invalid_input"
    json_cases = [
        Case("json-rank-65", p, latent_json_raw([1] * 65), JSON, 422, bad),
        Case("json-rank-9", p, latent_json_raw([1] * 9), JSON, 422, bad),
        Case("json-empty-shape", p, latent_json_raw("[]"), JSON, 422, bad),
        Case("json-shape-not-a-list", p, latent_json_raw('"8x2x2"'), JSON, 422, bad),
        Case("json-nested-shape", p, latent_json_raw("[[8], 2, 2]"), JSON, 422, bad),
        Case("json-zero-axis", p, latent_json_raw("[8, 0, 2]"), JSON, 422, bad),
        Case("json-negative-axis", p, latent_json_raw("[8, -2, 2]"), JSON, 422, bad),
        Case("json-boolean-axes", p, latent_json_raw("[8, true, true]"), JSON, 422, bad),
        Case("json-float-axis", p, latent_json_raw("[8, 2.0, 2]"), JSON, 422, bad),
        Case("json-string-axis", p, latent_json_raw('[8, "2", 2]'), JSON, 422, bad),
        Case("json-axis-2**40", p, latent_json_raw(f"[8, {2**40}, 1]"), JSON, 422, bad),
        Case("json-axis-2**63", p, latent_json_raw(f"[8, {2**63}, 1]"), JSON, 422, bad),
        # 8 * 2^31 * 2^31 wraps to 0 in int64: refused from the image it decodes to, not from empty data.
        Case("json-product-wraps", p, latent_json_raw(f"[8, {2**31}, {2**31}]"), JSON, 413, "payload_too_large"),
        Case("json-data-short", p, latent_json_raw("[8, 2, 2]", data16[:-8]), JSON, 422, bad),
        Case("json-data-long", p, latent_json_raw("[8, 2, 2]", base64.b64encode(bytes(132)).decode()), JSON, 422, bad),
        Case("json-batch-of-one-served", p, latent_json_raw("[1, 8, 2, 2]", data16), JSON, 200),
    ]
    npy_cases = [
        Case("npy-2**40-values", p, npy_header((2**40,)), NPY, 422, bad),
        Case("npy-zero-axis", p, npy_header((8, 0, 2), data=b""), NPY, 422, bad),
        Case("npy-all-zero", p, npy_header((0,), data=b""), NPY, 422, bad),
        Case("npy-rank-0", p, npy_header(()), NPY, 422, bad),
        Case("npy-rank-65", p, npy_header(tuple([1] * 65)), NPY, 422, bad),
        Case("npy-negative-axis", p, npy_header((8, -2, 2)), NPY, 422, bad),
        Case("npy-axis-10**30", p, npy_header((8, 10**30, 1)), NPY, 422, bad),
        Case("npy-axis-of-5000-digits", p, npy_header(f"(8, {'9' * 5000}, 1)"), NPY, 400, "undecodable_body"),
        Case("npy-float-axis", p, npy_header("(8, 2.5, 2)"), NPY, 400, "undecodable_body"),
        Case("npy-product-wraps", p, npy_header((8, 2**31, 2**31)), NPY, 413, "payload_too_large"),
        Case("npy-int32", p, npy_header((8, 2, 2), "<i4", good.tobytes()), NPY, 422, bad),
        Case("npy-complex", p, npy_header((8, 2, 2), "<c8", bytes(256)), NPY, 422, bad),
        Case("npy-void", p, npy_header((8, 2, 2), "|V4", good.tobytes()), NPY, 422, bad),
        Case(
            "npy-version-3",
            p,
            npy_header((8, 2, 2), data=good.tobytes(), version=b"\x03\x00"),
            NPY,
            400,
            "undecodable_body",
        ),
        Case("npy-data-short", p, npy_header((8, 2, 2), data=good.tobytes()[:-4]), NPY, 400, "undecodable_body"),
        Case("npy-big-endian-served", p, npy_header((8, 2, 2), ">f4", good.astype(">f4").tobytes()), NPY, 200),
        Case("npy-float16-served", p, npy_header((8, 2, 2), "<f2", good.astype("<f2").tobytes()), NPY, 200),
    ]
    npy_good = npy_bytes(good)

    def sized(height: str, width: str | None = "16") -> dict[str, str]:
        return {"x-image-height": height, **({"x-image-width": width} if width is not None else {})}

    header_cases = [
        Case("x-image-height-superscript-two", p, npy_good, NPY, 422, bad, headers=sized("\u00b2")),
        Case("x-image-height-superscript-one-two", p, npy_good, NPY, 422, bad, headers=sized("\u00b9\u00b2")),
        Case("x-image-height-5000-digits", p, npy_good, NPY, 422, bad, headers=sized("9" * 5000)),
        Case("x-image-height-zero", p, npy_good, NPY, 422, bad, headers=sized("0")),
        Case("x-image-height-negative", p, npy_good, NPY, 422, bad, headers=sized("-16")),
        Case("x-image-height-only", p, npy_good, NPY, 422, bad, headers=sized("16", None)),
        Case("x-image-height-hex", p, npy_good, NPY, 422, bad, headers=sized("0x10")),
        Case("x-image-height-leading-zeros-served", p, npy_good, NPY, 200, headers=sized("0016")),
    ]
    return json_cases + npy_cases + header_cases


def _stream_header_cases(m: str, stream: bytes) -> list[Case]:
    """Valid streams (checksum correct) with one hostile header field each."""
    p = f"/v1/models/{m}/decode"
    header, payload = unpack(stream)

    def raw(name: bytes, fields: bytes, body: bytes, version: int = 1) -> bytes:
        data = b"AEIC" + bytes([version, len(name)]) + name + fields + struct.pack(">I", len(body)) + body
        return data + struct.pack(">I", zlib.crc32(data))

    hashed = int.from_bytes(header.table_hash, "big")

    def fields(version: int = header.version, height: int = header.height, width: int = header.width) -> bytes:
        return struct.pack(">HQII", version, hashed, height, width)

    name = header.name.encode()
    bad = "undecodable_body"
    return [
        Case(
            "stream-height-2**32-1", p, raw(name, fields(height=2**32 - 1), payload), STREAM, 413, "payload_too_large"
        ),
        Case("stream-width-2**32-1", p, raw(name, fields(width=2**32 - 1), payload), STREAM, 413, "payload_too_large"),
        Case("stream-height-0", p, raw(name, fields(height=0), payload), STREAM, 400, bad),
        Case("stream-width-0", p, raw(name, fields(width=0), payload), STREAM, 400, bad),
        Case("stream-model-version-65535", p, raw(name, fields(version=65535), payload), STREAM, 400, bad),
        Case("stream-format-version-0", p, raw(name, fields(), payload, version=0), STREAM, 400, bad),
        Case("stream-name-not-utf8", p, raw(b"\xff\xfe", fields(), payload), STREAM, 400, bad),
        Case("stream-name-255-bytes", p, raw(b"x" * 255, fields(), payload), STREAM, 400, bad),
        Case("stream-payload-3-bytes", p, raw(name, fields(), payload[:3]), STREAM, 400, bad),
        Case("stream-payload-length-mismatch", p, _stream_length(raw(name, fields(), payload), 4), STREAM, 400, bad),
        Case("stream-wrong-table-hash", p, pack(replace(header, table_hash=bytes(8)), payload), STREAM, 400, bad),
    ]


def _answer_cases(t: Targets) -> list[Case]:
    """Answers the format the client asked for cannot hold: 406 before encoding, never an encoder's 500."""
    cases: list[Case] = []
    webp, jpeg = {"accept": "image/webp"}, {"accept": "image/jpeg"}
    if t.image:
        p = f"/v1/models/{t.image}/reconstruct"
        wide, tall = image_bytes(noise(1, 16_384)), image_bytes(noise(16_384, 1))
        cases += [
            Case("webp-answer-1x16384", p, wide, PNG, 406, "not_acceptable", headers=webp),
            Case("webp-answer-16384x1", p, tall, PNG, 406, "not_acceptable", headers=webp),
            Case(
                "webp-then-png-answer-1x16384",
                p,
                wide,
                PNG,
                406,
                "not_acceptable",
                headers={"accept": "image/webp, image/png"},
            ),
            Case("webp-answer-1x16383-served", p, image_bytes(noise(1, 16_383)), PNG, 200, headers=webp),
            Case("jpeg-answer-1x16384-served", p, wide, PNG, 200, headers=jpeg),
            Case(
                "webp-answer-of-latent-8x16384",
                f"/v1/models/{t.image}/decode",
                latent_json([8, 1, 2048]),
                JSON,
                406,
                "not_acceptable",
                headers=webp,
            ),
        ]
    if t.codec:
        p = f"/v1/models/{t.codec}/reconstruct"
        cases.append(
            Case(
                "webp-answer-codec-1x16384", p, image_bytes(noise(1, 16_384)), PNG, 406, "not_acceptable", headers=webp
            )
        )
    return cases


def _overhead_cases(m: str) -> list[Case]:
    """Containers carrying far more structure than their 8x8 image needs (413), and some within the bounds."""
    p = f"/v1/models/{m}/reconstruct"
    big = "payload_too_large"
    text = png_chunk(b"tEXt", b"k\0v")
    return [
        Case("png-32mb-one-ancillary-chunk", p, png_with_chunks(png_chunk(b"zzZz", bytes(32_000_000))), PNG, 413, big),
        Case(
            "png-9mib-in-9-text-chunks",
            p,
            png_with_chunks(png_chunk(b"tEXt", b"k\0" + bytes(2**20)) * 9),
            PNG,
            413,
            big,
        ),
        Case("png-1025-text-chunks", p, png_with_chunks(text * 1025), PNG, 413, big),
        Case("png-2-million-empty-chunks", p, png_with_chunks(png_chunk(b"zzZz", b"") * 2_000_000), PNG, 413, big),
        Case("png-65537-idat-chunks", p, png_split_idat(65_537), PNG, 413, big),
        Case("png-1024-text-chunks-served", p, png_with_chunks(text * 1024), PNG, 200),
        Case("png-4096-idat-chunks-served", p, png_split_idat(4096), PNG, 200),
        Case("jpeg-65537-fill-bytes", p, jpeg_with(b"", fill=65_537), "image/jpeg", 413, big),
        Case("jpeg-30mb-fill-bytes", p, jpeg_with(b"", fill=30_000_000), "image/jpeg", 413, big),
        Case("jpeg-1025-comments", p, jpeg_with(jpeg_segment(0xFE, b"x") * 1025), "image/jpeg", 413, big),
        Case("jpeg-8-million-empty-app1", p, jpeg_with(b"\xff\xe1\x00\x02" * 7_000_000), "image/jpeg", 413, big),
        Case("jpeg-9mib-of-app1", p, jpeg_with(jpeg_segment(0xE1, bytes(65_000)) * 146), "image/jpeg", 413, big),
        Case("jpeg-100-fill-bytes-served", p, jpeg_with(jpeg_segment(0xFE, b"hi"), fill=100), "image/jpeg", 200),
        Case("gif-1025-comments", p, gif_with_extensions(gif_comment(b"x") * 1025), "image/gif", 413, big),
        Case(
            "gif-65537-sub-blocks", p, gif_with_extensions(gif_comment(b"x" * 65_537, block=1)), "image/gif", 413, big
        ),
        Case("gif-6-million-comments", p, gif_with_extensions(b"\x21\xfe\x01x\x00" * 6_000_000), "image/gif", 413, big),
        Case("gif-100-comments-served", p, gif_with_extensions(gif_comment(b"hello") * 100), "image/gif", 200),
        Case("tiff-1025-tags", p, tiff_rgb(entries_padding=1025), "image/tiff", 413, big),
        Case(
            "tiff-7-million-long-values",
            p,
            tiff_rgb([(65535, 4, 7_000_000, bytes(28_000_000))]),
            "image/tiff",
            413,
            big,
        ),
        Case("tiff-9mib-xmp", p, tiff_rgb([(700, 1, 9 * 2**20, bytes(9 * 2**20))]), "image/tiff", 413, big),
        Case("tiff-100-tags-served", p, tiff_rgb(entries_padding=100), "image/tiff", 200),
    ]


def _routing_cases(t: Targets) -> list[Case]:
    cases = [
        Case("unknown-model", "/v1/models/no-such-model/encode", seqs([[1]]), JSON, 404, "not_found"),
        Case("unknown-route", "/v1/nothing", b"", None, 404, "not_found", method="GET"),
        Case("wrong-method", "/v1/models", b"", None, 405, "method_not_allowed", method="DELETE"),
    ]
    if t.sequence:
        cases.append(
            Case("unknown-version", f"/v1/models/{t.sequence}/versions/999/encode", seqs([[1]]), JSON, 404, "not_found")
        )
    if t.reconstruct_only:
        cases.append(
            Case(
                "unsupported-operation",
                f"/v1/models/{t.reconstruct_only}/encode",
                image_bytes(noise(8, 8)),
                PNG,
                409,
                "unsupported_operation",
            )
        )
    return cases


def build_cases(targets: Targets, encode_stream: Callable[[bytes], bytes] | None = None) -> list[Case]:
    """Every case for the targeted models, each with its class; codec cases need a way to get one valid stream."""
    groups: list[tuple[str, list[Case]]] = [("routing", _routing_cases(targets))]
    if targets.image:
        groups += [
            ("images", _image_cases(targets.image, targets)),
            ("decoders", _decoder_cases(targets.image)),
            ("shapes", _shape_cases(targets.image)),
            ("overhead", _overhead_cases(targets.image)),
        ]
    if targets.sequence:
        groups.append(("sequences", _sequence_cases(targets.sequence, targets)))
    groups += [("numbers", _number_cases(targets)), ("answers", _answer_cases(targets))]
    if targets.codec and encode_stream is not None:
        stream = encode_stream(image_bytes(noise(40, 56)))
        groups += [
            ("streams", _codec_cases(targets.codec, stream)),
            ("shapes", _stream_header_cases(targets.codec, stream)),
        ]
    return [replace(case, group=group) for group, cases in groups for case in cases]


def count_by_group(cases: list[Case]) -> dict[str, int]:
    """How many cases each class holds, in the order the classes first appear."""
    counts: dict[str, int] = {}
    for case in cases:
        counts[case.group] = counts.get(case.group, 0) + 1
    return counts


def main(out: Path) -> int:
    """Write the corpus (without codec streams, which need a running model) to a folder."""
    out.mkdir(parents=True, exist_ok=True)
    index = []
    cases = build_cases(Targets())
    for case in cases:
        (out / f"{case.name}.bin").write_bytes(case.body)
        index.append(
            {
                "name": case.name,
                "method": case.method,
                "path": case.path,
                "content_type": case.content_type,
                "headers": case.headers,
                "status": case.status,
                "code": case.code,
                "group": case.group,
                "body": f"{case.name}.bin",
            }
        )
    (out / "cases.json").write_text(json.dumps(index, indent=2) + "\n")
    print(f"wrote {len(index)} cases to {out}")
    print(", ".join(f"{group}: {count}" for group, count in count_by_group(cases).items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else "corpus")))
