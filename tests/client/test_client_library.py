"""`Client` and `AsyncClient` against a real server: typed answers for every operation, and typed errors."""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

import numpy as np
import pytest
from PIL import Image

from client import (
    AsyncClient,
    BadRequestError,
    Client,
    Compressed,
    ImageResult,
    InvalidInputError,
    Latent,
    NotFoundError,
    SeriesReconstruction,
    ServiceUnreachableError,
    UnsupportedOperationError,
)
from tests.client.conftest import png, series, smooth_png
from tests.service.server import free_port


def test_models_are_typed_records(server_url: str) -> None:
    with Client(server_url) as client:
        models = {model.name: model for model in client.models()}
    assert {"tiny-image", "tiny-seq", "tiny-denoise", "tiny-codec"} <= set(models)
    assert [v.version for v in models["tiny-seq"].versions] == [1, 2]
    assert models["tiny-codec"].default.task == "compress"
    assert models["tiny-denoise"].default.operations == ("reconstruct",)
    assert models["tiny-image"].default.input_kind == "image"


def test_latents_are_arrays_and_decode_back_to_the_image_size(server_url: str) -> None:
    with Client(server_url) as client:
        latent = client.encode_image(png(40, 48), "tiny-image")
        image = client.decode_latent(latent, "tiny-image")
        bare = client.decode_latent(latent.array, "tiny-image")
    assert isinstance(latent, Latent) and latent.array.dtype == np.float32
    assert latent.array.ndim == 3 and latent.image_size == (40, 48)
    assert image.size == (48, 40)
    assert bare.size == (latent.array.shape[2] * 4, latent.array.shape[1] * 4)  # no size: the padded image


def test_images_go_in_as_bytes_paths_arrays_or_pil(server_url: str, tmp_path) -> None:
    path = tmp_path / "in.png"
    path.write_bytes(png(32, 32))
    pixels = np.asarray(Image.open(path))
    with Client(server_url) as client:
        answers = [client.reconstruct_image(one, "tiny-image") for one in (path, str(path), pixels, Image.open(path))]
        denoised = client.denoise(path.read_bytes(), "tiny-denoise")
    assert all(isinstance(answer, ImageResult) and answer.image.size == (32, 32) for answer in answers)
    assert answers[0].psnr is None and denoised.image.size == (32, 32)


def test_compress_then_decompress_by_the_stream_header(server_url: str) -> None:
    with Client(server_url) as client:
        packed = client.compress(png(40, 48), "tiny-codec")
        image = client.decompress(packed.stream)
        codec_answer = client.reconstruct_image(png(40, 48), "tiny-codec")
    assert isinstance(packed, Compressed) and packed.model == "tiny-codec" and packed.version == 1
    assert packed.bits_per_pixel == pytest.approx(len(packed.stream) * 8 / (40 * 48), abs=1e-3)
    assert (packed.height, packed.width) == (40, 48) and packed.quality is None  # a fixed-rate codec
    assert image.size == (48, 40)
    assert codec_answer.psnr is not None and codec_answer.bits_per_pixel is not None


def test_a_variable_rate_codec_takes_a_quality_or_a_size_target(server_url: str) -> None:
    image, pixels = smooth_png(64, 80, seed=4), 64 * 80
    with Client(server_url) as client:
        low, high, chosen, default = (
            client.compress(image, "tiny-hyperprior", quality=quality) for quality in (0, 1, 0.3, None)
        )
        budget = (len(low.stream) + len(high.stream)) // 2
        capped = client.compress(image, "tiny-hyperprior", max_bytes=budget)
        by_rate = client.compress(image, "tiny-hyperprior", target_bpp=budget * 8 / pixels)
        decoded = client.decompress(capped.stream)
    assert (low.quality, high.quality) == (0.0, 1.0) and len(high.stream) > len(low.stream)
    assert chosen.quality == pytest.approx(0.3, abs=1e-4) and default.quality == pytest.approx(0.5, abs=1e-4)
    assert chosen.model == "tiny-hyperprior" and chosen.bits_per_pixel > 0
    for capped_answer in (capped, by_rate):  # a size target is never exceeded; the quality found comes back
        assert len(capped_answer.stream) <= budget
        assert capped_answer.quality is not None and 0.0 <= capped_answer.quality <= 1.0
    assert decoded.size == (80, 64)


@pytest.mark.parametrize(
    "rate",
    [
        pytest.param({"quality": 0.5, "max_bytes": 100}, id="quality-and-max-bytes"),
        pytest.param({"quality": 0.5, "target_bpp": 0.3}, id="quality-and-target-bpp"),
        pytest.param({"target_bpp": 0.3, "max_bytes": 100}, id="target-bpp-and-max-bytes"),
    ],
)
def test_two_rate_requests_are_refused_before_sending(rate: dict[str, Any]) -> None:
    # No server at this port: a request sent would be ServiceUnreachableError, not ValueError.
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, timeout_s=2) as client, pytest.raises(ValueError, match="ask for one of"):
        client.compress(png(), "tiny-hyperprior", **rate)

    async def run() -> None:
        async with AsyncClient(url, timeout_s=2) as client:
            await client.compress(png(), "tiny-hyperprior", **rate)

    with pytest.raises(ValueError, match="ask for one of"):
        asyncio.run(run())


def test_sequences_embed_and_reconstruct_with_scores(server_url: str) -> None:
    with Client(server_url) as client:
        embeddings = client.embed(series(3), "tiny-seq", version=1)
        scored = client.reconstruct_series(series(3), "tiny-seq", version=2, threshold=0.5)
        unflagged = client.reconstruct_series(series(2), "tiny-seq", version=2)
    assert embeddings.shape[0] == 3 and embeddings.dtype == np.float32
    assert isinstance(scored, SeriesReconstruction) and len(scored) == 3
    assert [r.shape for r in scored.reconstructions] == [(60,)] * 3
    assert scored.anomaly is not None and scored.anomaly.dtype == bool
    assert scored.anomaly.tolist() == (scored.errors > 0.5).tolist()
    assert unflagged.anomaly is None and unflagged.percentiles is None  # tiny-seq has no calibration


def test_many_series_are_cut_to_the_batch_limit_and_kept_in_order(server_url: str) -> None:
    many = series(23, seed=3)
    with Client(server_url) as client:
        whole = client.embed(many, "tiny-seq", version=1)
        batched = client.embed_many(many, "tiny-seq", version=1, batch_size=5, concurrency=3)
        scored = client.reconstruct_series_many(many, "tiny-seq", version=2, threshold=0.1, batch_size=4)
        with pytest.raises(InvalidInputError, match="exceeds the limit"):
            client.embed([[0.0] * 4] * 300, "tiny-seq", version=1)  # the server's default limit is 256
    np.testing.assert_allclose(batched, whole, atol=1e-5)
    assert len(scored) == 23 and scored.anomaly is not None and len(scored.anomaly) == 23


def test_async_client_gives_the_same_answers(server_url: str) -> None:
    async def run() -> tuple[np.ndarray, np.ndarray, Compressed, Compressed, Image.Image]:
        async with AsyncClient(server_url) as client:
            embeddings, batched, packed, rated = await asyncio.gather(
                client.embed(series(7), "tiny-seq", version=1),
                client.embed_many(series(7), "tiny-seq", version=1, batch_size=2, concurrency=2),
                client.compress(png(), "tiny-codec"),
                client.compress(smooth_png(64, 64), "tiny-hyperprior", quality=0.25),
            )
            return embeddings, batched, packed, rated, await client.decompress(packed.stream)

    embeddings, batched, packed, rated, image = asyncio.run(run())
    np.testing.assert_allclose(batched, embeddings, atol=1e-5)
    assert packed.model == "tiny-codec" and image.size == (48, 40)
    assert rated.model == "tiny-hyperprior" and rated.quality == pytest.approx(0.25, abs=1e-4)


@pytest.mark.parametrize(
    ("call", "error", "status", "code"),
    [
        pytest.param(
            lambda c: c.encode_image(png(), "nope"), NotFoundError, HTTPStatus.NOT_FOUND, "not_found", id="404"
        ),
        pytest.param(
            lambda c: c.encode_image(png(), "tiny-denoise"),
            UnsupportedOperationError,
            HTTPStatus.CONFLICT,
            "unsupported_operation",
            id="409",
        ),
        pytest.param(
            lambda c: c.decompress(b"not a stream at all"),
            BadRequestError,
            HTTPStatus.BAD_REQUEST,
            "undecodable_body",
            id="400",
        ),
        pytest.param(
            lambda c: c.embed([[1e31, 0.0, 1.0]], "tiny-seq", version=1),
            InvalidInputError,
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "invalid_input",
            id="422",
        ),
        pytest.param(
            lambda c: c.compress(png(32, 32), "tiny-codec", quality=0.5),
            InvalidInputError,
            HTTPStatus.UNPROCESSABLE_ENTITY,
            "invalid_input",
            id="422-rate-asked-of-a-fixed-rate-codec",
        ),
    ],
)
def test_errors_carry_the_servers_status_code_and_message(server_url: str, call, error, status, code) -> None:
    with Client(server_url) as client, pytest.raises(error) as raised:
        call(client)
    assert raised.value.status == status and raised.value.code == code and raised.value.message


def test_no_server_is_service_unreachable() -> None:
    with Client(f"http://127.0.0.1:{free_port()}", timeout_s=2) as client, pytest.raises(ServiceUnreachableError):
        client.models()
