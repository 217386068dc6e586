import io
import sys
from http import HTTPStatus
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from service.codecs import png
from service.codecs.image import encode_image
from tests.service.conftest import decode_png, png_bytes

pytestmark = pytest.mark.skipif(png._fpng is None, reason="fpng is not installed")

PHOTO = sorted((Path(__file__).parents[1] / "fixtures" / "images").glob("*.jpg"))[0]
RNG = np.random.default_rng(13)


def _photo(mode: str) -> np.ndarray:
    return np.asarray(Image.open(PHOTO).convert(mode))


def _noise(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape, dtype=np.uint8)


def _decoded(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)))


ARRAYS = [
    pytest.param(_photo("RGB"), id="photo-rgb"),
    pytest.param(_noise(64, 64, 3), id="noise-rgb"),
    pytest.param(_photo("RGBA"), id="photo-rgba"),
    pytest.param(_noise(33, 47, 4), id="noise-rgba"),
    pytest.param(_photo("L"), id="photo-gray"),
    pytest.param(_noise(31, 17), id="noise-gray"),
    pytest.param(_noise(9, 11).astype(np.uint16) * 257, id="noise-gray-16-bit"),
    pytest.param(_noise(1, 1, 3), id="one-pixel"),
    pytest.param(_noise(3, 40, 5).transpose(1, 2, 0)[..., :3], id="non-contiguous"),
]


class _Spy:
    """Counts fpng calls; `answer` replaces fpng's result, `error` makes it raise."""

    def __init__(self, real: object, answer: bytes | None = None, error: Exception | None = None) -> None:
        self.real, self.answer, self.error, self.calls = real, answer, error, 0

    def from_ndarray(self, pixels: np.ndarray) -> bytes:
        self.calls += 1
        if self.error is not None:
            raise self.error
        return self.answer if self.answer is not None else self.real.from_ndarray(pixels)  # type: ignore[attr-defined]


@pytest.fixture
def spy(monkeypatch: pytest.MonkeyPatch) -> _Spy:
    fake = _Spy(png._fpng)
    monkeypatch.setattr(png, "_fpng", fake)
    return fake


@pytest.mark.parametrize("pixels", ARRAYS)
@pytest.mark.parametrize("level", [1, 0, 6], ids=lambda level: f"level{level}")
def test_png_decodes_to_exactly_the_pixels(pixels, level):
    assert np.array_equal(_decoded(png.encode_png(pixels, level)), pixels)


@pytest.mark.parametrize(
    ("pixels", "fpng_calls"),
    [
        pytest.param(_noise(8, 8, 3), 1, id="rgb"),
        pytest.param(_noise(8, 8, 4), 1, id="rgba"),
        pytest.param(_noise(8, 8), 0, id="gray"),
        pytest.param(_noise(8, 8).astype(np.uint16) * 257, 0, id="gray-16-bit"),
    ],
)
def test_fpng_writes_8_bit_rgb_and_rgba_at_the_fast_level_only(spy, pixels, fpng_calls):
    png.encode_png(pixels, png.FAST_LEVEL)
    png.encode_png(_noise(8, 8, 3), 6)  # a slower level is Pillow's, for smaller answers
    assert spy.calls == fpng_calls


@pytest.mark.parametrize(
    "failure",
    [
        pytest.param({"error": RuntimeError("fpng")}, id="raises"),
        pytest.param({"answer": b""}, id="empty"),
    ],
)
def test_pillow_answers_when_fpng_fails(monkeypatch, failure):
    fake = _Spy(png._fpng, **failure)
    monkeypatch.setattr(png, "_fpng", fake)
    pixels = _photo("RGB")
    assert np.array_equal(_decoded(png.encode_png(pixels)), pixels)
    assert fake.calls == 1


def test_pillow_answers_when_fpng_is_not_importable(monkeypatch):
    monkeypatch.setitem(sys.modules, "fpng", None)  # makes `import fpng` raise ImportError
    assert png._import_fpng() is None
    monkeypatch.setattr(png, "_fpng", None)
    pixels = _photo("RGB")
    assert np.array_equal(_decoded(png.encode_png(pixels)), pixels)


@pytest.mark.parametrize("channels", [3, 1], ids=["rgb", "gray"])
def test_encode_image_answers_the_rounded_pixels(channels):
    image = RNG.random((channels, 19, 23), dtype=np.float32)
    expected = (image * 255.0 + 0.5).astype(np.uint8)
    decoded = _decoded(encode_image(image, "image/png", png.FAST_LEVEL))
    assert np.array_equal(decoded, expected[0] if channels == 1 else expected.transpose(1, 2, 0))


def test_service_png_answers_are_the_same_pixels_with_and_without_fpng(client, spy, monkeypatch):
    body = png_bytes(37, 53, seed=5)
    headers = {"content-type": "image/png"}
    fast = client.post("/v1/models/tiny-image/reconstruct", content=body, headers=headers)
    assert fast.status_code == HTTPStatus.OK and fast.headers["content-type"] == "image/png"
    assert spy.calls == 1
    monkeypatch.setattr(png, "_fpng", None)
    fallback = client.post("/v1/models/tiny-image/reconstruct", content=body, headers=headers)
    assert fallback.content != fast.content  # two encoders, as the spy says
    assert np.array_equal(decode_png(fallback.content), decode_png(fast.content))
