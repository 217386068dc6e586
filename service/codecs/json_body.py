"""JSON request bodies, parsed strictly."""

from __future__ import annotations

import json
from typing import Any

from service.errors import DecodingError


def parse_json(data: bytes) -> Any:
    """Strict JSON from bytes: UTF-8, bounded nesting (json raises RecursionError on deep input)."""
    if not data:
        raise DecodingError("the request body is empty; send JSON")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as error:
        raise DecodingError("the body is not UTF-8") from error
    except (json.JSONDecodeError, RecursionError) as error:
        raise DecodingError("the body is not valid JSON") from error
