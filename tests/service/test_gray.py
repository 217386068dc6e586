"""Gray images are first-class: gray in, gray out; gray variants run gray images; codecs code them as one channel.

The repository is the tiny one plus two gray variants exported the way the defaults' are
(`scripts/train_gray_variants.sh`): tiny-denoise v2 (v1 and a gray run started from v1's converted
weights) and tiny-codec v2 (the same for the codec). tiny-image and tiny-codec v1 have no gray variant.
Everything is checked against a real `ae-serve` process.
"""

from __future__ import annotations

import io
import json
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as triton_http
from PIL import Image

from service.codecs.bitstream import MIME as STREAM
from service.codecs.bitstream import pack, read_origin, unpack
from service.manifest import load_manifest
from tests.conftest import TINY_CODEC, TINY_SKIP
from tests.service.conftest import ALL_VERSIONS
from tests.service.server import running_server

GRAY_STEPS = ["data.channels=1", "model.channels=1", "optim.steps=4", "optim.val_every=2"]


@pytest.fixture(scope="module")
def gray_repo(tiny_models: Path, tiny_runs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny repository with tiny-denoise v2 and tiny-codec v2: v1 plus a gray variant each."""
    from training.config import load_config
    from training.export import export_run
    from training.export_gray import export_gray_variant
    from training.fit import fit

    base = tmp_path_factory.mktemp("gray")
    repo = base / "repo"
    shutil.copytree(tiny_models, repo)
    for name, overrides in (("tiny-denoise", TINY_SKIP), ("tiny-codec", TINY_CODEC)):
        run = base / name
        # From the model version's own graphs, as the defaults' gray runs start (RGB weights converted).
        fit(load_config(None, [*overrides, *GRAY_STEPS]), run, progress=False, init_from=repo / name / "1")
        export_gray_variant(run, repo / name / "1", repo)
    export_run(base / "tiny-codec", "tiny-codec-gray", repo)  # a codec for gray images alone, no variant
    return repo


@pytest.fixture(scope="module")
def base(gray_repo: Path) -> Iterator[str]:
    with running_server(gray_repo, AE_MAX_IMAGE_PIXELS="1000000", AE_VERSION_POLICY=str(ALL_VERSIONS)) as (_, url):
        yield url


def _image(mode: str, height: int = 40, width: int = 56, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    if mode == "I;16":
        pixels = rng.integers(0, 65536, (height, width), dtype=np.uint16)
        image = Image.fromarray(pixels)  # a 16-bit gray PNG
    else:
        rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")
        image = rgb.convert(mode)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _post(url: str, body: bytes, content_type: str, accept: str = "image/png") -> tuple[int, bytes, dict[str, str]]:
    request = urllib.request.Request(
        url, data=body, headers={"content-type": content_type, "accept": accept}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read(), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, error.read(), {k.lower(): v for k, v in error.headers.items()}


def _mode(png: bytes) -> tuple[str, tuple[int, int]]:
    image = Image.open(io.BytesIO(png))
    return image.mode, image.size


def test_the_gray_variants_are_new_versions_holding_the_rgb_files(gray_repo: Path) -> None:
    for name in ("tiny-denoise", "tiny-codec"):
        old, new = load_manifest(gray_repo / name / "1"), load_manifest(gray_repo / name / "2")
        assert new.has_gray_variant and not old.has_gray_variant
        for role, graph in old.graphs.items():  # the RGB graphs, byte for byte
            assert new.graphs[role] == graph
            assert (gray_repo / name / "2" / graph.file).read_bytes() == (
                gray_repo / name / "1" / graph.file
            ).read_bytes()
        assert {f"gray_{role}" for role in old.graphs} <= set(new.graphs)
        assert new.gray_training is not None and new.gray_training.config["model"]["channels"] == 1  # type: ignore[index]
    assert load_manifest(gray_repo / "tiny-codec" / "2").gray_entropy_model is not None


@pytest.mark.parametrize("mode", ["L", "LA", "I;16"])
def test_a_gray_image_is_denoised_by_the_gray_graph_and_answered_gray(base: str, mode: str) -> None:
    status, body, _ = _post(f"{base}/v1/models/tiny-denoise/reconstruct", _image(mode), "image/png")
    assert status == 200
    assert _mode(body) == ("L", (56, 40))
    metrics = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
    assert 'graph="gray_autoencoder"' in metrics  # it ran on the gray graph, not the RGB one


def test_a_colour_image_still_gets_a_colour_answer(base: str) -> None:
    status, body, _ = _post(f"{base}/v1/models/tiny-denoise/reconstruct", _image("RGB"), "image/png")
    assert status == 200 and _mode(body) == ("RGB", (56, 40))


def test_a_model_without_gray_variant_answers_a_gray_image_gray(base: str) -> None:
    # tiny-image and tiny-denoise v1 run it replicated on their RGB graph, and answer its luma.
    for route in ("tiny-image/reconstruct", "tiny-denoise/versions/1/reconstruct"):
        status, body, _ = _post(f"{base}/v1/models/{route}", _image("L"), "image/png")
        assert status == 200 and _mode(body) == ("L", (56, 40)), route
    status, body, _ = _post(f"{base}/v1/models/tiny-image/reconstruct", _image("L"), "image/png", "image/jpeg")
    assert status == 200 and Image.open(io.BytesIO(body)).mode == "L"


def test_a_codec_with_a_gray_variant_codes_a_gray_image_as_one_channel(base: str) -> None:
    gray, rgb = _image("L"), _image("RGB")
    status, stream, headers = _post(f"{base}/v1/models/tiny-codec/encode", gray, "image/png")
    assert status == 200 and read_origin(stream)[:3] == ("tiny-codec", 2, 1)
    status, colour_stream, _ = _post(f"{base}/v1/models/tiny-codec/encode", rgb, "image/png")
    assert status == 200 and read_origin(colour_stream).channels == 3
    # Decoded by the stream's own header, on the gray decoder: a gray image of the original size.
    for route in ("/v1/decode", "/v1/models/tiny-codec/decode"):
        status, body, _ = _post(base + route, stream, STREAM)
        assert status == 200 and _mode(body) == ("L", (56, 40)), route
    status, body, headers = _post(f"{base}/v1/models/tiny-codec/reconstruct", gray, "image/png")
    assert status == 200 and _mode(body) == ("L", (56, 40))
    assert float(headers["x-psnr"]) > 5 and float(headers["x-bits-per-pixel"]) > 0


def test_a_codec_without_gray_variant_codes_gray_as_rgb_and_refuses_gray_streams(base: str) -> None:
    status, stream, _ = _post(f"{base}/v1/models/tiny-codec/versions/1/encode", _image("L"), "image/png")
    assert status == 200 and read_origin(stream)[:3] == ("tiny-codec", 1, 3)
    status, body, _ = _post(f"{base}/v1/models/tiny-codec/versions/1/reconstruct", _image("L"), "image/png")
    assert status == 200 and _mode(body)[0] == "L"  # gray in, gray out, even through an RGB stream
    # A 1-channel stream naming v1 (written here: v1 never writes one) is refused, naming why.
    header, payload = unpack(stream)
    gray_stream = pack(replace(header, channels=1), payload)
    status, body, _ = _post(f"{base}/v1/decode", gray_stream, STREAM)
    assert status == 400
    assert "1-channel (gray)" in json.loads(body)["error"]["message"]


def test_oip_rows_run_gray_or_colour_each(base: str) -> None:
    client = triton_http.InferenceServerClient(base.removeprefix("http://"))
    images = np.array([_image("L"), _image("RGB", seed=1), _image("L", 24, 24, seed=2)], dtype=np.object_)
    tensor = triton_http.InferInput("image", [3], "BYTES")
    tensor.set_data_from_numpy(images, binary_data=True)
    answers = client.infer("tiny-denoise.reconstruct", [tensor]).as_numpy("image")
    assert [_mode(a) for a in answers] == [("L", (56, 40)), ("RGB", (56, 40)), ("L", (24, 24))]
    tensor = triton_http.InferInput("image", [1], "BYTES")
    tensor.set_data_from_numpy(images[:1], binary_data=True)
    (stream,) = client.infer("tiny-codec.encode", [tensor]).as_numpy("stream")
    assert read_origin(stream).channels == 1


def test_a_codec_for_gray_images_alone_codes_gray_and_converts_colour(base: str) -> None:
    for mode in ("L", "RGB"):  # a colour image is converted to its luma for a 1-channel model
        status, stream, _ = _post(f"{base}/v1/models/tiny-codec-gray/encode", _image(mode), "image/png")
        assert status == 200 and read_origin(stream).channels == 1
        status, body, _ = _post(f"{base}/v1/decode", stream, STREAM)
        assert status == 200 and _mode(body) == ("L", (56, 40))


def test_init_from_a_version_with_a_gray_variant_takes_the_weights_of_the_runs_channels(gray_repo: Path) -> None:
    import torch

    from training.config import load_config
    from training.init_weights import load_initial_weights
    from training.registry import build_model

    version = gray_repo / "tiny-denoise" / "2"
    for channels in (1, 3):
        config = load_config(None, [*TINY_SKIP, f"model.channels={channels}", f"data.channels={channels}"])
        weights = load_initial_weights(version, build_model(config.model), "conv", channels)
        # Gray: the variant's own weights (1-channel stem), never converted; RGB: the RGB graph's.
        assert weights.state["stem.0.weight"].shape[1] == channels
        original = load_initial_weights(gray_repo / "tiny-denoise" / "1", build_model(config.model), "conv", channels)
        same_as_v1 = all(torch.equal(weights.state[k], original.state[k]) for k in original.state)
        assert same_as_v1 == (channels == 3)  # v2's RGB graph is v1's; its gray graph was trained further
