"""Optional bearer API keys: with none configured everything is open."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.api.rate_limit import check_rate_limit
from service.errors import UnauthorizedError


def key_index(keys: list[str], authorization: str | None) -> int | None:
    """The index of the configured key an `Authorization: Bearer <key>` value carries; None without one."""
    scheme, _, token = (authorization or "").partition(" ")
    if not keys or scheme.lower() != "bearer" or not token:
        return None
    # Compare against every key in constant time and without stopping at a match, so timing reveals
    # neither a matching prefix nor which key matched.
    matches = [hmac.compare_digest(token.encode(), key.encode()) for key in keys]
    return matches.index(True) if any(matches) else None


def check_key(keys: list[str], authorization: str | None) -> int | None:
    """401 unless `authorization` (a header, or gRPC's `authorization` metadata) is `Bearer <a configured key>`.

    Returns the key's index in AE_API_KEYS (what the rate limit counts by: the key itself is never kept
    or logged), or None when no keys are configured and everything is open.
    """
    if not keys:
        return None
    index = key_index(keys, authorization)
    if index is None:
        raise UnauthorizedError(
            "a valid API key is required: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
        )
    return index


def check_api_key(request: Request) -> int | None:
    """`check_key` on the request's `Authorization` header and the configured AE_API_KEYS."""
    return check_key(request.app.state.service.settings.api_keys, request.headers.get("authorization"))


def check_access(request: Request) -> None:
    """The API key, then its rate limit: for the model listing and inference, before any body is read."""
    check_rate_limit(request, check_api_key(request))


async def require_access(request: Request) -> None:
    """The dependency form of `check_access` (async: no thread hop for a header check)."""
    check_access(request)


async def require_api_key_for_health(request: Request) -> None:
    """`check_api_key` when AE_AUTH_HEALTH is set. Never rate limited: probes must always get through."""
    if request.app.state.service.settings.auth_health:
        check_api_key(request)


async def require_api_key_for_metrics(request: Request) -> None:
    """`check_api_key` when AE_AUTH_METRICS is set. Never rate limited."""
    if request.app.state.service.settings.auth_metrics:
        check_api_key(request)
