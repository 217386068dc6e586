"""Limits on what actually runs: the size the graph runs on (padded to the stride), each side, declared sizes.

A 1 x W image runs as stride x W; a codec stream or a latent declares the size it decodes to. Each is
refused (413) from its header or declared shape, before an array of that size exists. The HTTP tests run
against a real `ae-serve` process; the unit tests below them pin each check in-process.
"""

import base64
import io
import json
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from service.codecs.bitstream import Header, pack, unpack
from service.codecs.image import decode_image
from service.codecs.latent import latent_from_json, latent_from_npy
from service.errors import DecodingError, InvalidInputError, PayloadTooLargeError
from service.limits import SizeLimits, check_run_size
from tests.service.conftest import png_bytes
from tests.service.server import running_server

MAX_PIXELS = 40_000  # the pixel server's AE_MAX_IMAGE_PIXELS (its side cap stays at the default)
MAX_SIDE = 512  # the side server's AE_MAX_IMAGE_SIDE (its pixel limit stays at the default)
IMAGE = "/v1/models/tiny-image"
CODEC = "/v1/models/tiny-codec"
PNG = {"content-type": "image/png"}
JSON = {"content-type": "application/json"}
NPY = {"content-type": "application/x-npy"}
STREAM = {"content-type": "application/octet-stream"}
TOO_LARGE = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


def _stride(repository: Path, name: str) -> int:
    manifest = json.loads((repository / name / "1" / "model.json").read_text())
    return int(manifest["input"]["stride_multiple"])


def _padded(side: int, stride: int) -> int:
    return -(-side // stride) * stride


def _post(base: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(f"{base}{path}", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), dict(response.headers)
    except urllib.error.HTTPError as error:
        return error.code, error.read(), dict(error.headers)


def _refusal(status: int, body: bytes) -> str:
    assert status == TOO_LARGE, body[:300]
    error = json.loads(body)["error"]
    assert error["code"] == "payload_too_large"
    return str(error["message"])


def _json_latent(shape: tuple[int, ...], data: str | None = None) -> bytes:
    if data is None:
        data = base64.b64encode(np.zeros(shape, "<f4").tobytes()).decode()
    return json.dumps({"shape": list(shape), "dtype": "float32", "data": data}).encode()


def _npy_header_only(shape: tuple[int, ...], descr: str = "<f4") -> bytes:
    """A `.npy` header declaring `shape`, followed by 16 bytes of data instead of what it declares."""
    out = io.BytesIO()
    npy_format.write_array_header_1_0(out, {"descr": descr, "fortran_order": False, "shape": shape})
    return out.getvalue() + bytes(16)


def _npy(array: np.ndarray) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


@pytest.fixture(scope="module")
def pixel_server(tiny_models: Path) -> Iterator[str]:
    with running_server(tiny_models, AE_MAX_IMAGE_PIXELS=str(MAX_PIXELS)) as (_, base):
        yield base


@pytest.fixture(scope="module")
def side_server(tiny_models: Path) -> Iterator[str]:
    with running_server(tiny_models, AE_MAX_IMAGE_SIDE=str(MAX_SIDE)) as (_, base):
        yield base


@pytest.fixture(scope="module")
def codec_stream(pixel_server: str) -> bytes:
    status, stream, _ = _post(pixel_server, f"{CODEC}/encode", png_bytes(16, 16, seed=3), PNG)
    assert status == HTTPStatus.OK
    return stream


def _reheader(stream: bytes, height: int, width: int) -> bytes:
    """The same stream declaring another size: `pack` writes a fresh CRC, so only the size is wrong."""
    header, payload = unpack(stream)
    return pack(Header(header.name, header.version, header.table_hash, height, width), payload)


# ---------------------------------------------------------------- the padded pixel count, over HTTP


def test_a_thin_image_is_counted_at_its_padded_size(pixel_server, tiny_models):
    stride = _stride(tiny_models, "tiny-image")
    width = MAX_PIXELS // stride + stride  # 1 x width is far under the limit; stride x width is over it
    status, body, _ = _post(pixel_server, f"{IMAGE}/reconstruct", png_bytes(1, width), PNG)
    message = _refusal(status, body)
    assert f"1x{width}" in message and f"{stride}x{_padded(width, stride)}" in message and str(MAX_PIXELS) in message
    # Padded to exactly the limit is still served.
    fits = MAX_PIXELS // stride
    assert _post(pixel_server, f"{IMAGE}/reconstruct", png_bytes(1, fits), PNG)[0] == HTTPStatus.OK


def test_a_stream_declaring_a_thin_image_is_refused_before_decoding(pixel_server, codec_stream, tiny_models):
    stride = _stride(tiny_models, "tiny-codec")
    width = MAX_PIXELS // stride + stride
    started = time.monotonic()
    status, body, _ = _post(pixel_server, f"{CODEC}/decode", _reheader(codec_stream, 1, width), STREAM)
    elapsed = time.monotonic() - started
    message = _refusal(status, body)
    assert f"{stride}x{_padded(width, stride)}" in message and str(MAX_PIXELS) in message
    assert elapsed < 2.0  # a header check, nothing decoded (generous: the CPU is shared)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(_json_latent((4, 100_000, 100_000), data=""), id="declares-huge-without-data"),
        # 4 * 2**31 * 2**31 floats: np.prod wraps this to 0 bytes, which empty data then "matches".
        pytest.param(_json_latent((4, 2**31, 2**31), data=""), id="declares-2**64-values"),
    ],
)
def test_a_json_latent_declaring_a_huge_image_is_refused_from_its_shape(pixel_server, body):
    status, answer, _ = _post(pixel_server, f"{IMAGE}/decode", body, JSON)
    assert "decodes to an image of" in _refusal(status, answer)


def test_a_npy_latent_declaring_a_huge_image_is_refused_from_its_header(pixel_server):
    # The header declares 160 GB; np.load would allocate all of it before reading the 16 bytes there are.
    status, body, _ = _post(pixel_server, f"{IMAGE}/decode", _npy_header_only((4, 100_000, 100_000)), NPY)
    assert "decodes to an image of" in _refusal(status, body)


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(_npy_header_only((4, 0, 5)), HTTPStatus.UNPROCESSABLE_ENTITY, id="zero-length-axis"),
        pytest.param(_npy_header_only((4, 3, 3), descr="<i4"), HTTPStatus.UNPROCESSABLE_ENTITY, id="integers"),
    ],
)
def test_npy_headers_that_do_not_add_up_are_refused(pixel_server, body, status):
    assert _post(pixel_server, f"{IMAGE}/decode", body, NPY)[0] == status


# ---------------------------------------------------------------- the per-side cap, over HTTP


def test_each_padded_side_is_capped(side_server, tiny_models):
    stride = _stride(tiny_models, "tiny-image")
    # Padded up to the cap exactly: served. One more pixel pads past it: refused.
    assert _post(side_server, f"{IMAGE}/reconstruct", png_bytes(8, MAX_SIDE - 1), PNG)[0] == HTTPStatus.OK
    status, body, _ = _post(side_server, f"{IMAGE}/reconstruct", png_bytes(8, MAX_SIDE + 1), PNG)
    message = _refusal(status, body)
    assert f"8x{MAX_SIDE + stride}" in message and f"{MAX_SIDE} pixels per side" in message


def test_the_side_cap_covers_streams_and_latents(side_server, tiny_models):
    status, stream, _ = _post(side_server, f"{CODEC}/encode", png_bytes(16, 16, seed=3), PNG)
    assert status == HTTPStatus.OK
    status, body, _ = _post(side_server, f"{CODEC}/decode", _reheader(stream, 1, 4 * MAX_SIDE), STREAM)
    assert "per side" in _refusal(status, body)
    stride = _stride(tiny_models, "tiny-image")
    latent = np.zeros((4, 1, 2 * MAX_SIDE // stride), np.float32)  # decodes to stride x 2 * MAX_SIDE
    for body, headers in ((_json_latent(latent.shape), JSON), (_npy(latent), NPY)):
        status, answer, _ = _post(side_server, f"{IMAGE}/decode", body, headers)
        assert "per side" in _refusal(status, answer)


# ---------------------------------------------------------------- each check in-process


@pytest.mark.parametrize(
    ("height", "width", "multiple", "refused"),
    [
        pytest.param(1, 2496, 16, None, id="1x2496-runs-as-16x2496-fits"),
        pytest.param(1, 2497, 16, "16x2512 .* = 40192 pixels", id="1x2497-runs-as-16x2512"),
        pytest.param(100, 1, 8, None, id="100x1-runs-as-104x8"),
        pytest.param(8, 2990, 2, None, id="side-at-the-cap"),
        pytest.param(8, 2991, 1, "2990 pixels per side", id="side-over"),
        pytest.param(8, 2989, 4, "2990 pixels per side: it runs padded to 8x2992", id="side-padded-over"),
    ],
)
def test_check_run_size_counts_the_padded_image(height, width, multiple, refused):
    limits = SizeLimits(max_pixels=40_000, max_side=2990)
    if refused is None:
        check_run_size("image of", height, width, multiple, limits)
    else:
        with pytest.raises(PayloadTooLargeError, match=refused):
            check_run_size("image of", height, width, multiple, limits)


def test_decode_image_refuses_from_the_header_at_the_padded_size():
    limits = SizeLimits(max_pixels=40_000, max_side=16_384)
    assert decode_image(png_bytes(1, 2496), 3, limits, multiple=16).shape == (3, 1, 2496)
    with pytest.raises(PayloadTooLargeError, match="16x2512"):
        decode_image(png_bytes(1, 2497), 3, limits, multiple=16)


def _refuse(shape: tuple[int, ...]) -> None:
    raise PayloadTooLargeError(f"refused {list(shape)}")


def test_latent_parsers_check_the_declared_shape_before_the_data():
    with pytest.raises(PayloadTooLargeError, match=r"refused \[4, 100000, 100000\]"):
        latent_from_npy(_npy_header_only((4, 100_000, 100_000)), _refuse)
    with pytest.raises(PayloadTooLargeError, match=r"refused \[4, 100000, 100000\]"):
        latent_from_json(json.loads(_json_latent((4, 100_000, 100_000), data="@@@")), _refuse)
    # Unchecked, a declaration that the data does not fill is refused without allocating it.
    with pytest.raises(DecodingError, match="needs 160000000000"):
        latent_from_npy(_npy_header_only((4, 100_000, 100_000)))
    with pytest.raises(InvalidInputError, match="needs"):
        latent_from_json(json.loads(_json_latent((4, 2**31, 2**31), data="")))


@pytest.mark.parametrize(
    "array",
    [
        pytest.param(np.arange(24, dtype="<f4").reshape(2, 3, 4), id="float32"),
        pytest.param(np.asfortranarray(np.arange(24, dtype=">f8").reshape(2, 3, 4)), id="fortran-big-endian-f8"),
    ],
)
def test_npy_parsing_from_the_header_reads_what_np_load_reads(array):
    seen: list[tuple[int, ...]] = []
    parsed = latent_from_npy(_npy(array), seen.append)
    assert seen == [(2, 3, 4)]
    assert parsed.dtype == np.float32 and np.array_equal(parsed, np.load(io.BytesIO(_npy(array))))
