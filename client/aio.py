"""`AsyncClient`: `Client`'s methods as coroutines (httpx.AsyncClient), for asyncio programs."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
import numpy as np
from PIL import Image

from client import wire
from client.batching import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_CONCURRENCY,
    batches,
    merge_embeddings,
    merge_reconstructions,
)
from client.errors import ServiceUnreachableError, error_from_answer
from client.results import Compressed, ImageResult, Latent, ModelInfo, SeriesReconstruction
from client.retry import RetryPolicy, parse_retry_after
from client.settings import ClientSettings
from client.wire import Call, ImageInput, SeriesInput

T = TypeVar("T")


class AsyncClient:
    """Asynchronous client of an `ae-serve`; `async with AsyncClient(...) as client:`.

    `url` and `api_key` default to AE_URL and AE_API_KEY; 503 and 429 answers are retried as
    `retry` allows; an error answer raises a `ServiceError` subclass with the server's code and message.
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout_s: float = 60.0,
        retry: RetryPolicy | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = ClientSettings(url, api_key, timeout_s, retry or RetryPolicy())
        self._http = httpx.AsyncClient(
            base_url=self.settings.base_url,
            headers=self.settings.headers,
            timeout=timeout_s,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def models(self) -> list[ModelInfo]:
        """The served models and their loaded versions."""
        return wire.read_models(await self._send(Call("GET", "/v1/models")))

    async def encode_image(self, image: ImageInput, model: str, version: int | None = None) -> Latent:
        """Image -> latent array (without the batch axis) and the image size to decode back to."""
        call = wire.image_call(model, "encode", image, version, accept=wire.NPY)
        return wire.read_latent(await self._send(call))

    async def decode_latent(self, latent: Latent | np.ndarray, model: str, version: int | None = None) -> Image.Image:
        """Latent -> image (cropped to the latent's `image_size` when it has one)."""
        return wire.read_image(await self._send(wire.latent_call(model, latent, version))).image

    async def reconstruct_image(
        self, image: ImageInput, model: str, version: int | None = None, accept: str = "image/png"
    ) -> ImageResult:
        """Image -> image of the same size; a codec also reports its PSNR and bits per pixel."""
        return wire.read_image(await self._send(wire.image_call(model, "reconstruct", image, version, accept)))

    async def denoise(self, image: ImageInput, model: str, version: int | None = None) -> ImageResult:
        """A denoiser's reconstruct: noisy image -> clean image of the same size."""
        return await self.reconstruct_image(image, model, version)

    async def compress(
        self,
        image: ImageInput,
        model: str,
        version: int | None = None,
        *,
        quality: float | None = None,
        target_bpp: float | None = None,
        max_bytes: int | None = None,
    ) -> Compressed:
        """Image -> compressed stream, with its rate, quality and the model version that wrote it.

        A variable-rate codec takes at most one of `quality` (in [0, 1]), `target_bpp` or `max_bytes`
        (the stream never exceeds a size target); none: its default quality. More than one is a
        ValueError, raised before sending; a fixed-rate codec answers any of them with 422
        (`InvalidInputError`).
        """
        params = wire.rate_params(quality, target_bpp, max_bytes)
        return wire.read_compressed(await self._send(wire.image_call(model, "encode", image, version, params=params)))

    async def decompress(self, stream: bytes) -> Image.Image:
        """Stream -> image, decoded by the model and version its header names (`POST /v1/decode`)."""
        call = Call("POST", "/v1/decode", content=stream, headers={"content-type": wire.STREAM})
        return wire.read_image(await self._send(call)).image

    async def embed(self, series: SeriesInput, model: str, version: int | None = None) -> np.ndarray:
        """Series -> (series, size) embeddings, in one request."""
        call = Call("POST", wire.model_path(model, "encode", version), json=wire.series_payload(series))
        return wire.read_embeddings(await self._send(call))

    async def reconstruct_series(
        self, series: SeriesInput, model: str, version: int | None = None, threshold: float | None = None
    ) -> SeriesReconstruction:
        """Series -> reconstructions, errors and (calibrated model or `threshold`) anomaly flags."""
        payload = wire.series_payload(series, threshold=threshold)
        call = Call("POST", wire.model_path(model, "reconstruct", version), json=payload)
        return wire.read_series_reconstruction(await self._send(call))

    async def embed_many(
        self,
        series: SeriesInput,
        model: str,
        version: int | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> np.ndarray:
        """`embed` over any number of series: requests of at most `batch_size`, `concurrency` at a time."""
        parts = await self._map(lambda part: self.embed(part, model, version), list(series), batch_size, concurrency)
        return merge_embeddings(parts)

    async def reconstruct_series_many(
        self,
        series: SeriesInput,
        model: str,
        version: int | None = None,
        threshold: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> SeriesReconstruction:
        """`reconstruct_series` over any number of series, batched as `embed_many` is."""
        parts = await self._map(
            lambda part: self.reconstruct_series(part, model, version, threshold), list(series), batch_size, concurrency
        )
        return merge_reconstructions(parts)

    async def _map(
        self, run: Callable[[Any], Awaitable[T]], series: list[Any], batch_size: int, concurrency: int
    ) -> list[T]:
        # A semaphore, not a pool: at most `concurrency` requests in flight, answers kept in batch order.
        gate = asyncio.Semaphore(max(1, concurrency))

        async def bounded(part: Any) -> T:
            async with gate:
                return await run(part)

        return list(await asyncio.gather(*(bounded(part) for part in batches(series, batch_size))))

    async def _send(self, call: Call) -> httpx.Response:
        """Send `call`, retrying 503/429 as the policy allows; the answer, or the error it carries."""
        policy, waited, attempt = self.settings.retry, 0.0, 1
        while True:
            try:
                answer = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.content,
                    json=call.json,
                    headers=call.headers,
                )
            except httpx.TransportError as error:
                raise ServiceUnreachableError(
                    f"{call.method} {self.settings.base_url}{call.path}: {error!r}"
                ) from error
            if answer.is_success:
                return answer
            retry_after = parse_retry_after(answer.headers.get("retry-after"))
            wait = policy.delay(answer.status_code, retry_after, attempt, waited)
            if wait is None:
                raise error_from_answer(answer.status_code, answer.content, retry_after)
            await asyncio.sleep(wait)
            waited, attempt = waited + wait, attempt + 1
