import json

import pytest

from tests.conftest import TINY_RECURRENT
from training.checkpoint import LATEST, load_checkpoint, restore_model
from training.config import load_config
from training.fit import Progress, _lr_lambda, fit


def _val_losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r["loss"] for r in records if r["split"] == "val"]


@pytest.mark.parametrize("family", ["conv", "recurrent"])
def test_tiny_training_lowers_validation_loss(tiny_runs, family):
    run_dir = tiny_runs[family]
    losses = _val_losses(run_dir)
    assert len(losses) == 3  # step 0 (untrained), then two validations
    assert min(losses[1:]) < losses[0]
    for artefact in (
        "config.json",
        "checkpoint.pt",
        "best.pt",
        "summary.json",
        "loss_curves.png",
        "samples.png",
    ):
        assert (run_dir / artefact).is_file(), artefact


def test_checkpoint_rebuilds_the_model(tiny_runs):
    _, config, state = restore_model(tiny_runs["recurrent"])
    assert config.model.latent_size == 6
    assert state["step"] <= 30 and "optimizer" in state


def test_seeded_runs_repeat_and_resume_continues(tmp_path):
    overrides = [*TINY_RECURRENT, "optim.steps=10", "optim.val_every=5", "optim.checkpoint_every=5"]
    first = fit(load_config(None, overrides), tmp_path / "a", progress=False)
    second = fit(load_config(None, overrides), tmp_path / "b", progress=False)
    assert first["final_validation"] == second["final_validation"]
    resumed = fit(
        load_config(None, [*overrides[:-3], "optim.steps=20", "optim.val_every=5"]),
        tmp_path / "a",
        resume=True,
        progress=False,
    )
    assert resumed["steps"] == 20
    assert load_checkpoint(tmp_path / "a" / LATEST)["step"] == 20
    steps = [json.loads(line)["step"] for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(steps) and steps[-1] == 20


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(["model.family=conv", "model.depth=3"], "unknown ConvConfig keys: depth", id="typo"),
        pytest.param(["optim.steps=10"], "needs a `family`", id="no-family"),
        pytest.param(["model.family=conv", "oops=1"], "section.key", id="no-section"),
    ],
)
def test_config_errors_are_clear(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, overrides)


def test_time_budget_stops_early_and_ends_annealed(tmp_path):
    # A tiny budget ends the run long before its steps; the last logged lr is the schedule's floor,
    # because the schedule follows the budget when time runs out first.
    overrides = [*TINY_RECURRENT, "optim.steps=100000", "optim.val_every=100000", "optim.time_budget_s=0.5"]
    summary = fit(load_config(None, overrides), tmp_path / "run", progress=False)
    assert 1 <= summary["steps"] < 100000
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    assert train[-1]["step"] == summary["steps"]
    assert train[-1]["lr"] == pytest.approx(1e-3 * 0.05, rel=1e-6)
    assert (tmp_path / "run" / "best.pt").is_file()


def test_warmup_ramps_the_learning_rate_then_decays():
    config = load_config(None, [*TINY_RECURRENT, "optim.steps=100", "optim.warmup_steps=4"])
    schedule = _lr_lambda(config, Progress(100, None))
    factors = [schedule(step) for step in range(8)]
    assert factors[0] < factors[1] < factors[2] < factors[3]  # warm-up
    assert factors[3] > factors[4] > factors[7]  # cosine decay afterwards
    assert factors[0] == pytest.approx(0.25, rel=1e-3)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        pytest.param(["optim.time_budget_s=0"], "time_budget_s must be positive", id="budget"),
        pytest.param(["optim.steps=0"], "at least 1", id="steps"),
    ],
)
def test_optim_errors_are_clear(overrides, message):
    with pytest.raises(ValueError, match=message):
        load_config(None, [*TINY_RECURRENT, *overrides])


def test_fewer_training_items_than_a_batch_is_a_clear_error_not_a_hang(tmp_path, capsys):
    from PIL import Image

    from tests.conftest import BSDS

    photos = tmp_path / "photos"
    photos.mkdir()
    for index, source in enumerate(sorted(BSDS.iterdir())[:4]):
        image = Image.open(source).crop((0, 0, 64, 64))
        (image.convert("L") if index == 0 else image).save(photos / f"{index}.png")
    config = load_config(None, ["model.family=conv", "model.widths=[8]", f'data.path="{photos}"', "data.crop_size=32"])
    with pytest.raises(ValueError, match=r"3 training items do not fill one batch of 16: set optim.batch_size"):
        fit(config, tmp_path / "run", progress=False)
    # The summary line says what was converted on the way in.
    assert "1 converted to RGB (L: 1)" in capsys.readouterr().err
