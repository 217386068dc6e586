"""`--init-from`: weights from a run or a model version's graphs, converted to gray for a gray run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.conftest import TINY_CODEC, TINY_SKIP
from training.config import load_config
from training.init_weights import LUMA, apply_initial_weights, load_initial_weights
from training.registry import build_model

GRAY = ["model.channels=1", "data.channels=1"]


def _built(overrides: list[str], source: Path) -> torch.nn.Module:
    config = load_config(None, overrides)
    model = build_model(config.model)
    weights = load_initial_weights(source, model, config.model.family, config.model.channels)
    apply_initial_weights(model, weights)
    return model.eval()


def _output(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        out = model(x)
    return out["x_hat"] if isinstance(out, dict) else out


@pytest.mark.parametrize(("run", "overrides"), [("skip", TINY_SKIP), ("codec", TINY_CODEC)])
def test_a_gray_model_computes_the_luma_of_the_rgb_model_on_the_replicated_image(tiny_runs, run, overrides):
    rgb = _built(overrides, tiny_runs[run])
    gray = _built([*overrides, *GRAY], tiny_runs[run])
    x = torch.rand(2, 1, 32, 48) * 0.6 + 0.2
    colour = _output(rgb, x.repeat(1, 3, 1, 1))
    expected = (colour * torch.tensor(LUMA).view(1, 3, 1, 1)).sum(1, keepdim=True)
    # The denoiser clips each answer channel to [0, 1] before the luma is taken: compare where none was.
    unclipped = ((colour > 0) & (colour < 1)).all(dim=1, keepdim=True)
    assert unclipped.float().mean() > 0.5
    assert torch.allclose(_output(gray, x)[unclipped], expected[unclipped], atol=1e-5)


def test_a_model_version_gives_the_weights_its_run_saved(tiny_runs, tiny_models):
    from_run = _built(TINY_SKIP, tiny_runs["skip"]).state_dict()
    from_graphs = _built(TINY_SKIP, tiny_models / "tiny-denoise" / "1").state_dict()
    assert from_run.keys() == from_graphs.keys()
    assert all(torch.equal(from_run[k], from_graphs[k]) for k in from_run)


def test_a_codec_version_leaves_only_its_density_fresh(tiny_models):
    config = load_config(None, TINY_CODEC)
    model = build_model(config.model)
    weights = load_initial_weights(tiny_models / "tiny-codec" / "1", model, "codec", 3)
    assert weights.fresh and all(name.startswith("density.") for name in weights.fresh)


def test_weights_of_another_shape_or_a_wrong_folder_are_refused(tiny_runs, tiny_models, tmp_path):
    config = load_config(None, [*TINY_SKIP, "model.widths=[8,32]"])
    with pytest.raises(ValueError, match="does not fit this model"):
        load_initial_weights(tiny_runs["skip"], build_model(config.model), "conv", 3)
    with pytest.raises(FileNotFoundError, match="neither a run folder"):
        load_initial_weights(tmp_path, build_model(config.model), "conv", 3)
    recurrent = load_config(None, ["model.family=recurrent", "data.kind=sequence", "data.path=x"]).model
    with pytest.raises(ValueError, match="no RGB-to-gray weight conversion"):
        load_initial_weights(tiny_models / "tiny-image" / "1", build_model(recurrent), "recurrent", 1)


def test_train_only_freezes_every_other_parameter(tiny_runs, tmp_path):
    from training.checkpoint import load_checkpoint
    from training.fit import fit

    overrides = [*TINY_CODEC, "optim.steps=3", "optim.val_every=3", 'optim.train_only=["density"]']
    fit(load_config(None, overrides), tmp_path / "run", progress=False, init_from=tiny_runs["codec"])
    before = load_checkpoint(tiny_runs["codec"] / "best.pt")["model"]
    after = load_checkpoint(tmp_path / "run" / "checkpoint.pt")["model"]
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.startswith("density.") for k in changed)
