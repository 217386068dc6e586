"""JSON request bodies, parsed strictly: orjson first, the standard library only for what orjson refuses."""

from __future__ import annotations

import json
from typing import Any

import orjson

from service.errors import DecodingError


def parse_json(data: bytes) -> Any:
    """Strict JSON from bytes: UTF-8, bounded nesting.

    orjson is ~3x faster than `json` on number arrays, but it refuses NaN, Infinity and 1e999
    (it reads integers over 64 bits as floats), which `json` reads (the codecs then answer 422, as before).
    So a body orjson refuses is read again by `json`; only malformed bodies pay twice.
    """
    if not data:
        raise DecodingError("the request body is empty; send JSON")
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        pass
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DecodingError("the body is not UTF-8") from error
    except (json.JSONDecodeError, RecursionError) as error:
        raise DecodingError("the body is not valid JSON") from error
