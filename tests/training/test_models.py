import pytest
import torch

from training.losses import sequence_loss
from training.models import ConvAutoencoder, ConvConfig, RecurrentAutoencoder, RecurrentConfig
from training.registry import build_model, families, model_config_class


def test_registry_names_are_kebab_case_and_build():
    assert families() == ["codec", "contrastive-recurrent", "conv", "hyperprior-codec", "recurrent"]
    assert isinstance(build_model(model_config_class("conv")()), ConvAutoencoder)
    with pytest.raises(ValueError, match="unknown model family"):
        model_config_class("transformer")


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(1, 1), (17, 29), (64, 64), (33, 100)], ids=str)
@pytest.mark.parametrize(("activation", "kernel"), [("gelu", 4), ("relu", 2)], ids=["gelu-k4", "relu-k2"])
def test_conv_keeps_any_size(channels, size, activation, kernel):
    config = ConvConfig(
        channels=channels, widths=(8, 16, 16), latent_channels=4, activation=activation, upsample_kernel=kernel
    )
    model = ConvAutoencoder(config).eval()
    out = model(torch.rand(2, channels, *size))
    assert out["x_hat"].shape == (2, channels, *size)
    assert out["latent"].shape == (2, 4, -(-size[0] // 8), -(-size[1] // 8))
    assert float(out["x_hat"].min()) >= 0.0 and float(out["x_hat"].max()) <= 1.0


def test_seed_design_dense_bottleneck_trains_a_step_and_fixes_the_size():
    config = ConvConfig(widths=(32, 64), latent_channels=16, dense_latent=16, input_size=(32, 32))
    model = ConvAutoencoder(config)
    out = model(torch.rand(4, 3, 32, 32))
    assert out["latent"].shape == (4, 16)
    assert out["x_hat"].shape == (4, 3, 32, 32)
    out["x_hat"].mean().backward()  # the decoder's dense layer matches its reshape
    with pytest.raises(ValueError, match="needs 32x32 input"):
        model(torch.rand(1, 3, 48, 32))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"dense_latent": 16}, "fixes the input size", id="dense-without-size"),
        pytest.param({"input_size": (30, 30)}, "multiple of the stride", id="size-not-multiple"),
        pytest.param({"residual": True}, "needs skip_connections", id="residual-without-skips"),
        pytest.param({"channels": 2}, "1 or 3", id="two-channels"),
        pytest.param({"activation": "tanh"}, "gelu or relu", id="activation"),
        pytest.param({"upsample_kernel": 3}, "2 or 4", id="upsample-kernel"),
        pytest.param({"full_resolution_blocks": -1}, "0 or more", id="full-resolution-blocks"),
    ],
)
def test_conv_config_rejects_inconsistent_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ConvConfig(**kwargs)


def test_skip_model_has_no_standalone_decoder():
    model = ConvAutoencoder(ConvConfig(widths=(8, 16), skip_connections=True, residual=True)).eval()
    assert model(torch.rand(1, 3, 21, 13))["x_hat"].shape == (1, 3, 21, 13)
    with pytest.raises(ValueError, match="no standalone decoder"):
        model.decode(torch.rand(1, 8, 4, 4))


@pytest.mark.parametrize("skips", [True, False])
def test_full_resolution_blocks_keep_shapes_and_learn(skips):
    config = ConvConfig(
        widths=(8, 16), latent_channels=4, skip_connections=skips, residual=skips, full_resolution_blocks=2
    )
    model = ConvAutoencoder(config)
    for part in (model.stem, model.tail):
        assert sum(isinstance(m, torch.nn.Conv2d) for m in part.modules()) == 2
    out = model(torch.rand(2, 3, 19, 22))
    assert out["x_hat"].shape == (2, 3, 19, 22) and out["latent"].shape == (2, 4, 5, 6)
    out["x_hat"].mean().backward()
    assert model.stem[0].weight.grad is not None and model.tail[0].weight.grad is not None
    # Without skips the stem is part of the encoder and the tail part of the decoder.
    if not skips:
        assert model.decode(model.encode(torch.rand(1, 3, 8, 8))).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrent_shapes_with_mixed_lengths(cell):
    model = RecurrentAutoencoder(RecurrentConfig(features=3, cell=cell, hidden_size=16, latent_size=5, num_layers=2))
    lengths = torch.tensor([40, 7, 1])
    out = model(torch.randn(3, 40, 3), lengths)
    assert out["x_hat"].shape == (3, 40, 3)
    assert out["latent"].shape == (3, 5)
    assert out["mask"].sum(1).tolist() == [40, 7, 1]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_padding_does_not_change_a_series_latent(cell):
    model = RecurrentAutoencoder(RecurrentConfig(cell=cell, hidden_size=16, latent_size=4)).eval()
    series = torch.randn(1, 12, 1)
    alone = model.encode(series, torch.tensor([12]))
    padded = torch.cat([series, torch.randn(1, 30, 1) * 100], dim=1)  # garbage, not zeros
    with_padding = model.encode(padded, torch.tensor([12]))
    torch.testing.assert_close(alone, with_padding, rtol=0, atol=1e-6)


def test_padding_does_not_change_the_loss():
    model = RecurrentAutoencoder(RecurrentConfig(hidden_size=8, latent_size=3)).eval()
    series = torch.randn(2, 10, 1)
    lengths = torch.tensor([10, 6])
    noisy = series.clone()
    noisy[1, 6:] = 1e3
    losses = []
    for x in (series, noisy):
        out = model(x, lengths)
        losses.append(float(sequence_loss(out, {"target": x})["loss"]))
    assert losses[0] == pytest.approx(losses[1], abs=1e-6)
