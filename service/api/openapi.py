"""OpenAPI documentation of the inference routes: their request bodies, answers and examples.

The routes read their bodies themselves (an image, a form, JSON or .npy, depending on the model),
so FastAPI cannot infer the schemas; they are declared here instead.
"""

from __future__ import annotations

from typing import Any

from service.schemas import (
    DecodedSequencesResponse,
    DecodeSequencesRequest,
    EmbeddingsResponse,
    ErrorResponse,
    LatentResponse,
    ReconstructionsResponse,
    SequencesRequest,
)

_BINARY = {"type": "string", "format": "binary"}
_SEQUENCES_EXAMPLE = {"sequences": [[0.0, 0.4, 1.2, 0.7, -0.3, -0.8, -0.2, 0.1], [1.0, 0.9, 0.2, -0.5, -0.4, 0.3]]}
_LATENT_EXAMPLE = {
    "shape": [12, 1, 1],
    "dtype": "float32",
    "data": "AAAAAAAAgD8AAABAAABAQAAAgEAAAKBAAADAQAAA4EAAAABBAAAQQQAAIEEAADBB",
    "image_size": [8, 8],
}
_ERRORS = {
    status: {"model": ErrorResponse, "description": text}
    for status, text in (
        (400, "undecodable body (broken image, invalid JSON or base64)"),
        (404, "unknown model or version"),
        (406, "no acceptable response format"),
        (409, "the model does not support this operation (`unsupported_operation`)"),
        (413, "body bytes or image pixels over the limit"),
        (415, "unsupported media type"),
        (422, "invalid values: NaN or Inf, ragged or empty series, wrong feature count or latent shape"),
        (401, "API keys are configured and the request carries no valid bearer key"),
        (
            503,
            "models loading, the service shutting down, the model's queue full (`overloaded`), or the version "
            "(or the model's default version) failed to load (`model_unavailable`)",
        ),
        (504, "the request ran longer than the configured timeout"),
    )
}


def _schema(model: Any) -> dict[str, Any]:
    return model.model_json_schema(ref_template="#/components/schemas/{model}")


def _image_request() -> dict[str, Any]:
    return {
        "image/png": {"schema": _BINARY},
        "image/jpeg": {"schema": _BINARY},
        "image/webp": {"schema": _BINARY},
        "image/bmp": {"schema": _BINARY},
        "image/tiff": {"schema": _BINARY},
        "multipart/form-data": {"schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]}},
    }


def _image_answer(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {
            "image/png": {"schema": _BINARY},
            "image/jpeg": {"schema": _BINARY},
            "image/webp": {"schema": _BINARY},
        },
    }


def _json(model: Any, example: Any) -> dict[str, Any]:
    return {"schema": _schema(model), "example": example}


# encode and reconstruct take the same bodies: an image (raw or multipart) or a batch of series.
_IMAGE_OR_SEQUENCES_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            **_image_request(),
            "application/json": {"schema": _schema(SequencesRequest), "example": _SEQUENCES_EXAMPLE},
        },
    }
}

ENCODE_DOC: dict[str, Any] = {
    "description": "Image models: send an image (raw `image/*` body or multipart `file`); the latent comes back as "
    "JSON, or as `.npy` with `Accept: application/x-npy` (original size in `X-Image-Height`/`-Width`). "
    'Sequence models: send `{"sequences": [...]}`; embeddings come back. Compression models (task `compress`): '
    "the answer is the compressed bitstream (`application/octet-stream`), with `X-Bits-Per-Pixel`.",
    "openapi_extra": _IMAGE_OR_SEQUENCES_BODY,
    "responses": {
        200: {
            "description": "latent (image models) or embeddings (sequence models)",
            "content": {
                "application/json": {
                    "schema": {"oneOf": [_schema(LatentResponse), _schema(EmbeddingsResponse)]},
                    "examples": {
                        "image": {"value": {**_LATENT_EXAMPLE, "model": "image-conv", "version": 1}},
                        "sequence": {"value": {"embeddings": [[0.12, -1.3, 0.8]], "model": "ecg-embed", "version": 1}},
                    },
                },
                "application/x-npy": {"schema": _BINARY},
                "application/octet-stream": {"schema": _BINARY},
            },
        },
        **_ERRORS,
    },
}

DECODE_DOC: dict[str, Any] = {
    "description": "Image models: send a latent as JSON (as `encode` returns it; `image_size` crops to the original "
    "size) or as `.npy` (with optional `X-Image-Height`/`-Width`); a PNG comes back (`Accept` may ask for JPEG or "
    "WebP). Sequence models: send embeddings and the lengths to decode. Compression models: send the bitstream "
    "(`application/octet-stream`) that `encode` returned; a damaged or foreign stream is refused with 400.",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {"oneOf": [_schema(LatentResponse), _schema(DecodeSequencesRequest)]},
                    "examples": {
                        "image": {"value": _LATENT_EXAMPLE},
                        "sequence": {"value": {"embeddings": [[0.1] * 16], "lengths": [140]}},
                    },
                },
                "application/x-npy": {"schema": _BINARY},
                "application/octet-stream": {"schema": _BINARY},
            },
        }
    },
    "responses": {
        200: {
            **_image_answer("decoded image (image models) or series (sequence models)"),
            "content": {
                **_image_answer("")["content"],
                "application/json": _json(
                    DecodedSequencesResponse,
                    {"reconstructions": [[0.1, 0.3, 0.2]], "model": "ecg-embed", "version": 1},
                ),
            },
        },
        **_ERRORS,
    },
}

RECONSTRUCT_DOC: dict[str, Any] = {
    "description": "Image models: image in, reconstruction (or denoised image) of the same size out, PNG by default. "
    'Sequence models: `{"sequences": [...]}` in; reconstructions and per-series errors (anomaly scores) out. '
    "Compression models: encode then decode through the real bitstream; `X-Bits-Per-Pixel` and `X-PSNR` report it.",
    "openapi_extra": _IMAGE_OR_SEQUENCES_BODY,
    "responses": {
        200: {
            **_image_answer("reconstruction"),
            "content": {
                **_image_answer("")["content"],
                "application/json": _json(
                    ReconstructionsResponse,
                    {
                        "reconstructions": [[0.0, 0.41, 1.1]],
                        "errors": [0.012],
                        "model": "ecg-anomaly",
                        "version": 1,
                    },
                ),
            },
        },
        **_ERRORS,
    },
}

# The inference routes read their path parameters themselves (see `service.api.routes.inference`),
# so FastAPI does not infer them: declared here, for the routes without and with a version.
_NAME = {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}, "description": "model name"}
_VERSION = {
    "name": "version",
    "in": "path",
    "required": True,
    "schema": {"type": "integer", "minimum": 0},
    "description": "model version (at most 9 digits)",
}
PATH_PARAMETERS: dict[bool, list[dict[str, Any]]] = {False: [_NAME], True: [_NAME, _VERSION]}
