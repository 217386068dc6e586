"""The hybrid `series-embed` latent: an exact in-graph PAA beside the learned part (issue 19).

The PAA branch is checked against a plain numpy reference for lengths shorter and longer than the
bin count and inside padded batches, then through the real exporter (ONNX Runtime against torch),
and the committed hybrid config is trained for a few steps, exported and served.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from service.kinds.sequence import sequence_encode
from tests.conftest import ECG, ROOT
from training.checkpoint import restore_model
from training.config import load_config
from training.evaluate.embeddings import _SETTINGS
from training.evaluate.series import hybrid_design_scores, leave_one_out_accuracy, znorm
from training.evaluate.served import load_served
from training.export import export_run
from training.fit import fit
from training.models.contrastive import ContrastiveRecurrentConfig, paa
from training.registry import build_model

BINS = 48
SERVED = "model.served_paa_weight=3.0"
TINY = [
    f'data.path="{ECG}"',
    "data.series=64",
    "data.val_series=16",
    "data.file_repeats=1",
    "data.max_length=64",
    "model.hidden_size=16",
    "model.conv_channels=8",
    "optim.steps=6",
    "optim.val_every=3",
    "optim.batch_size=8",
    "optim.warmup_steps=0",
    "optim.time_budget_s=null",
]


def reference_paa(series: np.ndarray, bins: int) -> np.ndarray:
    """Area-weighted resampling of one series to `bins` bins, written out step by step and bin by bin."""
    length = len(series)
    out = np.zeros(bins)
    for j in range(bins):
        for t in range(length):
            start, end = t * bins / length, (t + 1) * bins / length
            out[j] += max(0.0, min(end, j + 1) - max(start, j)) * series[t]
    return out


def tiny_hybrid(features: int = 1, weight: float = 2.0) -> torch.nn.Module:
    config = ContrastiveRecurrentConfig(
        features=features, hidden_size=16, conv_channels=8, latent_size=64, segments=4, paa_bins=BINS // features
    )
    config.paa_weight = weight
    return build_model(config).eval()


@pytest.mark.parametrize(
    "length",
    [
        pytest.param(1, id="one-step"),
        pytest.param(7, id="shorter"),
        pytest.param(24, id="half"),
        pytest.param(BINS, id="equal"),
        pytest.param(50, id="just-longer"),
        pytest.param(251, id="longer"),
    ],
)
def test_paa_matches_numpy_reference(length: int):
    series = np.random.default_rng(length).standard_normal(length)
    got = paa(torch.tensor(series, dtype=torch.float64).view(1, -1, 1), torch.tensor([length]), BINS)
    np.testing.assert_allclose(got[0].numpy(), reference_paa(series, BINS), atol=1e-9)


def test_paa_of_a_short_series_repeats_its_values():
    got = paa(torch.tensor([[[1.0], [2.0], [3.0]]]), torch.tensor([3]), 6)
    assert got[0].tolist() == [1.0, 1.0, 2.0, 2.0, 3.0, 3.0]


def test_paa_in_a_padded_batch_ignores_the_padding():
    rng = np.random.default_rng(0)
    lengths = [5, 300, 48, 17]
    batch = np.full((len(lengths), max(lengths), 1), 7.0)  # padding that would show if it were read
    for row, n in enumerate(lengths):
        batch[row, :n, 0] = rng.standard_normal(n)
    got = paa(torch.from_numpy(batch), torch.tensor(lengths), BINS).numpy()
    want = np.stack([reference_paa(batch[row, :n, 0], BINS) for row, n in enumerate(lengths)])
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_hybrid_latent_is_scaled_paa_then_unit_learned_part():
    model = tiny_hybrid(weight=2.0)
    series = znorm(np.random.default_rng(1).standard_normal((3, 90)))
    x = torch.tensor(series, dtype=torch.float32).unsqueeze(-1)
    with torch.no_grad():
        latent = model.encode(x, torch.tensor([90, 90, 90]))
    assert latent.shape == (3, 64)
    want = np.stack([reference_paa(s, BINS) for s in series]) * 2.0 / BINS**0.5
    np.testing.assert_allclose(latent[:, :BINS].numpy(), want, atol=1e-5)
    # A z-normalised series' PAA part has norm at most paa_weight (Jensen: a bin mean's square <= its mean square).
    assert float(latent[:, :BINS].norm(dim=1).max()) <= 2.0 + 1e-5
    assert torch.allclose(latent[:, BINS:].norm(dim=1), torch.ones(3), atol=1e-5)


def test_multichannel_paa_is_feature_major():
    model = tiny_hybrid(features=2, weight=1.0)
    x = torch.randn(1, 30, 2)
    with torch.no_grad():
        latent = model.encode(x, torch.tensor([30]))
    bins = BINS // 2
    first = reference_paa(x[0, :, 0].double().numpy(), bins) / bins**0.5
    np.testing.assert_allclose(latent[0, :bins].numpy(), first, atol=1e-5)


def test_config_refuses_a_paa_part_without_room_for_learned_features():
    with pytest.raises(ValueError, match="paa_bins"):
        ContrastiveRecurrentConfig(latent_size=64, paa_bins=64)


def test_design_scores_rescale_the_paa_part_only():
    # The PAA part (4 numbers, recorded at weight 2) separates the classes; the learned part another partition.
    rng = np.random.default_rng(2)
    labels, other = np.repeat([0, 1], 10), np.tile([0, 1], 10)
    coarse = 2.0 * (rng.standard_normal((20, 4)) * 0.1 + labels[:, None])
    learned = rng.standard_normal((20, 2)) * 0.1 + other[:, None]
    scores = hybrid_design_scores(np.concatenate([coarse, learned], 1), labels, 4, 2.0)
    assert scores["train_loo_paa_part_1nn"] == 1.0 and scores["train_loo_learned_part_1nn"] < 0.8
    for weight in (0.5, 6.0):
        rescaled = np.concatenate([coarse / 2.0 * weight, learned], 1)
        assert scores[f"train_loo_paa_weight_{weight:g}_1nn"] == leave_one_out_accuracy(rescaled, labels)
    assert hybrid_design_scores(learned, labels, 0, 1.0) == {}


@pytest.fixture(scope="module")
def hybrid_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The committed hybrid config, trained for 6 steps on the committed heartbeats."""
    run_dir = tmp_path_factory.mktemp("runs") / "series-embed-hybrid"
    fit(load_config(ROOT / "configs" / "series-embed-hybrid.toml", TINY), run_dir, progress=False)
    return run_dir


@pytest.fixture(scope="module")
def hybrid_model(hybrid_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`hybrid_run` through the real exporter (which checks ONNX-vs-torch parity at three batches).

    Exported with a served PAA weight of 3 where it was trained with 2, as a weight chosen after training is.
    """
    models = tmp_path_factory.mktemp("models")
    return export_run(hybrid_run, "series-embed", models, max_length=2000, overrides=[SERVED])


def test_served_weight_scales_the_paa_part_and_the_decoder_scales_it_back():
    trained = tiny_hybrid(weight=2.0)
    served = tiny_hybrid(weight=2.0)
    served.load_state_dict(trained.state_dict())
    served.config.served_paa_weight = 3.0
    x, lengths = torch.randn(2, 60, 1), torch.tensor([60, 33])
    with torch.no_grad():
        before, after = trained.encode(x, lengths), served.encode(x, lengths)
        torch.testing.assert_close(after[:, :BINS], before[:, :BINS] * 1.5)
        torch.testing.assert_close(after[:, BINS:], before[:, BINS:])
        torch.testing.assert_close(served.decode(after, lengths), trained.decode(before, lengths))


def test_only_model_settings_change_after_training(hybrid_run: Path):
    with pytest.raises(ValueError, match="only model settings"):
        restore_model(hybrid_run, overrides=["optim.steps=3"])
    with pytest.raises(RuntimeError):  # a changed architecture does not load
        restore_model(hybrid_run, overrides=["model.paa_bins=32"])


def test_exported_encoder_matches_torch_on_padded_batches(hybrid_run: Path, hybrid_model: Path):
    session = ort.InferenceSession(str(hybrid_model / "encoder.onnx"), providers=["CPUExecutionProvider"])
    model, _, _ = restore_model(hybrid_run, overrides=[SERVED])
    lengths = np.array([3, 251, 48, 140], dtype=np.int64)
    batch = np.random.default_rng(3).standard_normal((4, 251, 1)).astype(np.float32)
    got = session.run(None, {"sequences": batch, "lengths": lengths})[0]
    with torch.no_grad():
        want_torch = model.encode(torch.from_numpy(batch), torch.from_numpy(lengths)).numpy()
    np.testing.assert_allclose(got, want_torch, atol=1e-4)  # the exporter's parity tolerance
    alone = [
        session.run(None, {"sequences": batch[i : i + 1, :n], "lengths": lengths[i : i + 1]})[0][0]
        for i, n in enumerate(lengths)
    ]
    np.testing.assert_allclose(got, np.stack(alone), atol=1e-5)
    want = np.stack([reference_paa(batch[i, :n, 0].astype(np.float64), BINS) for i, n in enumerate(lengths)])
    np.testing.assert_allclose(got[:, :BINS], want * 3.0 / BINS**0.5, atol=1e-5)


def test_served_hybrid_embeddings(hybrid_model: Path):
    model = load_served(hybrid_model)
    assert model.manifest.latent.shape == [64]
    recorded = model.manifest.training.config["model"]
    assert recorded["paa_bins"] == BINS and recorded["paa_weight"] == 2.0 and recorded["served_paa_weight"] == 3.0  # type: ignore[index]
    assert model.manifest.parity_max_abs_diff is not None and model.manifest.parity_max_abs_diff < 1e-4
    series = [np.sin(np.arange(n) / 3.0).tolist() for n in (3, 24, 251)]
    embeddings = np.asarray(sequence_encode(model, series, _SETTINGS))
    assert embeddings.shape == (3, 64)
    assert np.allclose(np.linalg.norm(embeddings[:, BINS:], axis=1), 1.0, atol=1e-4)
    # The service z-normalises what it is sent: the PAA part is that of the z-normalised series.
    want = reference_paa(znorm(np.asarray(series[2])), BINS) * 3.0 / BINS**0.5
    np.testing.assert_allclose(embeddings[2, :BINS], want, atol=1e-4)
