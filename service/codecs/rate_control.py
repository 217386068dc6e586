"""Rate control of a variable-rate codec's encode: a quality, or a size the stream must not exceed.

A request asks for at most one of:

- `quality` in [0, 1]: coded at that quality (rounded to the stream's 16-bit field);
- `target_bpp` > 0: the stream's bits (header and checksum included) per pixel of the original image;
- `max_bytes` >= 1: the stream's bytes.

(query parameters of the same names, or headers `X-Quality`, `X-Target-Bpp`, `X-Max-Bytes`). A size
target is met by bisection on the quality, each step coding the whole stream as it would be answered
(header, every tile, signature): the answer is never larger than the target, and it stops as soon as
a stream lands within `TOLERANCE` below it. When even the highest quality stays below the target, that
is the answer; when even quality 0 is above it, the request is refused (422) with the smallest size
this image can take. The graphs run once: only the hyper transforms and the range coder repeat.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from service.codecs.hyperprior import QUALITY_STEPS, quantized_quality
from service.errors import InvalidInputError

DEFAULT_QUALITY = 0.5
TOLERANCE = 0.05  # a size target is met within 5% below it when the model's range allows
PARAMETERS = ("quality", "target_bpp", "max_bytes")
_HEADERS = {"quality": "x-quality", "target_bpp": "x-target-bpp", "max_bytes": "x-max-bytes"}


@dataclass(frozen=True)
class RateRequest:
    """What a request asked of the stream's rate (nothing: the model's default)."""

    quality: float | None = None
    target_bpp: float | None = None
    max_bytes: int | None = None

    @property
    def asked(self) -> bool:
        """Whether the request set any of the three."""
        return (self.quality, self.target_bpp, self.max_bytes) != (None, None, None)

    def budget(self, height: int, width: int) -> int | None:
        """The largest stream in bytes the request allows for an image of this size, None without a size target."""
        if self.max_bytes is not None:
            return self.max_bytes
        if self.target_bpp is not None:
            return math.floor(self.target_bpp * height * width / 8)
        return None

    def fixed_quality(self) -> int:
        """The u16 quality of a request without a size target."""
        return quantized_quality(DEFAULT_QUALITY if self.quality is None else self.quality)


DEFAULT_RATE = RateRequest()  # nothing asked: a variable-rate codec codes at DEFAULT_QUALITY


def rate_request(query: Mapping[str, str], headers: Mapping[str, str]) -> RateRequest:
    """The rate a request asks for, from its query parameters or headers; 422 for anything malformed."""
    values: dict[str, str] = {}
    for name in PARAMETERS:
        value = query.get(name, headers.get(_HEADERS[name]))
        if value is not None:
            values[name] = value
    if len(values) > 1:
        raise InvalidInputError(f"ask for one of quality, target_bpp and max_bytes, not {' and '.join(values)}")
    if "quality" in values:
        quality = _number(values["quality"], "quality")
        if not 0.0 <= quality <= 1.0:
            raise InvalidInputError(f"quality must be in [0, 1], got {values['quality']}")
        return RateRequest(quality=quality)
    if "target_bpp" in values:
        bpp = _number(values["target_bpp"], "target_bpp")
        if not 0.0 < bpp <= 64.0:
            raise InvalidInputError(f"target_bpp must be in (0, 64], got {values['target_bpp']}")
        return RateRequest(target_bpp=bpp)
    if "max_bytes" in values:
        text = values["max_bytes"]
        if not text.isdigit() or len(text) > 12 or int(text) < 1:
            raise InvalidInputError(f"max_bytes must be a whole number from 1, of at most 12 digits, got {text[:40]!r}")
        return RateRequest(max_bytes=int(text))
    return RateRequest()


def _number(text: str, name: str) -> float:
    try:
        value = float(text[:40])
    except ValueError:
        raise InvalidInputError(f"{name} must be a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{name} must be finite, got {text[:40]!r}")
    return value


def stream_within(code: Callable[[int], bytes], budget: int) -> tuple[bytes, int]:
    """(stream, u16 quality): the highest-quality stream found of at most `budget` bytes (see the module doc)."""
    low = code(0)
    if len(low) > budget:
        raise InvalidInputError(
            f"the smallest stream of this image is {len(low)} bytes (quality 0), above the {budget} asked for"
        )
    high = code(QUALITY_STEPS)
    if len(high) <= budget:
        return high, QUALITY_STEPS
    best, best_quality = low, 0
    below, above = 0, QUALITY_STEPS  # code(below) fits, code(above) does not
    while above - below > 1 and len(best) < (1 - TOLERANCE) * budget:
        middle = (below + above) // 2
        stream = code(middle)
        if len(stream) <= budget:
            below, best, best_quality = middle, stream, middle
        else:
            above = middle
    return best, best_quality
