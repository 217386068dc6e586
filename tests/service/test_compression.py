"""The compression models through HTTP: real bitstreams, deterministic decoding, refused bad streams."""

import io
import struct
import zlib
from http import HTTPStatus

import numpy as np
import pytest
from PIL import Image

from service.codecs.bitstream import Header, pack, unpack
from service.errors import DecodingError
from tests.service.conftest import decode_png, png_bytes

CODEC = "/v1/models/tiny-codec"
PNG = {"content-type": "image/png"}
STREAM = {"content-type": "application/octet-stream"}


@pytest.fixture(scope="module")
def stream(client):
    response = client.post(f"{CODEC}/encode", content=png_bytes(37, 53, seed=4), headers=PNG)
    assert response.status_code == HTTPStatus.OK
    assert response.headers["content-type"] == "application/octet-stream"
    return response


def test_encode_reports_bits_per_pixel_from_the_real_bytes(stream):
    bpp = float(stream.headers["x-bits-per-pixel"])
    assert bpp == pytest.approx(len(stream.content) * 8 / (37 * 53), rel=1e-5)
    header, _ = unpack(stream.content)
    assert (header.name, header.version, header.height, header.width) == ("tiny-codec", 1, 37, 53)


def test_decode_is_deterministic_and_keeps_the_size(client, stream):
    first = client.post(f"{CODEC}/decode", content=stream.content, headers=STREAM)
    second = client.post(f"{CODEC}/decode", content=stream.content, headers=STREAM)
    assert first.status_code == HTTPStatus.OK and first.content == second.content
    assert decode_png(first.content).shape == (37, 53, 3)


def test_reconstruct_is_decode_of_encode_with_rate_and_psnr_headers(client, stream):
    response = client.post(f"{CODEC}/reconstruct", content=png_bytes(37, 53, seed=4), headers=PNG)
    decoded = client.post(f"{CODEC}/decode", content=stream.content, headers=STREAM)
    assert response.content == decoded.content
    assert response.headers["x-bits-per-pixel"] == stream.headers["x-bits-per-pixel"]
    original = decode_png(png_bytes(37, 53, seed=4)).astype(float)
    mse = np.mean((original - decode_png(response.content).astype(float)) ** 2)
    assert float(response.headers["x-psnr"]) == pytest.approx(10 * np.log10(255**2 / mse), abs=0.01)


def _reheader(data: bytes, **changes) -> bytes:
    header, payload = unpack(data)
    fields = {**header.__dict__, **changes}
    return pack(Header(**fields), payload)


def _recrc(body: bytes) -> bytes:
    return body + struct.pack(">I", zlib.crc32(body))


def _bad_streams(good: bytes):
    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 0x10
    return [
        pytest.param(b"", id="empty"),
        pytest.param(good[:-7], id="truncated"),
        pytest.param(bytes(flipped), id="bit-flip"),
        pytest.param(b"JUNK" + good[4:], id="bad-magic"),
        pytest.param(good[:4] + b"\x09" + good[5:], id="future-format-version"),
        pytest.param(_reheader(good, name="image-conv"), id="foreign-model"),
        pytest.param(_reheader(good, version=7), id="other-version"),
        pytest.param(_reheader(good, table_hash=b"\x00" * 8), id="other-tables"),
        pytest.param(_reheader(good, height=0), id="empty-image"),
        pytest.param(_recrc(good[:-4][:-3]), id="payload-shorter-than-header-says"),
    ]


def test_bad_streams_are_refused_with_400(client, stream):
    for case in _bad_streams(stream.content):
        response = client.post(f"{CODEC}/decode", content=case.values[0], headers=STREAM)
        assert response.status_code == HTTPStatus.BAD_REQUEST, case.id
        assert response.json()["error"]["code"] == "undecodable_body", case.id


def test_huge_declared_size_is_413(client, stream):
    response = client.post(
        f"{CODEC}/decode", content=_reheader(stream.content, height=60000, width=60000), headers=STREAM
    )
    assert response.status_code == HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def test_stream_needs_its_media_type(client, stream):
    response = client.post(f"{CODEC}/decode", content=stream.content, headers=PNG)
    assert response.status_code == HTTPStatus.UNSUPPORTED_MEDIA_TYPE


def test_unpack_rejects_garbage_quickly():
    for data in (b"AEIC", b"AEIC\x01", b"AEIC\x01\x05abc", bytes(range(256))):
        with pytest.raises(DecodingError):
            unpack(data)


def test_jpeg_input_compresses(client):
    out = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(out, "JPEG")
    response = client.post(f"{CODEC}/encode", content=out.getvalue(), headers={"content-type": "image/jpeg"})
    assert response.status_code == HTTPStatus.OK and unpack(response.content)[0].height == 40
