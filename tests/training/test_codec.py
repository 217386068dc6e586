import json

import numpy as np
import pytest
import torch

from service.codecs.entropy import EntropyTables
from service.manifest import load_manifest
from training.entropy_tables import quantize_pmf
from training.layers import GDN, FactorizedDensity
from training.models import CodecConfig, CompressionAutoencoder


def test_gdn_and_its_inverse_keep_shape_and_invert_at_init_scale():
    x = torch.randn(2, 8, 5, 7)
    gdn, igdn = GDN(8), GDN(8, inverse=True)
    assert gdn(x).shape == x.shape
    igdn.load_state_dict(gdn.state_dict())
    # With the same parameters IGDN(GDN(x)) is close to x for small activations.
    small = x * 0.1
    torch.testing.assert_close(igdn(gdn(small)), small, rtol=0.05, atol=0.01)


def test_density_likelihoods_form_a_distribution_over_the_integers():
    density = FactorizedDensity(3)
    grid = torch.arange(-80, 81, dtype=torch.float32).view(1, 1, 1, -1).expand(1, 3, 1, -1)
    totals = density.likelihood(grid).sum(-1).flatten()
    torch.testing.assert_close(totals, torch.ones(3), rtol=0, atol=1e-3)
    for offset, pmf in density.integer_pmfs():
        assert offset <= 0 and float(pmf.sum()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("pmf", [np.array([0.5, 0.5]), np.array([1.0, 0.0, 0.0]), np.full(300, 1 / 300)])
def test_quantized_pmfs_sum_to_the_precision_and_keep_every_symbol(pmf):
    counts = quantize_pmf(pmf, precision=16)
    assert sum(counts) == 1 << 16 and min(counts) >= 1


def test_codec_forward_reports_rate_and_keeps_size():
    model = CompressionAutoencoder(CodecConfig(hidden=8, latent_channels=6))
    out = model(torch.rand(2, 3, 37, 21))
    assert out["x_hat"].shape == (2, 3, 37, 21) and out["latent"].shape == (2, 6, 3, 2)
    assert float(out["bpp"]) > 0


def test_exported_codec_ships_tables_that_code_its_latents(tiny_models):
    folder = tiny_models / "tiny-codec/1"
    manifest = load_manifest(folder)
    assert manifest.task == "compress" and sorted(manifest.graphs) == ["decoder", "encoder"]
    assert manifest.entropy_model is not None and manifest.parity_max_abs_diff <= 1e-4
    tables = EntropyTables(folder / manifest.entropy_model.file)
    spec = json.loads((folder / manifest.entropy_model.file).read_text())
    assert tables.channels == manifest.latent.shape[0] == 12 and spec["precision"] == 16
    latent = np.random.default_rng(0).normal(0, 2, (12, 3, 4)).round().astype(np.float32)
    latent = np.clip(latent, tables.offsets[:, None, None], (tables.offsets + tables.sizes - 1)[:, None, None])
    assert np.array_equal(tables.decode(tables.encode(latent), 3, 4), latent)


def test_a_single_value_channel_costs_no_bits(tmp_path):
    path = tmp_path / "tables.json"
    path.write_text(
        json.dumps(
            {"precision": 16, "tables": [{"offset": 0, "pmf": [65536]}, {"offset": -1, "pmf": [16384, 32768, 16384]}]}
        )
    )
    tables = EntropyTables(path)
    latent = np.array([[[0.0, 0.2]], [[1.0, -1.0]]], dtype=np.float32)  # channel 0 rounds to its only value
    decoded = tables.decode(tables.encode(latent), 1, 2)
    assert np.array_equal(decoded, np.array([[[0.0, 0.0]], [[1.0, -1.0]]], dtype=np.float32))
