"""OpenAPI documentation of the inference routes: their request bodies, answers and examples.

The routes read their bodies themselves (an image, a form, JSON or .npy, depending on the model),
so FastAPI cannot infer the schemas; they are declared here instead.
"""

from __future__ import annotations

from typing import Any

from service.api.oip_openapi import OIP_EXAMPLES
from service.schemas import (
    DecodedSequencesResponse,
    DecodeSequencesRequest,
    EmbeddingsResponse,
    ErrorResponse,
    LatentResponse,
    ReconstructionsResponse,
    ReconstructSequencesRequest,
    WindowedSequencesRequest,
)

_BINARY = {"type": "string", "format": "binary"}
# One recording of 12 steps in windows of 8 every 4 steps: starts 0 and 4 (the last one ends on the last step).
_WINDOWS_EXAMPLE = {
    "sequences": [[0.0, 0.4, 1.2, 0.7, -0.3, -0.8, -0.2, 0.1, 0.5, 1.1, 0.6, -0.1]],
    "window": 8,
    "stride": 4,
}
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
        (400, "undecodable body (broken image, invalid JSON or base64, a damaged, foreign or unsigned stream)"),
        (404, "unknown model or version"),
        (406, "no acceptable response format"),
        (409, "the model does not support this operation (`unsupported_operation`)"),
        (413, "body bytes or image pixels over the limit"),
        (415, "unsupported media type"),
        (422, "invalid values: NaN or Inf, ragged or empty series, wrong feature count or latent shape"),
        (401, "API keys are configured and the request carries no valid bearer key"),
        (408, "the body did not arrive within `AE_BODY_READ_TIMEOUT_S` (`body_timeout`; the connection is closed)"),
        (429, "the API key is over its rate limit (`rate_limited`); `Retry-After` says when to try again"),
        (499, "the client disconnected before the answer was ready (`client_gone`); nobody reads this answer"),
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


def _binary_example(summary: str, how: str) -> dict[str, Any]:
    """An example of a binary body: what to send and how (a file has no inline value to show)."""
    return {"file": {"summary": summary, "description": how}}


def _image_body(media_type: str, extension: str) -> dict[str, Any]:
    how = f"curl --data-binary @photo.{extension} -H 'content-type: {media_type}' URL"
    return {"schema": _BINARY, "examples": _binary_example(f"a {extension.upper()} image, as the raw body", how)}


def _image_request() -> dict[str, Any]:
    return {
        "image/png": _image_body("image/png", "png"),
        "image/jpeg": _image_body("image/jpeg", "jpg"),
        "image/webp": _image_body("image/webp", "webp"),
        "image/bmp": _image_body("image/bmp", "bmp"),
        "image/tiff": _image_body("image/tiff", "tiff"),
        "multipart/form-data": {
            "schema": {"type": "object", "properties": {"file": _BINARY}, "required": ["file"]},
            "examples": _binary_example("an image as the form field `file`", "curl -F file=@photo.png URL"),
        },
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
            "application/json": {
                "schema": _schema(WindowedSequencesRequest),
                "examples": {
                    "series": {"value": _SEQUENCES_EXAMPLE},
                    "windows of a long recording": {"value": _WINDOWS_EXAMPLE},
                },
            },
        },
    }
}

# reconstruct's series may carry a `threshold` for the anomaly flags.
_RECONSTRUCT_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            **_image_request(),
            "application/json": {
                "schema": _schema(ReconstructSequencesRequest),
                "examples": {
                    "series": {"value": _SEQUENCES_EXAMPLE},
                    "own threshold": {"value": {**_SEQUENCES_EXAMPLE, "threshold": 0.5}},
                    "windows of a long recording": {"value": _WINDOWS_EXAMPLE},
                },
            },
        },
    }
}

ENCODE_DOC: dict[str, Any] = {
    "description": "Image models: send an image (raw `image/*` body or multipart `file`); the latent comes back as "
    "JSON, or as `.npy` with `Accept: application/x-npy` (original size in `X-Image-Height`/`-Width`). "
    'Sequence models: send `{"sequences": [...]}`; embeddings come back (with `window`/`stride`: one per window '
    "of each series, and `windows` saying where each starts). Compression models (task `compress`): "
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
    "(`application/octet-stream`) that `encode` returned; a stream written by another version of the same model "
    "is decoded by that version (as `POST /v1/decode` does); a damaged stream or one of another model is 400.",
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
                "application/x-npy": {
                    "schema": _BINARY,
                    "examples": _binary_example(
                        "a latent as a .npy array",
                        "what encode answers with `Accept: application/x-npy`; send its X-Image-Height and "
                        "X-Image-Width back to crop to the original size: curl --data-binary @latent.npy "
                        "-H 'content-type: application/x-npy' -H 'x-image-height: 321' -H 'x-image-width: 481' URL",
                    ),
                },
                "application/octet-stream": {
                    "schema": _BINARY,
                    "examples": _binary_example(
                        "a compressed stream (compression models)",
                        "the stream encode returned: curl --data-binary @photo.aec "
                        "-H 'content-type: application/octet-stream' URL",
                    ),
                },
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

_STREAM_BODY: dict[str, Any] = {
    "schema": _BINARY,
    "examples": _binary_example(
        "a compressed stream, as a compression model's encode returned it",
        "curl --data-binary @photo.aec -H 'content-type: application/octet-stream' URL",
    ),
}

DECODE_STREAM_DOC: dict[str, Any] = {
    "description": "Send a compressed stream (`application/octet-stream`) as any compression model's `encode` "
    "returned it: its header names the model and version that wrote it, and exactly that version decodes it, "
    "loaded on first use when the version policy no longer loads it (see `AE_LAZY_MAX_VERSIONS`). A PNG comes "
    "back (`Accept` may ask for JPEG or WebP). A body that is not a stream is 400, a stream naming a model or "
    "version not on disk 404, one naming a version that fails to load 503.",
    "openapi_extra": {"requestBody": {"required": True, "content": {"application/octet-stream": _STREAM_BODY}}},
    "responses": {200: _image_answer("the decoded image"), **_ERRORS},
}

RECONSTRUCT_DOC: dict[str, Any] = {
    "description": "Image models: image in, reconstruction (or denoised image) of the same size out, PNG by default. "
    'Sequence models: `{"sequences": [...]}` in; reconstructions and per-series errors (anomaly scores) out. '
    "A model with a calibrated threshold (`anomaly` in its manifest) also answers each error's `percentiles` "
    "among its calibration scores and `anomaly` flags (error above the threshold); an optional `threshold` in "
    "the body decides the flags instead (any model). With `window`/`stride` each series (up to "
    "AE_MAX_SEQUENCE_LENGTH steps) is scored per window, each window as if sent alone, with `windows` saying "
    "where each starts; the windows count toward AE_MAX_BATCH_SEQUENCES (422 beyond), and their reconstructions "
    "come only with `include_reconstructions: true`. "
    "Compression models: encode then decode through the real bitstream; `X-Bits-Per-Pixel` and `X-PSNR` report it.",
    "openapi_extra": _RECONSTRUCT_BODY,
    "responses": {
        200: {
            **_image_answer("reconstruction"),
            "content": {
                **_image_answer("")["content"],
                "application/json": _json(
                    ReconstructionsResponse,
                    {
                        "reconstructions": [[0.0, 0.41, 1.1], [0.9, 0.2, -0.6]],
                        "errors": [0.041, 0.587],
                        "percentiles": [37.9, 100.0],
                        "anomaly": [False, True],
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

_ONE_OF = (
    "Variable-rate codecs (e.g. `image-codec`) only; at most one of `quality`, `target_bpp` and `max_bytes` "
    "(or the headers `X-Quality`, `X-Target-Bpp`, `X-Max-Bytes`); a fixed-rate codec answers 422 to any of them. "
)
# Rate control of a variable-rate codec's encode and reconstruct (service.codecs.rate_control).
RATE_PARAMETERS: list[dict[str, Any]] = [
    {
        "name": "quality",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "description": _ONE_OF + "Quality in [0, 1] (0: smallest streams); the one used comes back in `X-Quality`.",
    },
    {
        "name": "target_bpp",
        "in": "query",
        "required": False,
        "schema": {"type": "number", "exclusiveMinimum": 0, "maximum": 64},
        "description": _ONE_OF + "Bits per pixel the stream (header included) must not exceed; the answer lands "
        "within 5% below when the model's range allows (bisection on the quality, reported in `X-Quality`).",
    },
    {
        "name": "max_bytes",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1},
        "description": _ONE_OF
        + "Bytes the stream must not exceed, as `target_bpp`; 422 when even quality 0 is larger.",
    },
]


# Answers of the routes FastAPI documents from their response models, as `service.api.docs` adds them:
# (method, path) -> {status: (media type, example)}. tests/service/test_docs.py validates each against
# its response model, so they cannot drift from the answers.
_MODEL_EXAMPLE: dict[str, Any] = {
    "name": "ecg-embed",
    "default_version": 2,
    "versions": [
        {
            "version": 2,
            "task": "embed",
            "family": "recurrent",
            "input": {
                "kind": "sequence",
                "features": 1,
                "dtype": "float32",
                "normalization": {"kind": "per_series", "mean": None, "std": None, "epsilon": 1e-08},
                "min_length": 1,
                "max_length": 2000,
            },
            "latent": {"kind": "vector", "shape": [32], "dtype": "float32", "downsample": None},
            "operations": ["encode", "decode", "reconstruct"],
            "providers": ["CPUExecutionProvider"],
            "precision": "fp32",
            "parity_max_abs_diff": 4.4e-05,
            "training": {"steps": 3750, "wall_time_s": 810.88, "device": "cpu", "final_validation": {"mse": 0.1166}},
        }
    ],
    "version_policy": "latest 1",
    "not_loaded_versions": [1],
    "failed_versions": [],
}
OPERATION_EXAMPLES: dict[tuple[str, str], dict[int, tuple[str, Any]]] = {
    ("GET", "/health/live"): {200: ("application/json", {"status": "ok"})},
    ("GET", "/health/ready"): {
        200: ("application/json", {"ready": True, "status": "ready", "models": 16, "failed": []}),
        503: ("application/json", {"ready": False, "status": "failed", "models": 15, "failed": ["image-conv/3"]}),
    },
    ("GET", "/v1/models"): {200: ("application/json", {"models": [_MODEL_EXAMPLE], "failures": []})},
    ("GET", "/v1/models/{name}"): {200: ("application/json", _MODEL_EXAMPLE)},
    ("GET", "/metrics"): {
        200: (
            "text/plain",
            "# TYPE ae_requests_total counter\n"
            'ae_requests_total{model="ecg-embed",operation="encode",status="200",version="2"} 42.0\n',
        )
    },
}

OPERATION_EXAMPLES.update(OIP_EXAMPLES)
