"""Model control's errors and its admin check: admin keys apart from inference keys, compared in constant time."""

from __future__ import annotations

import hmac
from http import HTTPStatus

from service.config import Settings
from service.errors import ModelUnavailableError, ServiceError, UnauthorizedError


class ForbiddenError(ServiceError):
    """A valid key that may not do this (an inference key on model control), or model control without admin keys."""

    status = HTTPStatus.FORBIDDEN
    code = "forbidden"


class ModelControlDisabledError(ServiceError):
    """Load or unload asked of a service whose AE_MODEL_CONTROL does not take them (none, poll)."""

    status = HTTPStatus.CONFLICT
    code = "model_control_disabled"


class UnsupportedParameterError(ServiceError):
    """A load parameter this service does not support (Triton's `config`, `file:...` overrides)."""

    status = HTTPStatus.BAD_REQUEST
    code = "unsupported_parameter"


class ModelLoadFailedError(ModelUnavailableError):
    """A load that failed; the versions that served before keep serving."""

    code = "model_load_failed"


def _bearer(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").partition(" ")
    return (token.strip() or None) if scheme.lower() == "bearer" else None


def _matches(token: str, keys: list[str]) -> bool:
    # Every key is compared, without stopping at a match: timing reveals neither a prefix nor which key.
    matches = [hmac.compare_digest(token.encode(), key.encode()) for key in keys]
    return any(matches)


def check_admin(settings: Settings, authorization: str | None) -> None:
    """Pass for `Bearer <an AE_ADMIN_KEYS key>`; 403 without admin keys configured or for an inference key; else 401.

    `authorization` is the HTTP Authorization header or the gRPC `authorization` metadata value.
    """
    if not settings.admin_keys:
        raise ForbiddenError("model control needs AE_ADMIN_KEYS (admin keys, apart from the inference keys)")
    token = _bearer(authorization)
    if token is None:
        raise UnauthorizedError(
            "an admin key is required: Authorization: Bearer <key>", headers={"WWW-Authenticate": "Bearer"}
        )
    if _matches(token, [key.get_secret_value() for key in settings.admin_keys]):
        return
    if _matches(token, settings.api_keys):
        raise ForbiddenError("this key may run inference but not model control: use a key of AE_ADMIN_KEYS")
    raise UnauthorizedError("invalid admin key", headers={"WWW-Authenticate": "Bearer"})
