"""Stream format 2: its layout, every field a decoder cannot honour refused, format 1 still read, and
authentication with `AE_STREAM_KEY` (signed streams, forged and altered ones refused) on a real server."""

from __future__ import annotations

import os
import struct
import subprocess
import zlib
from collections.abc import Iterator
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path

import httpx
import numpy as np
import pytest

from bench.net import free_port, http_get, service_command
from service.codecs.bitstream import (
    FORMAT_VERSION,
    Header,
    StreamAuthentication,
    pack,
    pack_tiles,
    read_stream,
    unpack,
)
from service.config import Settings
from service.errors import DecodingError
from tests.service.conftest import decode_png, png_bytes

CODEC = "/v1/models/tiny-codec"
PNG = {"content-type": "image/png"}
STREAM = {"content-type": "application/octet-stream"}
KEY = "test-stream-key-0123456789abcdef-not-a-real-secret"
OTHER_KEY = "another-stream-key-0123456789abcdef-not-ours"
SIGNED_BY_US = StreamAuthentication(KEY.encode())
HEADER = Header("some-codec", 3, bytes(range(8)), 37, 53)
PAYLOAD = bytes(range(40))


def _with_crc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def format_1(header: Header, payload: bytes) -> bytes:
    """A format 1 stream, byte for byte from the layout in docs/compatibility.md (written by 0.1.0)."""
    name = header.name.encode()
    fixed = struct.pack(">HQII", header.version, int.from_bytes(header.table_hash, "big"), header.height, header.width)
    return _with_crc(b"AEIC" + bytes([1, len(name)]) + name + fixed + struct.pack(">I", len(payload)) + payload)


def format_2(
    header: Header,
    tile_table: bytes,
    flags: int = 0,
    tile_count: int = 1,
    tag: bytes = b"",
    after_tiles: bytes = b"",
) -> bytes:
    """A format 2 stream from its documented layout, any field as given (the CRC always valid)."""
    name = header.name.encode()
    fixed = struct.pack(">HQII", header.version, int.from_bytes(header.table_hash, "big"), header.height, header.width)
    layout = struct.pack(">BHI", header.channels, header.tile_side, tile_count)
    flags |= 0x02 if header.escaped else 0  # bit 1: escape-coded payloads (what this release writes)
    body = b"AEIC" + bytes([2, flags, len(name)]) + name + fixed + layout + tile_table + after_tiles
    return _with_crc(body) + tag


def tile(payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + payload


NO_KEY = StreamAuthentication()


def _refused(data: bytes, auth: StreamAuthentication = NO_KEY, match: str = "") -> None:
    with pytest.raises(DecodingError, match=match):
        unpack(data, auth)


# ---------------------------------------------------------------- pack and unpack


def test_pack_writes_the_documented_format_2_layout():
    assert FORMAT_VERSION == 2
    assert pack(HEADER, PAYLOAD) == format_2(HEADER, tile(PAYLOAD))


def test_pack_signs_with_hmac_sha256_over_everything_before_the_tag():
    import hashlib
    import hmac

    signed = pack(HEADER, PAYLOAD, KEY.encode())
    unsigned_layout = format_2(HEADER, tile(PAYLOAD), flags=0x01)
    assert signed[:-32] == unsigned_layout
    assert signed[-32:] == hmac.new(KEY.encode(), unsigned_layout, hashlib.sha256).digest()


@pytest.mark.parametrize("key", [None, KEY.encode()], ids=["unsigned", "signed"])
def test_unpack_gives_back_what_pack_wrote(key):
    stream = read_stream(pack(HEADER, PAYLOAD, key), StreamAuthentication(key))
    assert (stream.header, stream.tiles, stream.format_version, stream.signed) == (
        HEADER,
        (PAYLOAD,),
        2,
        key is not None,
    )


def test_format_1_still_unpacks_as_an_unsigned_three_channel_untiled_clipped_stream():
    stream = read_stream(format_1(HEADER, PAYLOAD))
    clipped = replace(HEADER, escaped=False)
    assert (stream.header, stream.tiles, stream.format_version, stream.signed) == (clipped, (PAYLOAD,), 1, False)
    assert (stream.header.channels, stream.header.tile_side) == (3, 0)


def test_format_2_without_the_escape_flag_is_a_clipped_stream_from_before_it():
    old = format_2(replace(HEADER, escaped=False), tile(PAYLOAD))
    assert old[5] == 0 and unpack(old) == (replace(HEADER, escaped=False), PAYLOAD)
    assert pack(HEADER, PAYLOAD)[5] == 0x02  # every stream this release writes is escape-coded


def test_a_variable_rate_stream_carries_its_quality_after_the_tile_count():
    header = replace(HEADER, quality=40000)
    layout = format_2(HEADER, struct.pack(">H", 40000) + tile(PAYLOAD), flags=0x04)
    assert pack(header, PAYLOAD) == layout
    assert unpack(layout) == (header, PAYLOAD)
    _refused(format_2(HEADER, b"\x9c", flags=0x04, tile_count=0), match="quality needs 2 bytes")


def test_without_a_key_a_signed_stream_unpacks_on_its_crc_alone():
    # This server cannot check the tag: a tag made with any key, or garbage, passes (documented).
    assert unpack(pack(HEADER, PAYLOAD, OTHER_KEY.encode())) == (HEADER, PAYLOAD)
    assert unpack(format_2(HEADER, tile(PAYLOAD), flags=0x01, tag=bytes(32))) == (HEADER, PAYLOAD)


def test_with_a_key_only_its_own_signature_unpacks():
    assert unpack(pack(HEADER, PAYLOAD, KEY.encode()), SIGNED_BY_US) == (HEADER, PAYLOAD)
    signature = "signature does not match: it was not made by this service or was altered"
    _refused(pack(HEADER, PAYLOAD, OTHER_KEY.encode()), SIGNED_BY_US, signature)
    _refused(format_2(HEADER, tile(PAYLOAD), flags=0x01, tag=bytes(32)), SIGNED_BY_US, signature)


def test_with_a_key_unsigned_streams_unpack_only_when_accepted():
    for unsigned in (pack(HEADER, PAYLOAD), format_1(HEADER, PAYLOAD)):
        _refused(unsigned, SIGNED_BY_US, "stream is not signed")
        header, payload = unpack(unsigned, replace(SIGNED_BY_US, accept_unsigned=True))
        assert (replace(header, escaped=True), payload) == (HEADER, PAYLOAD)  # format 1 is clipped


def _flipped(data: bytes, at: int, bit: int = 0x04) -> bytes:
    out = bytearray(data)
    out[at] ^= bit
    return bytes(out)


def test_one_bit_flipped_anywhere_in_a_signed_stream_is_refused():
    signed = pack(HEADER, PAYLOAD, KEY.encode())
    for at in range(len(signed)):
        with pytest.raises(DecodingError):
            unpack(_flipped(signed, at), SIGNED_BY_US)


def test_an_altered_body_with_its_crc_recomputed_is_caught_by_the_signature():
    signed = pack(HEADER, PAYLOAD, KEY.encode())
    body = signed[:-36]  # before the CRC and the tag
    altered = _with_crc(_flipped(body, len(body) - 1)) + signed[-32:]
    assert unpack(altered) != (HEADER, PAYLOAD)  # without a key only the CRC is checked: it passes
    _refused(altered, SIGNED_BY_US, "signature does not match")


def _hostile_fields():
    gray = replace(HEADER, channels=1)
    tiled = replace(HEADER, tile_side=16)  # 37x53 in tiles of 16: 3 x 4 = 12 tiles
    return [
        pytest.param(format_2(HEADER, tile(PAYLOAD), flags=0x08), "flags 0x0a set bits", id="unknown-flag-bit-3"),
        pytest.param(format_2(HEADER, tile(PAYLOAD), flags=0x81), "flags 0x83 set bits", id="unknown-flag-bit-7"),
        pytest.param(format_2(replace(HEADER, channels=0), tile(PAYLOAD)), "declares 0 channels", id="channels-0"),
        pytest.param(format_2(replace(HEADER, channels=4), tile(PAYLOAD)), "declares 4 channels", id="channels-4"),
        pytest.param(pack_tiles(tiled, [PAYLOAD] * 12), "tiles of 16 pixels", id="tiles-too-small"),
        pytest.param(
            pack_tiles(replace(HEADER, tile_side=100), [PAYLOAD]), "a multiple of 64 from 128", id="tile-side-100"
        ),
        pytest.param(
            format_2(tiled, tile(PAYLOAD), tile_count=1), "declares 1 tiles, but tiles of 16", id="tiled-count"
        ),
        pytest.param(format_2(HEADER, tile(PAYLOAD) * 2, tile_count=2), "declares 2 tiles", id="two-tiles-untiled"),
        pytest.param(format_2(HEADER, b"", tile_count=0), "declares 0 tiles", id="no-tile"),
        pytest.param(format_2(HEADER, tile(PAYLOAD), tile_count=2**32 - 1), "declares 4294967295", id="count-2**32-1"),
        pytest.param(
            format_2(HEADER, struct.pack(">I", len(PAYLOAD) + 1) + PAYLOAD), "tile 0 payload needs 41", id="tile-long"
        ),
        pytest.param(format_2(HEADER, struct.pack(">I", 2**32 - 1)), "needs 4294967295", id="tile-length-2**32-1"),
        pytest.param(format_2(HEADER, b"\x00\x00"), "table of 1 tiles does not fit", id="tile-table-cut"),
        pytest.param(format_2(HEADER, tile(PAYLOAD), after_tiles=b"\x00" * 4), "4 bytes after its last", id="trailing"),
        pytest.param(format_2(replace(HEADER, height=0), tile(PAYLOAD)), "empty image", id="height-0"),
        pytest.param(format_2(HEADER, tile(PAYLOAD))[:-5], "checksum mismatch", id="truncated"),
        pytest.param(b"AEIC\x02", "ends before its flags", id="ends-at-version"),
        pytest.param(b"AEIC\x02\x01" + bytes(30), "ends before its checksum", id="signed-shorter-than-tag"),
        pytest.param(b"AEIC\x03\x00", "format version 3", id="format-3"),
        pytest.param(format_1(HEADER, PAYLOAD) + b"\x00", "checksum mismatch", id="format-1-trailing"),
        pytest.param(format_2(gray, tile(PAYLOAD)), None, id="gray-unpacks-the-model-refuses-it"),
    ]


def test_a_tiled_stream_unpacks_its_grid_of_tiles_in_raster_order():
    header = replace(HEADER, height=300, width=200, tile_side=128)  # 3 rows x 2 columns
    payloads = [bytes([index]) * 8 for index in range(6)]
    stream = read_stream(pack_tiles(header, payloads))
    assert (stream.header, stream.tiles) == (header, tuple(payloads))
    with pytest.raises(DecodingError, match="6 tiles where one was expected"):
        unpack(pack_tiles(header, payloads))


@pytest.mark.parametrize(("data", "message"), _hostile_fields())
def test_fields_a_decoder_cannot_honour_are_refused_saying_which(data, message):
    if message is None:
        assert unpack(data)[0].channels == 1
    else:
        _refused(data, match=message)


def test_streams_are_refused_before_any_field_is_parsed_when_the_signature_is_wrong():
    # A forged header with a garbage tag is refused for its tag, not for the field: nothing past the
    # flags is read from a stream this service did not sign.
    forged = format_2(replace(HEADER, height=0), tile(PAYLOAD), flags=0x01, tag=bytes(32))
    _refused(forged, SIGNED_BY_US, "signature does not match")


def test_the_key_is_secret_in_settings_and_authentication(monkeypatch):
    monkeypatch.setenv("AE_STREAM_KEY", KEY)
    settings = Settings(max_image_pixels=1)
    assert settings.stream_key_bytes() == KEY.encode()
    for shown in (repr(settings), str(settings), settings.model_dump_json(), repr(SIGNED_BY_US)):
        assert KEY not in shown


def test_an_empty_key_is_no_key_and_a_blank_one_stops_start_up(monkeypatch):
    monkeypatch.setenv("AE_STREAM_KEY", "")  # compose's `${AE_STREAM_KEY:-}`
    assert Settings(max_image_pixels=1).stream_key_bytes() is None
    monkeypatch.setenv("AE_STREAM_KEY", "   ")
    with pytest.raises(ValueError, match="AE_STREAM_KEY is blank"):
        Settings(max_image_pixels=1)


# ---------------------------------------------------------------- through HTTP


@pytest.fixture(scope="module")
def stream(client) -> bytes:
    """An unsigned stream of tiny-codec from the key-less in-process app."""
    response = client.post(f"{CODEC}/encode", content=png_bytes(37, 53, seed=4), headers=PNG)
    assert response.status_code == HTTPStatus.OK
    return response.content


def _forged(stream: bytes, signed: bool = False) -> bytes:
    """The stream's header with a random payload of the same length, and a valid CRC: what anyone can write."""
    header, payload = unpack(stream)
    random = np.random.default_rng(7).bytes(len(payload))
    if signed:
        return format_2(header, tile(random), flags=0x01, tag=np.random.default_rng(8).bytes(32))
    return pack(header, random)


def test_without_a_key_a_forged_stream_with_a_valid_crc_decodes(client, stream):
    # What the CRC does not do (README): it is why a server that must refuse forgeries needs a key.
    response = client.post(f"{CODEC}/decode", content=_forged(stream), headers=STREAM)
    assert response.status_code == HTTPStatus.OK
    assert decode_png(response.content).shape == (37, 53, 3)


def test_the_encoder_writes_an_unsigned_format_2_stream_without_a_key(stream):
    parsed = read_stream(stream)
    assert (parsed.format_version, parsed.signed, parsed.header.channels, parsed.header.tile_side) == (2, False, 3, 0)


def test_a_format_1_stream_still_decodes_as_format_2_does_without_escapes(client, stream):
    # Both carry clipped payloads (format 1 knows no escapes), so the same payload is the same image.
    header, payload = unpack(stream)
    old = client.post(f"{CODEC}/decode", content=format_1(header, payload), headers=STREAM)
    clipped = pack(replace(header, escaped=False), payload)
    new = client.post(f"{CODEC}/decode", content=clipped, headers=STREAM)
    assert old.status_code == new.status_code == HTTPStatus.OK
    assert old.content == new.content


def _hostile_streams(stream: bytes) -> list[tuple[str, bytes, str]]:
    header, payload = unpack(stream)
    return [
        ("unknown-flags", format_2(header, tile(payload), flags=0x40), "flags 0x42"),
        ("gray", format_2(replace(header, channels=1), tile(payload)), "1-channel (gray) image"),
        ("tiled", format_2(replace(header, tile_side=16), tile(payload) * 12, tile_count=12), "tiles of 16"),
        ("tile-count-2", format_2(header, tile(payload) * 2, tile_count=2), "declares 2 tiles"),
        ("tile-table-truncated", format_2(header, tile(payload)[:-8]), "is truncated"),
        ("trailing-bytes", format_2(header, tile(payload), after_tiles=b"\x00"), "1 bytes after its last tile"),
    ]


def test_hostile_format_2_fields_are_400_with_a_message_that_says_why(client, stream):
    for name, data, message in _hostile_streams(stream):
        response = client.post(f"{CODEC}/decode", content=data, headers=STREAM)
        assert response.status_code == HTTPStatus.BAD_REQUEST, name
        error = response.json()["error"]
        assert error["code"] == "undecodable_body" and message in error["message"], (name, error)


def test_a_huge_declared_size_is_still_413_before_decoding(client, stream):
    header, payload = unpack(stream)
    response = client.post(f"{CODEC}/decode", content=pack(replace(header, height=2**32 - 1), payload), headers=STREAM)
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


class Server:
    """A real `ae-serve` on the tiny models with the given settings, its log (debug level) kept in a file."""

    def __init__(self, repository: Path, log: Path, **env: str) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [*service_command(self.port, repository)[:-1], "debug"]
        settings = {"AE_PROVIDERS": '["CPUExecutionProvider"]', "AE_INTRA_OP_THREADS": "1", "AE_WORKERS": "1", **env}
        with log.open("wb") as out:
            self.process = subprocess.Popen(command, env={**os.environ, **settings}, stdout=out, stderr=out)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        import time

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                if http_get(f"{self.base}/health/ready")[0] == HTTPStatus.OK:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"ae-serve did not become ready:\n{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture(scope="module")
def servers(tiny_models, tmp_path_factory) -> Iterator[tuple[Server, Server]]:
    """(a server with AE_STREAM_KEY, one with the same key that also accepts unsigned streams), started together."""
    logs = tmp_path_factory.mktemp("stream-servers")
    strict = Server(tiny_models, logs / "strict.log", AE_STREAM_KEY=KEY)
    lenient = Server(tiny_models, logs / "lenient.log", AE_STREAM_KEY=KEY, AE_STREAM_ACCEPT_UNSIGNED="true")
    try:
        strict.wait_ready()
        lenient.wait_ready()
        yield strict, lenient
    finally:
        strict.stop()
        lenient.stop()


@pytest.fixture(scope="module")
def keyed(servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers[0].base, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def lenient(servers) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=servers[1].base, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def signed_stream(keyed) -> bytes:
    response = keyed.post(f"{CODEC}/encode", content=png_bytes(37, 53, seed=4), headers=PNG)
    assert response.status_code == HTTPStatus.OK
    return response.content


def _decode(http: httpx.Client, data: bytes) -> httpx.Response:
    return http.post(f"{CODEC}/decode", content=data, headers=STREAM)


def _refused_by(http: httpx.Client, data: bytes, message: str) -> None:
    response = _decode(http, data)
    assert response.status_code == HTTPStatus.BAD_REQUEST
    error = response.json()["error"]
    assert error["code"] == "undecodable_body" and message in error["message"], error
    assert KEY not in response.text


def test_with_a_key_encode_signs_and_the_signed_stream_round_trips(keyed, client, signed_stream, stream):
    parsed = read_stream(signed_stream, SIGNED_BY_US)
    assert (parsed.format_version, parsed.signed) == (2, True)
    assert unpack(signed_stream)[1] == unpack(stream)[1]  # the same payload, now signed
    decoded = _decode(keyed, signed_stream)
    assert decoded.status_code == HTTPStatus.OK
    assert decode_png(decoded.content).shape == (37, 53, 3)
    # A server without the key decodes it on its CRC alone, to the same pixels.
    assert _decode(client, signed_stream).content == decoded.content
    reconstructed = keyed.post(f"{CODEC}/reconstruct", content=png_bytes(37, 53, seed=4), headers=PNG)
    assert reconstructed.status_code == HTTPStatus.OK and reconstructed.content == decoded.content


def test_with_a_key_a_forged_stream_is_refused(keyed, stream):
    _refused_by(keyed, _forged(stream), "stream is not signed")
    _refused_by(keyed, _forged(stream, signed=True), "stream signature does not match")


def test_with_a_key_a_stream_signed_with_another_key_is_refused(keyed, stream):
    header, payload = unpack(stream)
    _refused_by(keyed, pack(header, payload, OTHER_KEY.encode()), "it was not made by this service or was altered")


def test_with_a_key_one_bit_flipped_in_the_tag_or_the_body_is_refused(keyed, signed_stream):
    _refused_by(keyed, _flipped(signed_stream, len(signed_stream) - 1, 0x01), "stream signature does not match")
    body = signed_stream[:-36]
    # The CRC recomputed: only the tag sees the change.
    flipped_body = _with_crc(_flipped(body, len(body) - 9)) + signed_stream[-32:]
    _refused_by(keyed, flipped_body, "stream signature does not match")
    _refused_by(keyed, _flipped(signed_stream, len(body) - 9), "checksum mismatch")


def test_with_a_key_unsigned_streams_are_refused_unless_accepted(keyed, lenient, stream, signed_stream):
    header, payload = unpack(stream)
    old = format_1(header, payload)
    _refused_by(keyed, stream, "stream is not signed (an unsigned stream)")
    _refused_by(keyed, old, "stream is not signed (a format 1 stream, which carries no signature)")
    expected = _decode(keyed, signed_stream).content
    assert _decode(lenient, stream).content == expected
    # Format 1 carries clipped payloads: the same payload, unescaped, in format 2, is its image.
    expected = _decode(lenient, pack(replace(header, escaped=False), payload)).content
    for unsigned in (old,):
        response = _decode(lenient, unsigned)
        assert response.status_code == HTTPStatus.OK and response.content == expected
    # Accepting unsigned streams does not weaken the check of signed ones.
    _refused_by(lenient, _forged(stream, signed=True), "stream signature does not match")


def test_the_key_is_in_no_log_line(servers, keyed, signed_stream):
    assert _decode(keyed, signed_stream).status_code == HTTPStatus.OK
    for server in servers:
        log = server.log.read_text(errors="replace")
        assert "/decode" in log  # the debug log holds the requests
        assert KEY not in log
