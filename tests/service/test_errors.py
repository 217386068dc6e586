"""A table of bad requests: each gets its documented status and error code, and nothing breaks."""

import base64
import io
from http import HTTPStatus

import numpy as np
import pytest

from bench.corpus import png_claiming
from tests.service.conftest import decode_png, png_bytes

IMAGE = "/v1/models/tiny-image"
SEQ = "/v1/models/tiny-seq"
PNG = {"content-type": "image/png"}
JSON = {"content-type": "application/json"}
NPY = {"content-type": "application/x-npy"}


def _latent(shape, values=None) -> dict:
    array = np.zeros(shape, "<f4") if values is None else np.asarray(values, "<f4")
    return {"shape": list(shape), "dtype": "float32", "data": base64.b64encode(array.tobytes()).decode()}


def _npy(array) -> bytes:
    out = io.BytesIO()
    np.save(out, array)
    return out.getvalue()


CASES = [
    # 400: undecodable bodies
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"content": b"", "headers": PNG},
        400,
        "undecodable_body",
        id="empty-image",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"content": png_bytes(20, 20)[:60], "headers": PNG},
        400,
        "undecodable_body",
        id="truncated-png",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"content": b"not an image at all", "headers": PNG},
        400,
        "undecodable_body",
        id="garbage-image",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"content": b'{"sequences": [1,', "headers": JSON},
        400,
        "undecodable_body",
        id="broken-json",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"content": b"\xff\xfe\x00", "headers": JSON},
        400,
        "undecodable_body",
        id="non-utf8-json",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"content": b"[" * 100_000 + b"]" * 100_000, "headers": JSON},
        400,
        "undecodable_body",
        id="deeply-nested-json",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"json": {**_latent((4, 2, 2)), "data": "@@@"}},
        400,
        "undecodable_body",
        id="latent-bad-base64",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"content": b"\x93NUMPY broken", "headers": NPY},
        400,
        "undecodable_body",
        id="broken-npy",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"files": {"other": ("x.png", b"x", "image/png")}},
        422,
        "invalid_input",
        id="multipart-without-file",
    ),
    # 404
    pytest.param(
        "post", "/v1/models/nope/encode", {"json": {"sequences": [[1]]}}, 404, "not_found", id="unknown-model"
    ),
    pytest.param(
        "post",
        f"{SEQ}/versions/9/encode",
        {"json": {"sequences": [[1]]}},
        404,
        "not_found",
        id="unknown-version",
    ),
    pytest.param("get", "/v1/nothing-here", {}, 404, "not_found", id="unknown-route"),
    # 405, 406, 409
    pytest.param("get", f"{SEQ}/encode", {}, 405, "method_not_allowed", id="wrong-method"),
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"content": png_bytes(8, 8), "headers": {**PNG, "accept": "text/csv"}},
        406,
        "not_acceptable",
        id="unacceptable-accept",
    ),
    pytest.param(
        "post",
        "/v1/models/tiny-denoise/decode",
        {"json": _latent((16, 1, 1))},
        409,
        "unsupported_operation",
        id="decode-on-skip-model",
    ),
    # 413
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"content": png_claiming(100_000, 100_000), "headers": PNG},
        413,
        "payload_too_large",
        id="png-claims-100000x100000",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"content": png_bytes(1, 700), "headers": PNG},
        200,
        None,
        id="1x700-is-fine",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"content": b"\x00" * 4_000_001, "headers": PNG},
        413,
        "payload_too_large",
        id="body-over-limit",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"json": _latent((4, 200, 200))},
        413,
        "payload_too_large",
        id="latent-decodes-too-large",
    ),
    # 415
    pytest.param(
        "post",
        f"{IMAGE}/reconstruct",
        {"content": png_bytes(8, 8), "headers": {"content-type": "text/plain"}},
        415,
        "unsupported_media_type",
        id="image-as-text",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"content": b"1,2,3", "headers": {"content-type": "text/csv"}},
        415,
        "unsupported_media_type",
        id="sequences-as-csv",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"content": png_bytes(8, 8), "headers": PNG},
        415,
        "unsupported_media_type",
        id="image-to-sequence-model",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"content": b"x", "headers": PNG},
        415,
        "unsupported_media_type",
        id="decode-given-an-image",
    ),
    # 422: invalid values
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"content": b'{"sequences": [[1, NaN, 2]]}', "headers": JSON},
        422,
        "invalid_input",
        id="nan",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"content": b'{"sequences": [[1, Infinity]]}', "headers": JSON},
        422,
        "invalid_input",
        id="inf",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"json": {"sequences": [[1, "2"]]}},
        422,
        "invalid_input",
        id="string-in-series",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"json": {"sequences": [[1, True]]}},
        422,
        "invalid_input",
        id="bool-in-series",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"json": {"sequences": [[[1], [2, 3]]]}},
        422,
        "invalid_input",
        id="ragged-steps",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"json": {"sequences": [[1, 2], []]}},
        422,
        "invalid_input",
        id="empty-series",
    ),
    pytest.param("post", f"{SEQ}/encode", {"json": {"sequences": []}}, 422, "invalid_input", id="empty-batch"),
    pytest.param("post", f"{SEQ}/encode", {"json": {"series": [[1]]}}, 422, "invalid_input", id="wrong-key"),
    pytest.param("post", f"{SEQ}/encode", {"json": [[1, 2]]}, 422, "invalid_input", id="bare-list"),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"json": {"sequences": [[1.0]] * 33}},
        422,
        "invalid_input",
        id="batch-over-limit",
    ),
    pytest.param(
        "post",
        f"{SEQ}/encode",
        {"json": {"sequences": [[0.5] * 5000]}},
        422,
        "invalid_input",
        id="series-over-max-length",
    ),
    pytest.param(
        "post",
        f"{SEQ}/decode",
        {"json": {"embeddings": [[0.0] * 5], "lengths": [10]}},
        422,
        "invalid_input",
        id="embedding-wrong-size",
    ),
    pytest.param(
        "post",
        f"{SEQ}/decode",
        {"json": {"embeddings": [[0.0] * 6], "lengths": [0]}},
        422,
        "invalid_input",
        id="zero-length",
    ),
    pytest.param(
        "post",
        f"{SEQ}/decode",
        {"json": {"embeddings": [[0.0] * 6], "lengths": [3, 4]}},
        422,
        "invalid_input",
        id="lengths-mismatch",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"json": _latent((3, 2, 2))},
        422,
        "invalid_input",
        id="latent-wrong-channels",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"json": {**_latent((4, 2, 2)), "shape": [4, 2, 3]}},
        422,
        "invalid_input",
        id="latent-shape-vs-bytes",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"json": _latent((4, 1, 1), [np.nan, 0, 0, 0])},
        422,
        "invalid_input",
        id="latent-nan",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"json": {**_latent((4, 2, 2)), "image_size": [100, 100]}},
        422,
        "invalid_input",
        id="image-size-does-not-fit",
    ),
    pytest.param(
        "post",
        f"{IMAGE}/decode",
        {"content": _npy(np.array(["a"])), "headers": NPY},
        422,
        "invalid_input",
        id="npy-of-strings",
    ),
    pytest.param(
        "post",
        f"{SEQ}/versions/abc/encode",
        {"json": {"sequences": [[1]]}},
        422,
        "invalid_input",
        id="non-integer-version",
    ),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "code"), CASES)
def test_bad_input_gets_its_status_and_code(client, method, path, kwargs, status, code):
    response = getattr(client, method)(path, **kwargs)
    assert response.status_code == status, response.text
    if code is not None:
        body = response.json()
        assert body["error"]["code"] == code
        assert body["error"]["message"]


def test_the_service_still_answers_after_the_bad_inputs(client):
    for case in CASES:
        method, path, kwargs, _, _ = case.values
        getattr(client, method)(path, **kwargs)
    response = client.post(f"{IMAGE}/reconstruct", content=png_bytes(13, 17), headers=PNG)
    assert response.status_code == HTTPStatus.OK
    assert decode_png(response.content).shape == (13, 17, 3)
    assert client.post(f"{SEQ}/encode", json={"sequences": [[1, 2, 3]]}).status_code == HTTPStatus.OK
