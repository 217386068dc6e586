"""Rate control of a variable-rate codec's encode: a quality, or a size the stream must not exceed.

A request asks for at most one of:

- `quality` in [0, 1]: coded at that quality (rounded to the stream's 16-bit field);
- `target_bpp` > 0: the stream's bits (header and checksum included) per pixel of the original image;
- `max_bytes` >= 1: the stream's bytes.

(query parameters of the same names, or headers `X-Quality`, `X-Target-Bpp`, `X-Max-Bytes`). A size
target is met by a safeguarded search on the quality, each step coding the whole stream as it would be
answered (header, every tile, signature): the answer is never larger than the target, and it stops as
soon as a stream lands within `TOLERANCE` below it. When even the highest quality stays below the
target, that is the answer; when even quality 0 is above it, the request is refused (422) with the
smallest size this image can take. The graphs run once: only the hyper transforms and the range coder
repeat, so each step costs about a tenth of an encode.

The search interpolates in log(size), which is nearly linear in the quality, and falls back to halving
the interval every third step, so it needs 3 to 5 codings where bisection needs up to 18, and never more
than bisection's bound three times over. It stops at the request's deadline too, answering the best
stream that fits found so far (the caller answers 504 once the deadline is past).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from service.codecs.hyperprior import QUALITY_STEPS, quantized_quality
from service.errors import InvalidInputError

DEFAULT_QUALITY = 0.5
TOLERANCE = 0.05  # a size target is met within 5% below it when the model's range allows
PARAMETERS = ("quality", "target_bpp", "max_bytes")
_HEADERS = {"quality": "x-quality", "target_bpp": "x-target-bpp", "max_bytes": "x-max-bytes"}
_WHOLE = re.compile(r"[0-9]{1,12}")  # ASCII digits only: str.isdigit() also takes "²", which int() refuses
_LONGEST = 40  # characters of a number; longer is refused, not cut


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
        if _WHOLE.fullmatch(text) is None or int(text) < 1:
            raise InvalidInputError(f"max_bytes must be a whole number from 1, of at most 12 digits, got {text[:40]!r}")
        return RateRequest(max_bytes=int(text))
    return RateRequest()


def _number(text: str, name: str) -> float:
    if len(text) > _LONGEST:
        raise InvalidInputError(f"{name} must be a number of at most {_LONGEST} characters, got {text[:40]!r}...")
    try:
        value = float(text)
    except ValueError:
        raise InvalidInputError(f"{name} must be a number, got {text[:40]!r}") from None
    if not math.isfinite(value):
        raise InvalidInputError(f"{name} must be finite, got {text[:40]!r}")
    return value


def stream_within(code: Callable[[int], bytes], budget: int, deadline: float | None = None) -> tuple[bytes, int]:
    """(stream, u16 quality): the highest-quality stream found of at most `budget` bytes (see the module doc).

    `deadline` is on the `time.monotonic` clock (the event loop's).
    """
    low = code(0)
    if len(low) > budget:
        raise InvalidInputError(
            f"the smallest stream of this image is {len(low)} bytes (quality 0), above the {budget} asked for"
        )
    high = code(QUALITY_STEPS)
    if len(high) <= budget:
        return high, QUALITY_STEPS
    best, best_quality = low, 0
    below, above = (0, len(low)), (QUALITY_STEPS, len(high))  # (quality, size): below fits, above does not
    goal = math.log((1 - TOLERANCE / 2) * budget)  # aim at the middle of the band
    step = 0
    while above[0] - below[0] > 1 and len(best) < (1 - TOLERANCE) * budget:
        if deadline is not None and time.monotonic() > deadline:
            break
        step += 1
        if step % 3 == 0:  # the safeguard: bisection's progress whatever the curve's shape
            quality = (below[0] + above[0]) // 2
        else:
            fraction = (goal - math.log(below[1])) / (math.log(above[1]) - math.log(below[1]))
            quality = below[0] + round(fraction * (above[0] - below[0]))
        quality = min(max(quality, below[0] + 1), above[0] - 1)
        stream = code(quality)
        if len(stream) <= budget:
            below, best, best_quality = (quality, len(stream)), stream, quality
        else:
            above = (quality, len(stream))
    return best, best_quality
