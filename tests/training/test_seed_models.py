"""The seed's two designs, trained at tiny scale from their committed configs and served.

Only the scale (widths, hidden size, steps, batch) and the data path (the committed fixtures) are
overridden; the design itself (a 32x32x3 input with a 16-d dense bottleneck, an LSTM with a 16-d
latent) comes from `configs/seed-conv.toml` and `configs/seed-lstm.toml` as committed.
"""

from __future__ import annotations

from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from service.main import create_app
from tests.conftest import BSDS, ECG, ROOT
from tests.service.conftest import decode_png, png_bytes, service_settings
from training.config import load_config
from training.evaluate import images
from training.export import export_run
from training.fit import fit

LATENT_SIZE = 16  # both seed designs squeeze their input into 16 numbers
TINY_SCALE = {
    "seed-conv": [
        "model.widths=[8,16]",
        "model.latent_channels=4",
        f'data.path="{BSDS}"',
        "optim.steps=20",
        "optim.val_every=10",
        "optim.batch_size=8",
    ],
    "seed-lstm": [
        "model.hidden_size=16",
        f'data.path="{ECG}"',
        "optim.steps=20",
        "optim.val_every=10",
        "optim.batch_size=16",
    ],
}
TASKS = {"seed-conv": "reconstruct", "seed-lstm": "embed"}
PNG = {"content-type": "image/png"}


@pytest.fixture(scope="module")
def seed_repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding both seed models, each trained from its committed config."""
    repository = tmp_path_factory.mktemp("models")
    for name, overrides in TINY_SCALE.items():
        run_dir = tmp_path_factory.mktemp("runs") / name
        fit(load_config(ROOT / "configs" / f"{name}.toml", overrides), run_dir, progress=False)
        export_run(run_dir, name, repository, task=TASKS[name])
    return repository


@pytest.fixture(scope="module")
def seed_client(seed_repository: Path) -> Iterator[TestClient]:
    """The real app (lifespan included) over that repository."""
    with TestClient(create_app(service_settings(seed_repository))) as client:
        yield client


def test_the_committed_configs_keep_the_seed_designs():
    conv = load_config(ROOT / "configs" / "seed-conv.toml").model
    assert (conv.channels, conv.input_size, conv.dense_latent) == (3, (32, 32), LATENT_SIZE)
    lstm = load_config(ROOT / "configs" / "seed-lstm.toml").model
    assert (lstm.cell, lstm.latent_size) == ("lstm", LATENT_SIZE)


def test_both_seed_models_are_served(seed_client):
    models = {m["name"]: m for m in seed_client.get("/v1/models").json()["models"]}
    assert {name: models[name]["versions"][0]["task"] for name in TASKS} == TASKS
    assert seed_client.get("/health/ready").status_code == HTTPStatus.OK


def test_seed_conv_reconstructs_a_32x32_image(seed_client):
    response = seed_client.post("/v1/models/seed-conv/reconstruct", content=png_bytes(32, 32), headers=PNG)
    assert response.status_code == HTTPStatus.OK
    assert decode_png(response.content).shape == (32, 32, 3)


def test_seed_conv_encodes_to_16_numbers_and_decodes_back(seed_client):
    latent = seed_client.post("/v1/models/seed-conv/encode", content=png_bytes(32, 32, seed=1), headers=PNG)
    assert latent.status_code == HTTPStatus.OK
    assert latent.json()["shape"] == [LATENT_SIZE]
    decoded = seed_client.post("/v1/models/seed-conv/decode", json=latent.json())
    assert decoded.status_code == HTTPStatus.OK
    assert decode_png(decoded.content).shape == (32, 32, 3)


@pytest.mark.parametrize(("height", "width"), [(64, 64), (31, 32), (32, 48)], ids=str)
def test_seed_conv_refuses_other_sizes_instead_of_resizing(seed_client, height, width):
    response = seed_client.post("/v1/models/seed-conv/reconstruct", content=png_bytes(height, width), headers=PNG)
    assert response.status_code == HTTPStatus.UNPROCESSABLE_ENTITY
    assert response.json()["error"]["code"] == "invalid_input"


def test_seed_lstm_encodes_series_to_16_d_embeddings(seed_client):
    rng = np.random.default_rng(0)
    series = [rng.standard_normal(length).tolist() for length in (140, 37, 300)]
    response = seed_client.post("/v1/models/seed-lstm/encode", json={"sequences": series})
    assert response.status_code == HTTPStatus.OK
    embeddings = np.asarray(response.json()["embeddings"])
    assert embeddings.shape == (3, LATENT_SIZE)
    assert np.isfinite(embeddings).all()


def test_evaluate_images_scores_a_fixed_size_model_tile_by_tile(seed_repository, tmp_path):
    # The held-out fixture crops are 128x96 (or 96x128): 4x3 tiles of 32x32 each, one request per tile.
    report = images.run(BSDS, seed_repository / "seed-conv", tmp_path)
    assert (report["model"], report["tile"]) == ("seed-conv/1", [32, 32])
    assert report["count"] == len(images.held_out_images(BSDS, 10)) > 0
    assert all(np.isfinite(row["psnr_db"]) and row["psnr_db"] > 0 for row in report["per_image"])
    assert (tmp_path / "images.json").is_file()
