"""`series-embed`'s recipe at tiny scale: synthetic corpus, contrastive recurrent family, export, serving.

The committed config is trained for a few steps on a small generated corpus plus the committed
heartbeat fixture, exported through the real exporter, and its served embeddings are checked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from service.kinds.sequence import sequence_encode
from tests.conftest import ECG, ROOT
from training.config import load_config
from training.corpus import augment
from training.data import split_indices
from training.evaluate.embeddings import _SETTINGS
from training.evaluate.series import leave_one_out_accuracy, paa
from training.evaluate.served import load_served
from training.export import export_run
from training.fit import fit
from training.losses import info_nce
from training.registry import build_model
from training.synthetic import FAMILIES, generate_corpus
from training.ucr_archive import read_ts

TINY = [
    f'data.path="{ECG}"',
    "data.series=64",
    "data.val_series=16",
    "data.file_repeats=1",
    "data.max_length=64",
    "model.hidden_size=16",
    "model.conv_channels=8",
    "model.latent_size=8",
    "optim.steps=6",
    "optim.val_every=3",
    "optim.batch_size=8",
    "optim.warmup_steps=0",
    "optim.time_budget_s=null",
]


@pytest.fixture(scope="module")
def served_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny `series-embed` trained from the committed config and exported."""
    run_dir = tmp_path_factory.mktemp("runs") / "series-embed"
    summary = fit(load_config(ROOT / "configs" / "series-embed.toml", TINY), run_dir, progress=False)
    assert summary["steps"] == 6 and np.isfinite(summary["final_validation"]["info_nce"])
    return export_run(run_dir, "series-embed", tmp_path_factory.mktemp("models"), max_length=2000)


def test_corpus_is_seeded_and_finite():
    first, again = generate_corpus(20, 16, 64, seed=3), generate_corpus(20, 16, 64, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))
    assert all(16 <= len(s) <= 64 and np.isfinite(s).all() for s in first)
    rng = np.random.default_rng(0)
    assert all(np.isfinite(family(rng, 40)).all() for family in FAMILIES.values())


def test_views_are_z_normalised_windows():
    config = load_config(ROOT / "configs" / "series-embed.toml").data
    view = augment(np.sin(np.linspace(0, 6, 100)), config, np.random.default_rng(0))  # type: ignore[arg-type]
    assert view.shape[1] == 1 and 60 <= len(view) <= 125
    assert abs(float(view.mean())) < 1e-5 and abs(float(view.std()) - 1) < 1e-4


def test_info_nce_rewards_matching_pairs():
    z = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    matched, accuracy = info_nce(torch.cat([z, z]), 4, 0.1)
    shuffled, _ = info_nce(torch.cat([z, z.flip(0)]), 4, 0.1)
    assert float(matched) < float(shuffled) and float(accuracy) == 1.0


def test_padding_does_not_change_a_latent():
    config = load_config(ROOT / "configs" / "series-embed.toml", TINY[4:]).model
    model = build_model(config).eval()
    short, long = torch.randn(1, 9, 1), torch.randn(1, 30, 1)
    with torch.no_grad():
        alone = model.encode(short, torch.tensor([9]))
        padded = torch.cat([torch.nn.functional.pad(short, (0, 0, 0, 21), value=5.0), long])
        batched = model.encode(padded, torch.tensor([9, 30]))
    torch.testing.assert_close(batched[0], alone[0], atol=1e-5, rtol=0)
    assert torch.allclose(batched.norm(dim=1), torch.ones(2), atol=1e-5)


def test_served_embeddings_for_any_length(served_model: Path):
    model = load_served(served_model)
    assert model.manifest.task == "embed" and model.manifest.family == "contrastive-recurrent"
    assert model.manifest.training.data.split.val_fraction == 0.2  # type: ignore[union-attr]
    series = [np.sin(np.arange(n) / 3.0).tolist() for n in (3, 24, 251)]
    embeddings = np.asarray(sequence_encode(model, series, _SETTINGS))
    assert embeddings.shape == (3, 8) and np.allclose(np.linalg.norm(embeddings, axis=1), 1.0, atol=1e-4)


def test_held_out_part_of_the_file_is_never_trained_on(served_model: Path):
    # The training split of the file is the rest of the manifest's seeded permutation.
    model = load_served(served_model)
    split = model.manifest.training.data.split
    rest, held_out = split_indices(200, split.val_fraction, split.seed)  # type: ignore[union-attr]
    assert len(held_out) == 40 and not set(rest) & set(held_out)
    assert model.manifest.training.data.counts.val == 40


def test_read_ts_and_baselines(tmp_path: Path):
    path = tmp_path / "Tiny_TRAIN.ts"
    path.write_text("# comment\n@problemName Tiny\n@data\n1,2,3,4:0,0,1,1:a\n4,3,2,1:1,1,0,0:b\n")
    x, y = read_ts(path)
    assert x.shape == (2, 2, 4) and y.tolist() == ["a", "b"]
    assert paa(np.arange(8.0)[None], 4).tolist() == [[0.5, 2.5, 4.5, 6.5]]
    assert paa(np.arange(3.0)[None], 4).shape == (1, 3)
    assert leave_one_out_accuracy(np.array([[0.0], [0.1], [5.0], [5.1]]), np.array([0, 0, 1, 1])) == 1.0
