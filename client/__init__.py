"""Python client and `ae` command line for an `ae-serve` service (no torch, no service code).

    from client import Client

    with Client("http://localhost:8000", api_key="...") as ae:
        packed = ae.compress("photo.png", "image-codec-q3")
        image = ae.decompress(packed.stream)

See docs/client.md.
"""

from client.aio import AsyncClient
from client.errors import (
    BadRequestError,
    ClientError,
    GatewayTimeoutError,
    InvalidInputError,
    NotFoundError,
    OverloadedError,
    PayloadTooLargeError,
    RateLimitedError,
    ServiceError,
    ServiceUnreachableError,
    UnauthorizedError,
    UnsupportedOperationError,
    UnsupportedOptionError,
)
from client.results import Compressed, ImageResult, Latent, ModelInfo, SeriesReconstruction, VersionInfo
from client.retry import NO_RETRIES, RetryPolicy
from client.sync import Client

__all__ = [
    "NO_RETRIES",
    "AsyncClient",
    "BadRequestError",
    "Client",
    "ClientError",
    "Compressed",
    "GatewayTimeoutError",
    "ImageResult",
    "InvalidInputError",
    "Latent",
    "ModelInfo",
    "NotFoundError",
    "OverloadedError",
    "PayloadTooLargeError",
    "RateLimitedError",
    "RetryPolicy",
    "SeriesReconstruction",
    "ServiceError",
    "ServiceUnreachableError",
    "UnauthorizedError",
    "UnsupportedOperationError",
    "UnsupportedOptionError",
    "VersionInfo",
]
