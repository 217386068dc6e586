"""Committed fp16 weights (training/weights_file.py) and `--init-from` reading them."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from tests.conftest import BSDS
from training.checkpoint import save_checkpoint
from training.config import load_config
from training.init_weights import apply_initial_weights, load_initial_weights
from training.registry import build_model
from training.weights_file import FORMAT, WEIGHTS_FILE, main, read_weights, write_weights

TINY_HYPERPRIOR = [
    "model.family=hyperprior-codec",
    "model.hidden=8",
    "model.latent_channels=16",
    "model.hyper_channels=8",
    f'data.path="{BSDS}"',
    "data.crop_size=32",
]


def _tiny_model(seed: int = 0) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    config = load_config(None, TINY_HYPERPRIOR)
    model_config = config.to_dict()["model"]
    return build_model(config.model), model_config


def _fp16_rounded(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.half().float() if v.is_floating_point() else v for k, v in state.items()}


def test_weights_round_trip_as_fp16_on_disk_and_fp32_in_memory(tmp_path):
    model, model_config = _tiny_model()
    path = write_weights(model, model_config, tmp_path)
    assert path == tmp_path / WEIGHTS_FILE
    with safe_open(str(path), framework="pt") as handle:
        assert {handle.get_tensor(k).dtype for k in handle.keys()} == {torch.float16}  # noqa: SIM118
    tensors, metadata = read_weights(path)
    assert metadata["format"] == FORMAT
    assert metadata["family"] == "hyperprior-codec"
    assert json.loads(metadata["config"]) == model_config
    expected = _fp16_rounded(model.state_dict())
    assert tensors.keys() == expected.keys()
    assert all(tensors[k].dtype == torch.float32 and torch.equal(tensors[k], expected[k]) for k in expected)


@pytest.mark.parametrize("as_file", [pytest.param(False, id="folder"), pytest.param(True, id="file")])
def test_init_from_a_weights_file_loads_every_parameter(tmp_path, as_file):
    trained, model_config = _tiny_model(seed=1)
    write_weights(trained, model_config, tmp_path)
    # A version folder's graphs would give fewer parameters: the weights file must win over them.
    (tmp_path / "model.json").write_text(json.dumps({"graphs": {}}))
    fresh, _ = _tiny_model(seed=2)
    source = tmp_path / WEIGHTS_FILE if as_file else tmp_path
    weights = load_initial_weights(source, fresh, "hyperprior-codec", 3)
    assert weights.fresh == ()
    apply_initial_weights(fresh, weights)
    expected = _fp16_rounded(trained.state_dict())
    assert all(torch.equal(fresh.state_dict()[k], expected[k]) for k in expected)


def test_weights_of_another_family_are_refused(tmp_path):
    model, model_config = _tiny_model()
    write_weights(model, model_config, tmp_path)
    codec = build_model(load_config(None, ["model.family=codec", "model.hidden=8", "model.latent_channels=16"]).model)
    with pytest.raises(ValueError, match="family 'hyperprior-codec', this run is 'codec'"):
        load_initial_weights(tmp_path, codec, "codec", 3)


def test_a_file_of_another_format_is_refused(tmp_path):
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="not an ae-train weights file"):
        read_weights(tmp_path / "other.safetensors")


def test_snapshot_writes_a_checkpoints_weights(tmp_path, capsys):
    model, model_config = _tiny_model()
    checkpoint = tmp_path / "checkpoint.pt"
    save_checkpoint(checkpoint, {"config": {"model": model_config}, "model": model.state_dict(), "optimizer": {}})
    out = tmp_path / "snapshots" / "hyperprior-codec.safetensors"
    assert main(["snapshot", str(checkpoint), str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    tensors, metadata = read_weights(out)
    assert metadata["family"] == "hyperprior-codec"
    assert tensors.keys() == model.state_dict().keys()


def test_fit_init_from_a_weights_folder_end_to_end(tmp_path, capsys):
    from training.cli import main as ae_train

    model, model_config = _tiny_model(seed=3)
    write_weights(model, model_config, tmp_path / "source")
    sets = [*TINY_HYPERPRIOR, "optim.steps=2", "optim.val_every=2", "optim.batch_size=2", "optim.num_workers=0"]
    argv = ["fit", *(a for s in sets for a in ("--set", s)), "--run-dir", str(tmp_path / "run"), "--no-progress"]
    assert ae_train([*argv, "--init-from", str(tmp_path / "source")]) == 0
    err = capsys.readouterr().err
    assert f"starting from {tmp_path / 'source'}" in err
    assert "fresh:" not in err
    assert (tmp_path / "run" / "summary.json").is_file()
