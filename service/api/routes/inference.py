"""encode, decode and reconstruct, for the default version and for an explicit one.

Each route: check the model offers the operation (409 before reading a byte), read the body (within
its size limit and read deadline, before taking an admission slot: a slow client holds a connection,
not the model's queue), take a slot, parse the body for the model's input kind, run prepare -> batched
run -> finish through the runner, answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from service import compression as c
from service import pipelines as p
from service.api.bodies import binary_body, image_bytes, json_body, latent_body, request_body
from service.api.deps import InferenceDep
from service.api.openapi import DECODE_DOC, ENCODE_DOC, RECONSTRUCT_DOC
from service.codecs.bitstream import MIME as STREAM
from service.codecs.image import choose_image_format
from service.codecs.latent import NPY_MIME, latent_to_json, latent_to_npy
from service.compression import EncodedImage
from service.config import Settings
from service.errors import InvalidInputError
from service.manifest import ImageInputSpec
from service.repository import LoadedModel
from service.runner import PipelineRunner
from service.schemas import DecodedSequencesResponse, EmbeddingsResponse, LatentResponse, ReconstructionsResponse

router = APIRouter(tags=["inference"])
JSON = "application/json"


def _is_image(model: LoadedModel) -> bool:
    return isinstance(model.manifest.input, ImageInputSpec)


def _ids(model: LoadedModel) -> dict[str, Any]:
    return {"model": model.manifest.name, "version": model.manifest.version}


def _is_codec(model: LoadedModel) -> bool:
    return model.tables is not None


async def _encode_stream(model: LoadedModel, data: bytes, settings: Settings, runner: PipelineRunner) -> EncodedImage:
    finish = c.finish_stream
    return await runner.infer(model, "encode", c.prepare_codec_image, (model, data, settings), finish, (model,))


def _stream_headers(encoded: EncodedImage) -> dict[str, str]:
    return {
        "X-Bits-Per-Pixel": f"{encoded.bits_per_pixel:.6f}",
        "X-Image-Height": str(encoded.height),
        "X-Image-Width": str(encoded.width),
    }


def _field(payload: Any, *names: str) -> list[Any]:
    if not isinstance(payload, dict) or any(n not in payload for n in names):
        keys = ", ".join(f'"{n}": [...]' for n in names)
        raise InvalidInputError(f"the body must be an object {{{keys}}}")
    return [payload[n] for n in names]


async def encode(request: Request, inference: InferenceDep) -> Response:
    """Latent of an image (JSON or .npy), or embeddings of a batch of series."""
    model, settings, runner = inference.model, inference.settings, inference.runner
    model.require("encode")
    received = await request_body(request, settings)
    async with runner.admitted(model, "encode"):
        if _is_codec(model):
            encoded = await _encode_stream(model, await image_bytes(request, received), settings, runner)
            return Response(encoded.stream, media_type=STREAM, headers=_stream_headers(encoded))
        if _is_image(model):
            data = await image_bytes(request, received)
            latent, (height, width) = await runner.infer(
                model, "encode", p.prepare_image, (model, data, settings), p.finish_latent
            )
            if NPY_MIME in request.headers.get("accept", ""):
                headers = {"X-Image-Height": str(height), "X-Image-Width": str(width)}
                return Response(latent_to_npy(latent), media_type=NPY_MIME, headers=headers)
            body = LatentResponse(**latent_to_json(latent), image_size=[height, width], **_ids(model))
            return Response(body.model_dump_json(), media_type=JSON)
        (raw,) = _field(await json_body(request, received), "sequences")
        embeddings = await runner.infer(
            model, "encode", p.prepare_sequences, (model, raw, settings), p.finish_embeddings, body_bytes=len(received)
        )
        return Response(EmbeddingsResponse(embeddings=embeddings, **_ids(model)).model_dump_json(), media_type=JSON)


async def decode(request: Request, inference: InferenceDep) -> Response:
    """Image from a latent (JSON or .npy), or series from embeddings and lengths."""
    model, settings, runner = inference.model, inference.settings, inference.runner
    model.require("decode")
    received = await request_body(request, settings)
    async with runner.admitted(model, "decode"):
        if _is_codec(model):
            mime = choose_image_format(request.headers.get("accept"))
            stream = binary_body(request, received, STREAM)
            data = await runner.infer(
                model, "decode", c.prepare_stream, (model, stream, settings), p.finish_image, (mime, settings)
            )
            return Response(data, media_type=mime)
        if _is_image(model):
            mime = choose_image_format(request.headers.get("accept"))
            latent, size = await latent_body(
                request, received, lambda shape: p.check_latent_shape(model, shape, settings)
            )
            data = await runner.infer(
                model, "decode", p.prepare_latent, (model, latent, size, settings), p.finish_image, (mime, settings)
            )
            return Response(data, media_type=mime)
        embeddings, lengths = _field(await json_body(request, received), "embeddings", "lengths")
        # Never on the event loop (no body_bytes): a small body can ask for max_length steps per series.
        series = await runner.infer(
            model, "decode", p.prepare_embeddings, (model, embeddings, lengths, settings), p.finish_decoded
        )
        return Response(
            DecodedSequencesResponse(reconstructions=series, **_ids(model)).model_dump_json(), media_type=JSON
        )


async def reconstruct(request: Request, inference: InferenceDep) -> Response:
    """Image in, image of the same size out; or series in, reconstructions and per-series errors out."""
    model, settings, runner = inference.model, inference.settings, inference.runner
    model.require("reconstruct")
    received = await request_body(request, settings)
    async with runner.admitted(model, "encode" if _is_codec(model) else "reconstruct"):
        if _is_codec(model):
            mime = choose_image_format(request.headers.get("accept"))
            encoded = await _encode_stream(model, await image_bytes(request, received), settings, runner)
            answer, quality = await runner.infer(
                model,
                "decode",
                c.prepare_stream,
                (model, encoded.stream, settings),
                c.finish_scored_image,
                (encoded.original, mime, settings),
            )
            return Response(answer, media_type=mime, headers={**_stream_headers(encoded), "X-PSNR": f"{quality:.3f}"})
        if _is_image(model):
            mime = choose_image_format(request.headers.get("accept"))
            data = await image_bytes(request, received)
            answer = await runner.infer(
                model, "reconstruct", p.prepare_image, (model, data, settings), p.finish_image, (mime, settings)
            )
            return Response(answer, media_type=mime)
        (raw,) = _field(await json_body(request, received), "sequences")
        recons, errors = await runner.infer(
            model,
            "reconstruct",
            p.prepare_sequences,
            (model, raw, settings),
            p.finish_reconstructions,
            body_bytes=len(received),
        )
        body = ReconstructionsResponse(reconstructions=recons, errors=errors, **_ids(model))
        return Response(body.model_dump_json(), media_type=JSON)


for _prefix in ("/v1/models/{name}", "/v1/models/{name}/versions/{version}"):
    _versioned = "{version}" in _prefix
    for _operation, _endpoint, _doc in (
        ("encode", encode, ENCODE_DOC),
        ("decode", decode, DECODE_DOC),
        ("reconstruct", reconstruct, RECONSTRUCT_DOC),
    ):
        router.add_api_route(
            f"{_prefix}/{_operation}",
            _endpoint,
            methods=["POST"],
            summary=f"{_operation.capitalize()} ({'a given version' if _versioned else 'the default version'})",
            operation_id=f"{_operation}{'_version' if _versioned else ''}",
            response_class=Response,
            **_doc,
        )
