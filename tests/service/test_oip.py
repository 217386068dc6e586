"""The Open Inference Protocol (REST and gRPC) against a real `ae-serve`, driven by the unmodified `tritonclient`.

Answers over `/v2` must equal `/v1`'s for the same input (same graphs, same stages); the protocol's own
error bodies and statuses; hostile bodies (shapes, lengths, framing) are 4xx before anything is allocated.
"""

from __future__ import annotations

import io
import json
import socket
import struct
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tritonclient.grpc as triton_grpc
import tritonclient.http as triton_http
from PIL import Image
from tritonclient.utils import InferenceServerException

from bench.net import free_port
from service.codecs.bitstream import read_stream
from tests.service.conftest import ALL_VERSIONS, decode_png, png_bytes
from tests.service.server import running_server


class Server:
    """One `ae-serve` with HTTP and gRPC, and a client of each."""

    def __init__(self, base: str, grpc_port: int) -> None:
        self.base = base
        self.http = triton_http.InferenceServerClient(base.removeprefix("http://"))
        self.grpc_url = f"127.0.0.1:{grpc_port}"
        self.grpc = triton_grpc.InferenceServerClient(self.grpc_url)

    def v1(self, path: str, body: bytes, content_type: str, accept: str = "*/*") -> tuple[bytes, dict[str, str]]:
        request = urllib.request.Request(
            self.base + path, data=body, headers={"content-type": content_type, "accept": accept}, method="POST"
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.read(), dict(response.headers)

    def raw_v2(self, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, data=body, headers=headers or {}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read())


def _server(repository: Path, **env: str) -> Iterator[Server]:
    grpc_port = free_port()
    settings = {"AE_VERSION_POLICY": str(ALL_VERSIONS), "AE_GRPC_PORT": str(grpc_port), **env}
    with running_server(repository, **settings) as (_, base):
        yield Server(base, grpc_port)


@pytest.fixture(scope="module")
def server(tiny_models: Path) -> Iterator[Server]:
    yield from _server(tiny_models, AE_MAX_IMAGE_PIXELS=str(200 * 200))


def _images(*sizes: tuple[int, int]) -> np.ndarray:
    return np.array([png_bytes(h, w, seed=i) for i, (h, w) in enumerate(sizes)], dtype=np.object_)


def _input(module: Any, name: str, array: np.ndarray, datatype: str, binary: bool = True) -> Any:
    tensor = module.InferInput(name, list(array.shape), datatype)
    if module is triton_http:
        tensor.set_data_from_numpy(array, binary_data=binary)
    else:
        tensor.set_data_from_numpy(array)
    return tensor


def test_health_metadata_and_readiness_over_both_protocols(server: Server) -> None:
    for client in (server.http, server.grpc):
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("tiny-image.reconstruct")
        assert client.is_model_ready("tiny-seq.encode", "1")
        assert not client.is_model_ready("tiny-image.nope")
        assert not client.is_model_ready("no-such-model.encode")
    assert "binary_tensor_data" in server.http.get_server_metadata()["extensions"]
    assert "model_repository" in server.grpc.get_server_metadata().extensions
    metadata = server.http.get_model_metadata("tiny-seq.encode")
    assert metadata["versions"] == ["1", "2"]
    assert [i["name"] for i in metadata["inputs"]] == ["sequences", "lengths"]
    assert metadata["inputs"][0]["shape"] == [-1, -1, 1]
    grpc_metadata = server.grpc.get_model_metadata("tiny-codec.reconstruct")
    assert [o.name for o in grpc_metadata.outputs] == ["image", "bits_per_pixel", "psnr"]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_batch_of_images_answers_as_v1_does_each(server: Server, protocol: str) -> None:
    client, module = (server.http, triton_http) if protocol == "http" else (server.grpc, triton_grpc)
    images = _images((24, 40), (33, 17), (24, 40))
    result = client.infer("tiny-image.reconstruct", [_input(module, "image", images, "BYTES")])
    answers = result.as_numpy("image")
    assert answers.shape == (3,)
    for image, answer in zip(images, answers, strict=True):
        expected, _ = server.v1("/v1/models/tiny-image/reconstruct", image, "image/png", "image/png")
        assert np.array_equal(decode_png(answer), decode_png(expected))


def test_latents_out_and_back_as_v1(server: Server) -> None:
    images = _images((32, 48), (32, 48))
    result = server.grpc.infer("tiny-image.encode", [_input(triton_grpc, "image", images, "BYTES")])
    latents, sizes = result.as_numpy("latent"), result.as_numpy("image_size")
    assert sizes.tolist() == [[32, 48], [32, 48]]
    v1, _ = server.v1("/v1/models/tiny-image/encode", images[1], "image/png", "application/x-npy")
    assert np.array_equal(latents[1], np.load(io.BytesIO(v1)))
    decoded = server.http.infer(
        "tiny-image.decode",
        [_input(triton_http, "latent", latents, "FP32"), _input(triton_http, "image_size", sizes, "INT64")],
    ).as_numpy("image")
    assert decode_png(decoded[0]).shape == (32, 48, 3)


def test_a_json_sequence_batch_equals_v1(server: Server) -> None:
    rng = np.random.default_rng(4)
    series = rng.normal(size=(3, 48, 1)).astype(np.float32)
    lengths = np.array([48, 40, 33], np.int64)
    inputs = [
        _input(triton_http, "sequences", series, "FP32", binary=False),
        _input(triton_http, "lengths", lengths, "INT64", binary=False),
    ]
    outputs = [triton_http.InferRequestedOutput("embeddings", binary_data=False)]
    embeddings = server.http.infer("tiny-seq.encode", inputs, outputs=outputs).as_numpy("embeddings")
    body = {"sequences": [s[:n, 0].tolist() for s, n in zip(series, lengths, strict=True)]}
    v1, _ = server.v1("/v1/models/tiny-seq/encode", json.dumps(body).encode(), "application/json")
    assert np.allclose(embeddings, np.asarray(json.loads(v1)["embeddings"]), atol=1e-5)


def test_grpc_reconstruct_scores_with_a_threshold(server: Server) -> None:
    series = np.random.default_rng(5).normal(size=(2, 32, 1)).astype(np.float32)
    result = server.grpc.infer(
        "tiny-seq.reconstruct", [_input(triton_grpc, "sequences", series, "FP32")], parameters={"threshold": "0.5"}
    )
    errors = result.as_numpy("errors")
    body = {"sequences": series[..., 0].tolist(), "threshold": 0.5}
    v1 = json.loads(server.v1("/v1/models/tiny-seq/reconstruct", json.dumps(body).encode(), "application/json")[0])
    assert np.allclose(errors, v1["errors"], rtol=1e-5)
    assert result.as_numpy("anomaly").tolist() == v1["anomaly"]
    assert result.as_numpy("reconstructions").shape == (2, 32, 1)


def test_codec_streams_cross_protocols(server: Server) -> None:
    images = _images((40, 56))
    result = server.grpc.infer("tiny-codec.encode", [_input(triton_grpc, "image", images, "BYTES")])
    stream = result.as_numpy("stream")[0]
    assert result.as_numpy("bits_per_pixel")[0] == pytest.approx(len(stream) * 8 / (40 * 56), rel=1e-5)
    via_v1, _ = server.v1("/v1/decode", stream, "application/octet-stream", "image/png")
    streams = np.array([stream], dtype=np.object_)
    via_v2 = server.http.infer("tiny-codec.decode", [_input(triton_http, "stream", streams, "BYTES")])
    assert np.array_equal(decode_png(via_v2.as_numpy("image")[0]), decode_png(via_v1))


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_variable_rate_codec_takes_its_rate_as_parameters(server: Server, protocol: str) -> None:
    client, module = (server.http, triton_http) if protocol == "http" else (server.grpc, triton_grpc)
    images = [_input(module, "image", _images((64, 80)), "BYTES")]
    # tritonclient's gRPC parameters take no floats: a number as a string, as the /v1 query carries it.
    low = client.infer("tiny-hyperprior.encode", images, parameters={"quality": "0"}).as_numpy("stream")[0]
    high = client.infer("tiny-hyperprior.encode", images, parameters={"quality": 1}).as_numpy("stream")[0]
    assert read_stream(low).header.quality == 0 and read_stream(high).header.quality == 65535
    capped = client.infer("tiny-hyperprior.encode", images, parameters={"max_bytes": len(high) - 1})
    assert len(capped.as_numpy("stream")[0]) < len(high)
    with pytest.raises(InferenceServerException, match="does not take the parameter 'quality'"):
        client.infer("tiny-codec.encode", images, parameters={"quality": "0.5"})
    with pytest.raises(InferenceServerException, match="quality must be in"):
        client.infer("tiny-hyperprior.encode", images, parameters={"quality": 7})


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_a_wrong_tensor_is_refused_with_the_reason(server: Server, protocol: str) -> None:
    client, module = (server.http, triton_http) if protocol == "http" else (server.grpc, triton_grpc)
    flat = np.zeros((2, 32), np.float32)  # [batch, time] without the feature axis
    with pytest.raises(InferenceServerException, match=r"must be FP32 of shape \[-1, -1, 1\]"):
        client.infer("tiny-seq.encode", [_input(module, "sequences", flat, "FP32")])
    with pytest.raises(InferenceServerException, match="unknown model"):
        client.infer("no-such-model.encode", [_input(module, "sequences", flat[..., None], "FP32")])


def _binary_body(header: dict[str, Any], *blobs: bytes) -> tuple[bytes, dict[str, str]]:
    text = json.dumps(header).encode()
    return text + b"".join(blobs), {"Inference-Header-Content-Length": str(len(text))}


def _bytes_input(name: str, count: int, size: int) -> dict[str, Any]:
    return {"name": name, "datatype": "BYTES", "shape": [count], "parameters": {"binary_data_size": size}}


def test_hostile_bodies_are_refused_before_anything_is_allocated(server: Server) -> None:
    path = "/v2/models/tiny-seq.encode/infer"
    huge = {"name": "sequences", "datatype": "FP32", "shape": [1, 10**12, 1], "parameters": {"binary_data_size": 8}}
    status, answer = server.raw_v2(path, *_binary_body({"inputs": [huge]}, b"\0" * 8))
    assert status == 413 and isinstance(answer["error"], str)
    small = {**huge, "shape": [1, 2, 1]}  # 8 bytes for 2 floats: right; then 4 bytes nobody claims
    assert server.raw_v2(path, *_binary_body({"inputs": [small]}, b"\0" * 12))[0] == 400
    over = {**small, "parameters": {"binary_data_size": 100}}
    assert server.raw_v2(path, *_binary_body({"inputs": [over]}, b"\0" * 8))[0] == 400
    status, answer = server.raw_v2(path, b'{"inputs": []}', {"Inference-Header-Content-Length": "999"})
    assert status == 400 and "Inference-Header-Content-Length" in answer["error"]
    assert server.raw_v2(path, b"[1, 2]")[0] == 422
    framing = struct.pack("<I", 10**9) + b"abc"  # an element claiming a gigabyte
    status, answer = server.raw_v2(
        "/v2/models/tiny-image.reconstruct/infer", *_binary_body({"inputs": [_bytes_input("image", 1, 7)]}, framing)
    )
    assert status == 400 and "runs past the data" in answer["error"]


def test_images_of_one_request_share_one_images_pixel_limit(server: Server) -> None:
    # Each image alone is within the 200x200 limit; together they are not.
    images = [png_bytes(120, 120, seed=i) for i in range(4)]
    blob = b"".join(struct.pack("<I", len(i)) + i for i in images)
    status, answer = server.raw_v2(
        "/v2/models/tiny-image.reconstruct/infer",
        *_binary_body({"inputs": [_bytes_input("image", 4, len(blob))]}, blob),
    )
    assert status == 413 and "together" in answer["error"]


def test_grpc_takes_the_api_key_as_metadata(tiny_models: Path) -> None:
    for server in _server(tiny_models, AE_API_KEYS="key-one"):
        series = np.zeros((1, 16, 1), np.float32)
        inputs = [_input(triton_grpc, "sequences", series, "FP32")]
        with pytest.raises(InferenceServerException, match="API key"):
            server.grpc.infer("tiny-seq.encode", inputs)
        answer = server.grpc.infer("tiny-seq.encode", inputs, headers={"authorization": "Bearer key-one"})
        assert answer.as_numpy("embeddings").shape[0] == 1
        assert server.grpc.is_server_live()  # health stays open, as on HTTP


def test_png_answers_are_images(server: Server) -> None:
    # The answer's elements are whole PNG files a browser or Pillow opens.
    answer = server.grpc.infer("tiny-denoise.reconstruct", [_input(triton_grpc, "image", _images((20, 30)), "BYTES")])
    assert Image.open(io.BytesIO(answer.as_numpy("image")[0])).format == "PNG"


def test_two_workers_share_the_grpc_port(tiny_models: Path) -> None:
    # Each worker binds AE_GRPC_PORT with SO_REUSEPORT: both start (a worker that cannot bind stops
    # ae-serve), and every new connection is answered by one of them.
    for server in _server(tiny_models, AE_WORKERS="2"):
        series = np.zeros((1, 16, 1), np.float32)
        for _ in range(8):  # a fresh channel each time: the kernel picks a worker per connection
            client = triton_grpc.InferenceServerClient(server.grpc_url)
            assert client.infer("tiny-seq.encode", [_input(triton_grpc, "sequences", series, "FP32")]).as_numpy(
                "embeddings"
            ).shape == (1, 6)
            client.close()


def test_a_slow_v2_body_is_cut_off_with_the_protocols_error(tiny_models: Path) -> None:
    # The /v2 routes read bodies like /v1: a client trickling its body gets 408 and a closed connection
    # by the read deadline, in the protocol's error body, while other requests are answered meanwhile.
    for server in _server(tiny_models, AE_BODY_READ_TIMEOUT_S="1", AE_MAX_QUEUE="2"):
        host, port = server.base.removeprefix("http://").split(":")
        started = time.monotonic()
        slow = socket.create_connection((host, int(port)), timeout=10)
        head = "POST /v2/models/tiny-seq.encode/infer HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"
        slow.sendall(head.encode() + b'{"inp')
        series = np.zeros((1, 16, 1), np.float32)
        for _ in range(3):
            assert server.http.infer("tiny-seq.encode", [_input(triton_http, "sequences", series, "FP32")])
        slow.settimeout(5)
        answer = b""
        while chunk := slow.recv(65536):
            answer += chunk
        slow.close()
        assert answer.startswith(b"HTTP/1.1 408"), answer[:200]
        assert json.loads(answer.split(b"\r\n\r\n", 1)[1])["code"] == "body_timeout"
        assert time.monotonic() - started < 1 + 3
