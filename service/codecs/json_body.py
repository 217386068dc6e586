"""JSON request bodies, parsed strictly: orjson first, the standard library only for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import orjson

from service.errors import DecodingError, InvalidInputError

# An integer literal longer than this is beyond float64 (whose largest value, 1.8e308, has 309 digits),
# so no model input can use it. The bound is checked on the literal's text, before any conversion:
# Python's int() refuses more than 4300 digits with a ValueError (which answered 500) and costs time
# quadratic in the digits below that.
MAX_INTEGER_DIGITS = 309
# Integers within 64 bits stay integers; beyond, they become floats, as orjson reads them, so that a body
# gets the same answer whichever parser reads it (`inf` beyond float64's range, which the codecs refuse).
_INT64_MIN, _UINT64_MAX = -(2**63), 2**64 - 1


def _bounded_int(literal: str) -> int | float:
    """A JSON integer literal read within `MAX_INTEGER_DIGITS`, as orjson reads it (see `_UINT64_MAX`)."""
    digits = len(literal) - literal.startswith("-")
    if digits > MAX_INTEGER_DIGITS:
        raise InvalidInputError(
            f"the body holds an integer of {digits} digits; numbers must fit a float64 "
            f"(at most {MAX_INTEGER_DIGITS} digits): send large values in exponent form, e.g. 1.5e30"
        )
    value = int(literal)
    return value if _INT64_MIN <= value <= _UINT64_MAX else float(literal)


def parse_json(data: bytes) -> Any:
    """Strict JSON from bytes: UTF-8, bounded nesting, integer literals of at most `MAX_INTEGER_DIGITS` digits.

    orjson is ~3x faster than `json` on number arrays, but it refuses NaN, Infinity and 1e999
    (it reads integers over 64 bits as floats), which `json` reads (the codecs then answer 422, as before).
    So a body orjson refuses is read again by `json`; only malformed bodies pay twice. orjson itself
    refuses any number beyond float64's range, so the digit bound only concerns the second reading.
    """
    if not data:
        raise DecodingError("the request body is empty; send JSON")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data.decode("utf-8"), parse_int=_bounded_int)
    except UnicodeDecodeError as error:
        raise DecodingError("the body is not UTF-8") from error
    except (json.JSONDecodeError, RecursionError) as error:
        raise DecodingError("the body is not valid JSON") from error
