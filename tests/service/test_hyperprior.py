"""The variable-rate hyperprior codec (issue 18): exact hyper-synthesis, coding round trips, rate control.

Runs on `tiny-hyperprior`, trained for a few steps in the session and exported by the real exporter.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.codecs.bitstream import pack_tiles, read_stream
from service.codecs.hyper_transforms import ACTIVATION_BITS, CLAMP, EXACT_BELOW, HyperTransforms
from service.codecs.hyperprior import QUALITY_STEPS, HyperpriorEntropyModel, hyper_latent_size
from service.codecs.rate_control import RateRequest, rate_request
from service.errors import DecodingError, InvalidInputError
from service.kinds.codec import codec_decode, codec_encode
from service.repository import load_version
from tests.service.conftest import png_bytes, service_settings

CODEC = "/v1/models/tiny-hyperprior"
PNG = {"content-type": "image/png"}
STREAM = {"content-type": "application/octet-stream"}


@pytest.fixture(scope="module")
def folder(tiny_models: Path) -> Path:
    return tiny_models / "tiny-hyperprior" / "1"


@pytest.fixture(scope="module")
def entropy_model(folder: Path) -> HyperpriorEntropyModel:
    return HyperpriorEntropyModel(folder / "entropy_model.json", folder / "hyper_transforms.npz")


def photo(height: int, width: int, seed: int) -> bytes:
    """A smooth, photo-like PNG (noise costs the same at every quality; gradients do not)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    channels = [
        np.sin(6 * x * rng.uniform(0.5, 2) + rng.uniform(0, 6)) * np.cos(5 * y * rng.uniform(0.5, 2)) for _ in range(3)
    ]
    pixels = (np.stack(channels, -1) * 100 + 128 + rng.normal(0, 6, (height, width, 3))).clip(0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="PNG")
    return out.getvalue()


# ---------------------------------------------------------------- the exact hyper-synthesis


def _torch_synthesis(transforms: HyperTransforms, z_hat: np.ndarray) -> np.ndarray:
    """The same fixed-point computation through torch's float64 convolutions: another summation order."""
    x = torch.from_numpy(np.clip(z_hat, -CLAMP, CLAMP).astype(np.float64))[None]
    for index, layer in enumerate(transforms.synthesis):
        weight, bias = torch.from_numpy(layer.weight), torch.from_numpy(layer.bias)
        pad = layer.kernel // 2
        if layer.transposed:
            x = torch.nn.functional.conv_transpose2d(
                x, weight, bias, layer.stride, pad, output_padding=layer.stride - 1
            )
        else:
            x = torch.nn.functional.conv2d(x, weight, bias, layer.stride, pad)
        if index < len(transforms.synthesis) - 1:
            scale = float(1 << ACTIVATION_BITS)
            x = torch.round(torch.clamp(x, 0, CLAMP) * scale) / scale
    return x[0].numpy()


def test_hyper_synthesis_is_bit_exact_whatever_the_summation_order(entropy_model):
    transforms = entropy_model.transforms
    rng = np.random.default_rng(0)
    for rows, columns in ((3, 5), (8, 8), (13, 7)):
        z_hat = rng.integers(-20, 21, (entropy_model.hyper.channels, *hyper_latent_size(rows, columns)))
        means, scales = transforms.synthesise(z_hat, rows, columns)
        reference = _torch_synthesis(transforms, z_hat)[:, :rows, :columns]
        half = reference.shape[0] // 2
        # Equal, not close: float64 holds every partial sum exactly (service.codecs.hyper_transforms).
        assert np.array_equal(means, reference[:half]) and np.array_equal(scales, reference[half:])
        # And on the fixed-point grid: multiples of 2^-24.
        assert np.array_equal(means * 2**24, np.rint(means * 2**24))


def _round_half_even(units: np.ndarray, shift: int) -> np.ndarray:
    """`units` / 2^shift rounded half to even (np.rint's rule), in integers."""
    quotient, remainder = np.divmod(units, 1 << shift)
    half = 1 << (shift - 1)
    return quotient + ((remainder > half) | ((remainder == half) & (quotient % 2 == 1)))


def _integer_conv(x: np.ndarray, weight: np.ndarray, stride: int, transposed: bool) -> np.ndarray:
    """A layer's convolution over int64, exact by nature (the same padding rules as hyper_transforms)."""
    k = weight.shape[-1]
    pad = k // 2
    if transposed:
        _, height, width = x.shape
        side = (stride * (height - 1) + k + stride - 1, stride * (width - 1) + k + stride - 1)
        full = np.zeros((weight.shape[1], *side), np.int64)
        for i in range(k):
            for j in range(k):
                contribution = np.einsum("io,ihw->ohw", weight[:, :, i, j], x)
                full[:, i : i + stride * height : stride, j : j + stride * width : stride] += contribution
        return full[:, pad : pad + stride * height, pad : pad + stride * width]
    # torch only cuts the patches: integers below 2^17, exact in float64.
    patches = torch.nn.functional.unfold(torch.from_numpy(x.astype(np.float64))[None], k, padding=pad, stride=stride)
    rows = (x.shape[1] + 2 * pad - k) // stride + 1
    product = weight.reshape(weight.shape[0], -1) @ patches[0].numpy().astype(np.int64)
    return product.reshape(weight.shape[0], rows, -1)


def test_hyper_synthesis_equals_an_integer_oracle_at_the_edge_of_its_exact_range(folder, tmp_path):
    """Weights scaled up to just under the bound the loader accepts, inputs at the clamp: still exact."""
    with np.load(folder / "hyper_transforms.npz") as arrays:
        edge = dict(arrays)
    rng = np.random.default_rng(4)
    for index in range(3):
        weight = edge[f"h_s.{index}.weight"]
        fan_in = weight[0].size if index == 2 else weight[:, 0].size  # the last layer is a plain convolution
        largest = int(EXACT_BELOW / (fan_in * CLAMP) * 2**16 * 0.99)  # in 2^-16 units
        edge[f"h_s.{index}.weight"] = rng.integers(-largest, largest + 1, weight.shape).astype(np.int32)
        edge[f"h_s.{index}.bias"] = rng.integers(-(2**20), 2**20, edge[f"h_s.{index}.bias"].shape).astype(np.int32)
    path = tmp_path / "edge.npz"
    np.savez(path, **edge)
    transforms = HyperTransforms.load(path)  # accepted: just inside the bound
    z_hat = rng.choice([-256, 256, 0, 255], (edge["h_s.0.weight"].shape[0], 3, 2))
    means, scales = transforms.synthesise(z_hat, 12, 8)
    # The oracle, all int64: layer 1 in 2^-16 units, the others in 2^-24; activations in 2^-8 units.
    x, scale_bits = z_hat.astype(np.int64), 0
    for index in range(3):
        weight, bias = (edge[f"h_s.{index}.{part}"].astype(np.int64) for part in ("weight", "bias"))
        stride, transposed = (int(v) for v in edge[f"h_s.{index}.layout"])
        y = _integer_conv(x, weight, stride, bool(transposed)) + (bias << scale_bits)[:, None, None]
        if index == 2:
            break
        clamped = np.clip(y, 0, int(CLAMP) << (16 + scale_bits))
        x, scale_bits = _round_half_even(clamped, 8 + scale_bits), ACTIVATION_BITS
    exact = y[:, :12, :8].astype(np.float64) / 2.0 ** (16 + scale_bits)
    half = exact.shape[0] // 2
    assert np.array_equal(means, exact[:half]) and np.array_equal(scales, exact[half:])
    assert np.abs(exact).max() > 2**10  # the sums really were large


def test_the_table_shift_is_the_gain_in_table_steps(entropy_model):
    for quality in (0, 20000, QUALITY_STEPS):
        gain, _ = entropy_model.gains(quality)
        shift = entropy_model.table_shift(quality)
        assert np.array_equal(shift, np.rint(np.log(gain) / entropy_model.scale_log_step).astype(np.int64))


def test_weights_that_could_leave_the_exact_range_are_refused(folder, tmp_path):
    with np.load(folder / "hyper_transforms.npz") as arrays:
        tampered = dict(arrays)
    tampered["h_s.0.weight"] = tampered["h_s.0.weight"] * 0 + 2**30
    path = tmp_path / "hyper.npz"
    np.savez(path, **tampered)
    with pytest.raises(ValueError, match="exact range"):
        HyperTransforms.load(path)


# ---------------------------------------------------------------- coding


def test_latents_round_trip_at_every_quality(entropy_model):
    rng = np.random.default_rng(1)
    latent = rng.normal(0, 4, (entropy_model.channels, 6, 9)).astype(np.float32)
    for quality in (0, 12345, QUALITY_STEPS // 2, QUALITY_STEPS):
        payload = entropy_model.encode(latent, quality)
        decoded = entropy_model.decode(payload, 6, 9, True, quality)
        gain, inverse = entropy_model.gains(quality)
        z_hat = np.clip(np.rint(entropy_model.transforms.analyse(latent * gain[:, None, None])), -CLAMP, CLAMP)
        means = entropy_model.transforms.synthesise(z_hat, 6, 9)[0] * gain[:, None, None]  # h_s's means of y, gained
        expected = (np.rint(latent * gain[:, None, None] - means) + means) * inverse[:, None, None]
        assert np.array_equal(decoded, expected.astype(np.float32))


def test_latents_far_outside_every_table_come_back_exactly(entropy_model):
    latent = np.zeros((entropy_model.channels, 4, 4), np.float32)
    latent.flat[::3] = 2.0**20
    latent.flat[1::5] = -(2.0**24)
    payload = entropy_model.encode(latent, QUALITY_STEPS)
    decoded = entropy_model.decode(payload, 4, 4, True, QUALITY_STEPS)
    gain, inverse = entropy_model.gains(QUALITY_STEPS)
    z_hat = np.clip(np.rint(entropy_model.transforms.analyse(latent * gain[:, None, None])), -CLAMP, CLAMP)
    means = entropy_model.transforms.synthesise(z_hat, 4, 4)[0] * gain[:, None, None]
    expected = (np.rint(latent * gain[:, None, None] - means) + means) * inverse[:, None, None]
    assert np.array_equal(decoded, expected.astype(np.float32))
    assert np.abs(decoded).max() > 2.0**19  # not clipped to a table's support


def test_damaged_payloads_decode_to_a_latent_or_a_decoding_error_and_nothing_else(entropy_model):
    # The stream's CRC and signature catch damage first; a payload itself may still be any bytes.
    latent = np.random.default_rng(2).normal(0, 4, (entropy_model.channels, 5, 5)).astype(np.float32)
    payload = entropy_model.encode(latent, 1000)
    rng = np.random.default_rng(3)
    for damaged in (payload[:4], b"", payload[: len(payload) // 8 * 4], rng.bytes(64), b"\xff" * 4096):
        try:
            decoded = entropy_model.decode(damaged, 5, 5, True, 1000)
        except DecodingError:
            continue
        assert decoded.shape == latent.shape and np.isfinite(decoded).all()
    with pytest.raises(DecodingError, match="quality"):
        entropy_model.decode(payload, 5, 5, True, None)


def test_images_round_trip_through_the_service_stages(folder):
    settings = service_settings(folder.parent.parent)
    model = load_version(folder, settings)
    data = photo(70, 90, seed=3)
    encoded = codec_encode(model, data, settings, RateRequest(quality=0.25))
    header = read_stream(encoded.stream).header
    assert header.quality == round(0.25 * QUALITY_STEPS) == encoded.quality
    pixels = codec_decode(model, encoded.stream, settings)
    assert pixels.shape == (3, 70, 90)
    assert np.array_equal(pixels, codec_decode(model, encoded.stream, settings))


# ---------------------------------------------------------------- rate control


def test_rate_requests_are_parsed_and_malformed_ones_refused():
    assert rate_request({"quality": "0.3"}, {}) == RateRequest(quality=0.3)
    assert rate_request({}, {"x-target-bpp": "0.5"}) == RateRequest(target_bpp=0.5)
    assert rate_request({"max_bytes": "1200"}, {}) == RateRequest(max_bytes=1200)
    assert rate_request({}, {}) == RateRequest()
    for query in (
        {"quality": "1.5"},
        {"quality": "nan"},
        {"quality": "high"},
        {"target_bpp": "0"},
        {"target_bpp": "-1"},
        {"target_bpp": "inf"},
        {"max_bytes": "0"},
        {"max_bytes": "1e3"},
        {"max_bytes": "9" * 40},
        {"max_bytes": "\u00b2"},  # str.isdigit() says yes, int() says no
        {"max_bytes": "\uff11\uff12"},  # fullwidth digits
        {"quality": "0." + "0" * 40 + "5"},  # longer than a number may be: refused, not cut
        {"quality": "0.5", "max_bytes": "100"},
    ):
        with pytest.raises(InvalidInputError):
            rate_request(query, {})


def test_encode_takes_a_quality_and_says_which_it_used(client):
    low = client.post(f"{CODEC}/encode?quality=0", content=photo(96, 128, 4), headers=PNG)
    high = client.post(f"{CODEC}/encode", content=photo(96, 128, 4), headers={**PNG, "X-Quality": "1"})
    default = client.post(f"{CODEC}/encode", content=photo(96, 128, 4), headers=PNG)
    assert low.status_code == high.status_code == default.status_code == 200
    assert low.headers["x-quality"] == "0.000000" and high.headers["x-quality"] == "1.000000"
    assert default.headers["x-quality"] == f"{round(0.5 * QUALITY_STEPS) / QUALITY_STEPS:.6f}"
    assert len(high.content) > len(low.content)
    decoded = client.post(f"{CODEC}/decode", content=high.content, headers=STREAM)
    assert decoded.status_code == 200 and Image.open(io.BytesIO(decoded.content)).size == (128, 96)


@pytest.mark.parametrize("seed", [5, 6, 7])
def test_size_targets_are_hit_from_below(client, seed):
    data = photo(160, 200, seed)
    smallest = len(client.post(f"{CODEC}/encode?quality=0", content=data, headers=PNG).content)
    largest = len(client.post(f"{CODEC}/encode?quality=1", content=data, headers=PNG).content)
    assert largest > 1.3 * smallest  # a range to aim inside
    for fraction in (0.2, 0.5, 0.8):
        budget = int(smallest + fraction * (largest - smallest))
        answer = client.post(f"{CODEC}/encode?max_bytes={budget}", content=data, headers=PNG)
        assert answer.status_code == 200
        assert (1 - 0.05) * budget <= len(answer.content) <= budget, (budget, len(answer.content))
        bpp = budget * 8 / (160 * 200)
        by_rate = client.post(f"{CODEC}/encode?target_bpp={bpp}", content=data, headers=PNG)
        assert float(by_rate.headers["x-bits-per-pixel"]) <= bpp
        assert len(by_rate.content) >= (1 - 0.05) * bpp * 160 * 200 / 8


def test_targets_outside_the_range(client):
    data = photo(96, 96, 8)
    largest = client.post(f"{CODEC}/encode?quality=1", content=data, headers=PNG)
    roomy = client.post(f"{CODEC}/encode?max_bytes={10 * len(largest.content)}", content=data, headers=PNG)
    assert roomy.status_code == 200 and roomy.content == largest.content  # the best it has, under the target
    tight = client.post(f"{CODEC}/encode?max_bytes=20", content=data, headers=PNG)
    assert tight.status_code == 422 and "smallest stream" in tight.json()["error"]["message"]


def test_a_fixed_rate_codec_refuses_rate_requests(client):
    answer = client.post("/v1/models/tiny-codec/encode?quality=0.5", content=png_bytes(32, 32), headers=PNG)
    assert answer.status_code == 422 and "fixed rate" in answer.json()["error"]["message"]
    assert (
        "x-quality" not in client.post("/v1/models/tiny-codec/encode", content=png_bytes(32, 32), headers=PNG).headers
    )


def test_reconstruct_reports_quality_rate_and_psnr(client):
    answer = client.post(f"{CODEC}/reconstruct?quality=0.75", content=photo(64, 80, 9), headers=PNG)
    assert answer.status_code == 200
    assert answer.headers["x-quality"] == f"{round(0.75 * QUALITY_STEPS) / QUALITY_STEPS:.6f}"
    assert float(answer.headers["x-psnr"]) > 0 and float(answer.headers["x-bits-per-pixel"]) > 0


def test_a_stream_without_its_quality_or_a_ladder_stream_with_one_is_refused(client):
    ours = read_stream(client.post(f"{CODEC}/encode", content=photo(64, 64, 10), headers=PNG).content)
    ladder = read_stream(client.post("/v1/models/tiny-codec/encode", content=png_bytes(32, 32), headers=PNG).content)
    for stream, route in ((ours, CODEC), (ladder, "/v1/models/tiny-codec")):
        flipped = replace(stream.header, quality=None if stream.header.quality is not None else 1234)
        answer = client.post(f"{route}/decode", content=pack_tiles(flipped, list(stream.tiles)), headers=STREAM)
        assert answer.status_code == 400 and "quality" in answer.json()["error"]["message"]


def test_a_stream_of_huge_escaped_values_decodes_to_an_image_not_an_error(client, entropy_model):
    ours = read_stream(client.post(f"{CODEC}/encode", content=photo(64, 64, 11), headers=PNG).content)
    latent = np.full((entropy_model.channels, 4, 4), 2.0**28, np.float32)
    latent[::2] = -(2.0**28)
    payload = entropy_model.encode(latent, ours.header.quality)
    answer = client.post(f"{CODEC}/decode", content=pack_tiles(ours.header, [payload]), headers=STREAM)
    assert answer.status_code == 200 and Image.open(io.BytesIO(answer.content)).size == (64, 64)
