"""Optional bearer API keys: with none configured everything is open."""

from __future__ import annotations

import hmac

from fastapi import Request

from service.errors import UnauthorizedError


def _authorized(request: Request) -> bool:
    keys = request.app.state.service.settings.api_keys
    if not keys:
        return True
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return False
    # Compare against every key in constant time, so timing does not reveal a matching prefix.
    return any(hmac.compare_digest(token.encode(), key.encode()) for key in keys)


def check_api_key(request: Request) -> None:
    """401 unless the request carries `Authorization: Bearer <a configured key>`."""
    if not _authorized(request):
        raise UnauthorizedError(
            "a valid API key is required: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
        )


async def require_api_key(request: Request) -> None:
    """The dependency form of `check_api_key` (async: no thread hop for a header check)."""
    check_api_key(request)


async def require_api_key_for_health(request: Request) -> None:
    """Like `require_api_key`, when AE_AUTH_HEALTH is set."""
    if request.app.state.service.settings.auth_health:
        check_api_key(request)


async def require_api_key_for_metrics(request: Request) -> None:
    """Like `require_api_key`, when AE_AUTH_METRICS is set."""
    if request.app.state.service.settings.auth_metrics:
        check_api_key(request)
