"""The `hyperprior-codec` family: gain interpolation, rate estimate vs real streams, export files, tables."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from service.codecs.hyperprior import QUALITY_STEPS, HyperpriorEntropyModel
from service.codecs.rate_control import RateRequest
from service.config import Settings
from service.kinds.codec import codec_encode
from service.manifest import load_manifest
from service.repository import load_version
from tests.conftest import BSDS
from training.checkpoint import restore_model
from training.export_hyperprior import SCALES, gaussian_table
from training.models.hyperprior import HyperpriorCodec, HyperpriorCodecConfig
from training.weights_file import WEIGHTS_FILE, read_weights


def test_gains_are_the_levels_at_their_qualities_and_log_linear_between():
    model = HyperpriorCodec(HyperpriorCodecConfig(hidden=8, latent_channels=6, hyper_channels=4))
    with torch.no_grad():
        model.log_gain.copy_(torch.randn_like(model.log_gain))
    levels = model.levels
    for level in range(levels):
        gain, _ = model.gains(level / (levels - 1))
        torch.testing.assert_close(gain, torch.exp(model.log_gain[level]))
    halfway, _ = model.gains(0.5 / (levels - 1))
    torch.testing.assert_close(halfway, torch.exp((model.log_gain[0] + model.log_gain[1]) / 2))
    assert model.lmbda(0.0) == pytest.approx(model.config.lambdas[0], rel=1e-5)
    assert model.lmbda(1.0) == pytest.approx(model.config.lambdas[-1], rel=1e-5)


def test_forward_keeps_the_size_and_validates_at_its_quality():
    model = HyperpriorCodec(HyperpriorCodecConfig(hidden=8, latent_channels=6, hyper_channels=4)).eval()
    with torch.no_grad():
        out = model(torch.rand(2, 3, 37, 50))
    assert out["x_hat"].shape == (2, 3, 37, 50) and float(out["bpp"]) > 0
    assert float(out["lmbda"]) == pytest.approx(model.lmbda(model.config.validation_quality))


def test_real_streams_agree_with_the_training_estimate_of_the_rate(tiny_runs, tiny_models):
    """Real stream bytes (header aside) against the model's own bits estimate, at several qualities."""
    model, _, _ = restore_model(tiny_runs["hyperprior"])
    model.eval()
    served = load_version(tiny_models / "tiny-hyperprior" / "1", Settings(intra_op_threads=1))
    path = sorted(BSDS.glob("*"))[0]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    data = path.read_bytes()
    for quality in (0.0, 0.5, 1.0):
        encoded = codec_encode(served, data, Settings(), RateRequest(quality=quality))
        with torch.no_grad():
            x = torch.from_numpy(pixels.transpose(2, 0, 1)[None].astype(np.float32) / 255)
            estimate = float(model(x, quality=encoded.quality / QUALITY_STEPS)["bpp"])
        header_bits = 8 * 80  # the header, tile table and CRC: under 80 bytes for this name
        real = (len(encoded.stream) * 8 - header_bits) / (pixels.shape[0] * pixels.shape[1])
        # Integer tables and 32-bit words cost a little over the estimate; values far in a Gaussian's tail
        # cost less (an escape is ~25 bits where the estimate's floored likelihood says 30): an untrained
        # model has many of those. Tables indexed wrongly would cost far more than either.
        assert 0.6 * estimate <= real <= 1.15 * estimate + 0.02, quality


def test_gaussian_tables_cover_their_scale_and_sum_to_the_precision():
    for scale in (SCALES[0], 1.0, SCALES[-1]):
        table = gaussian_table(float(scale))
        pmf = np.asarray(table["pmf"])
        assert pmf.sum() == 1 << 16 and pmf.min() >= 1 and -table["offset"] == max(1, math.ceil(4.5 * scale))
        assert len(pmf) == 2 * -table["offset"] + 1
        if scale <= 1.0:  # peaked enough for its mode to be unambiguous
            assert int(np.argmax(pmf)) == -table["offset"]


def test_export_writes_the_entropy_model_transforms_and_fp16_weights(tiny_runs, tiny_models: Path):
    folder = tiny_models / "tiny-hyperprior" / "1"
    manifest = load_manifest(folder)
    spec = manifest.entropy_model
    assert spec is not None and spec.kind == "mean-scale-hyperprior" and spec.transforms == "hyper_transforms.npz"
    coder = HyperpriorEntropyModel(folder / spec.file, folder / spec.transforms)
    assert coder.channels == manifest.latent.shape[0] and coder.variable_rate
    weights, metadata = read_weights(folder / WEIGHTS_FILE)
    model, _, _ = restore_model(tiny_runs["hyperprior"])
    assert metadata["family"] == "hyperprior-codec" and set(weights) == set(model.state_dict())
    for name, value in model.state_dict().items():
        torch.testing.assert_close(weights[name], value.float(), rtol=2e-3, atol=1e-4)


def test_gains_and_hyper_parts_train_at_their_scaled_learning_rates():
    from training.config import OptimConfig
    from training.fit import _parameter_groups

    model = HyperpriorCodec(HyperpriorCodecConfig(hidden=8, latent_channels=6, hyper_channels=4))
    groups = {group["lr"]: group["params"] for group in _parameter_groups(model, OptimConfig(lr=1e-4))}
    assert len(groups) == 4
    by_id = {id(p): lr for lr, params in groups.items() for p in params}
    assert by_id[id(model.log_gain)] == pytest.approx(1e-3) and by_id[id(model.h_s[0].weight)] == pytest.approx(5e-4)
    assert by_id[id(model.g_a[0].weight)] == pytest.approx(1e-4)
    assert sum(len(p) for p in groups.values()) == len(list(model.parameters()))


def test_a_warm_start_from_a_ladder_version_starts_the_hyperprior_as_its_factorized_prior(tiny_models: Path):
    from training.init_weights import apply_initial_weights, load_initial_weights

    source = tiny_models / "tiny-codec" / "1"
    model = HyperpriorCodec(HyperpriorCodecConfig(hidden=16, latent_channels=12, hyper_channels=8))
    weights = load_initial_weights(source, model, "hyperprior-codec", 3)
    apply_initial_weights(model, weights)
    assert model.warm_start(source, weights.fresh) is not None
    tables = json.loads((source / "entropy_tables.json").read_text())["tables"]
    first = np.asarray(tables[0]["pmf"], np.float64) / (1 << 16)
    mean = float((first * (np.arange(len(first)) + tables[0]["offset"])).sum())
    with torch.no_grad():
        means, scales = model.hyper_parameters(torch.randn(1, 8, 2, 3), 8, 12)
    assert torch.allclose(means[0, 0], torch.full((8, 12), mean), atol=1e-5)  # whatever the hyper-latent
    assert float(scales.min()) >= 0.11
    assert model.warm_start(source, ()) is None  # nothing fresh: weights from a run are kept
