"""OpenAPI documentation of the `/v2` routes (Open Inference Protocol): request bodies and answer examples."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class OipErrorResponse(BaseModel):
    """The protocol's error body: `error` is the message; `code` the stable code `/v1` uses for it."""

    error: str
    code: str


# What any `/v2` route may answer besides 200, in the protocol's error body.
OIP_ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": OipErrorResponse, "description": text}
    for status, text in (
        (400, "an undecodable body or a tensor that does not fit (shapes, sizes, binary framing)"),
        (401, "API keys are configured and the request carries no valid bearer key"),
        (403, "model control: the key is not an admin key, or no AE_ADMIN_KEYS are configured"),
        (404, "unknown model, operation or version"),
        (408, "the body did not arrive within AE_BODY_READ_TIMEOUT_S"),
        (409, "model control is off (AE_MODEL_CONTROL), or the model does not offer the operation"),
        (413, "body bytes, tensor elements or image pixels over the limit"),
        (422, "values that are not valid (NaN, lengths out of range, unknown parameters)"),
        (429, "the API key is over its rate limit; Retry-After says when to try again"),
        (499, "the client disconnected before the answer was ready"),
        (503, "not ready, overloaded, unloaded, or the version failed to load"),
        (504, "the request ran longer than AE_REQUEST_TIMEOUT_S"),
    )
}

_ECG_ENCODE_JSON = {
    "id": "beat-1",
    "inputs": [
        {
            "name": "sequences",
            "datatype": "FP32",
            "shape": [1, 8, 1],
            "data": [0.0, 0.4, 1.2, 0.7, -0.3, -0.8, -0.2, 0.1],
        }
    ],
    "outputs": [{"name": "embeddings", "parameters": {"binary_data": False}}],
}
_ECG_ENCODE_ANSWER = {
    "model_name": "ecg-embed.encode",
    "model_version": "2",
    "id": "beat-1",
    "outputs": [{"name": "embeddings", "datatype": "FP32", "shape": [1, 4], "data": [0.12, -0.5, 0.33, 0.9]}],
}
_BINARY_HOW = (
    "The binary-tensor extension: `Inference-Header-Content-Length: N` says the first N bytes are the JSON "
    "header; each input with `parameters.binary_data_size` takes that many of the following bytes, in order. "
    "BYTES elements (encoded images, codec streams) are a 4-byte little-endian length and the bytes each. "
    'Example header for one PNG of 5120 bytes: {"inputs": [{"name": "image", "datatype": "BYTES", "shape": [1], '
    '"parameters": {"binary_data_size": 5124}}]} followed by the length and the PNG.'
)

INFER_DOC: dict[str, Any] = {
    "description": "Inference on the OIP model `MODEL.OPERATION` (e.g. `image-denoise.reconstruct`, "
    "`ecg-embed.encode`): JSON tensors, or binary tensors (images and streams must be binary). "
    "`GET /v2/models/{name}` lists the model's input and output tensors. Answers are JSON, or with binary "
    "outputs `application/octet-stream` with `Inference-Header-Content-Length`. See docs/oip.md.",
    "openapi_extra": {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"type": "object"}, "example": _ECG_ENCODE_JSON},
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary", "description": _BINARY_HOW},
                    "example": "<JSON header><4-byte length><PNG bytes>",
                },
            },
        }
    },
    "responses": {
        200: {
            "description": "the output tensors: JSON, or JSON then binary data (Inference-Header-Content-Length)",
            "content": {
                "application/json": {"example": _ECG_ENCODE_ANSWER},
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        **OIP_ERRORS,
    },
}

_METADATA = {
    "name": "ecg-embed.encode",
    "versions": ["2"],
    "platform": "autoencoder-service",
    "inputs": [
        {"name": "sequences", "datatype": "FP32", "shape": [-1, -1, 1]},
        {"name": "lengths", "datatype": "INT64", "shape": [-1]},
    ],
    "outputs": [{"name": "embeddings", "datatype": "FP32", "shape": [-1, 32]}],
}
_INDEX = [
    {"name": "image-denoise", "version": "3", "state": "READY", "reason": ""},
    {
        "name": "image-denoise",
        "version": "4",
        "state": "UNAVAILABLE",
        "reason": "sha256 of denoise.onnx does not match",
    },
]

OIP_EXAMPLES: dict[tuple[str, str], dict[int, tuple[str, Any]]] = {
    ("GET", "/v2"): {
        200: (
            "application/json",
            {
                "name": "autoencoder-service",
                "version": "0.1.0",
                "extensions": ["binary_tensor_data", "model_repository"],
            },
        )
    },
    ("GET", "/v2/health/live"): {200: ("application/json", {"live": True})},
    ("GET", "/v2/health/ready"): {200: ("application/json", {"ready": True})},
    ("GET", "/v2/models/{name}"): {200: ("application/json", _METADATA)},
    ("GET", "/v2/models/{name}/versions/{version}"): {200: ("application/json", _METADATA)},
    ("GET", "/v2/models/{name}/ready"): {200: ("application/json", {"name": "ecg-embed.encode", "ready": True})},
    ("GET", "/v2/models/{name}/versions/{version}/ready"): {
        200: ("application/json", {"name": "ecg-embed.encode", "version": "2", "ready": True})
    },
    ("POST", "/v2/repository/index"): {200: ("application/json", _INDEX)},
    ("POST", "/v2/repository/models/{name}/load"): {200: ("application/json", {})},
    ("POST", "/v2/repository/models/{name}/unload"): {200: ("application/json", {})},
}
