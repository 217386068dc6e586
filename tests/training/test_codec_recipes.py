"""The hyperprior-codec training recipes (scripts/gpu_train_codec.sh, scripts/train_codec_cpu.sh) at tiny scale."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.conftest import BSDS, ROOT
from training.config import load_config
from training.registry import build_model
from training.weights_file import read_weights, write_weights

TINY_MODEL = ["model.hidden=8", "model.latent_channels=16", "model.hyper_channels=8"]


def _run(script: str, args: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT), **env}
    return subprocess.run(
        ["bash", str(ROOT / "scripts" / script), *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_the_gpu_recipe_in_tiny_mode_packs_loadable_weights(tmp_path):
    out = tmp_path / "out"
    done = _run("gpu_train_codec.sh", ["--tiny", str(BSDS), "60"], OUT=str(out), RUN_DIR=str(tmp_path / "run"))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("weights.safetensors", "summary.json", "metrics.jsonl", "machine.txt", "train.log"):
        assert (out / name).is_file(), name
    assert json.loads((out / "summary.json").read_text())["steps"] == 20
    tensors, metadata = read_weights(out / "weights.safetensors")
    assert metadata["family"] == "hyperprior-codec"
    assert json.loads(metadata["config"])["hidden"] == 16
    assert all(t.dtype == torch.float32 for t in tensors.values())


def _tiny_cpu_run(tmp_path: Path, steps: int) -> subprocess.CompletedProcess[str]:
    sets = [*TINY_MODEL, f'data.path="{BSDS}"', "data.crop_size=32", "optim.batch_size=2"]
    sets += [f"optim.steps={steps}", "optim.val_every=2", "optim.checkpoint_every=2", "optim.warmup_steps=0"]
    args = [str(tmp_path / "run"), "60", *(a for s in sets for a in ("--set", s))]
    return _run("train_codec_cpu.sh", args, SNAPSHOT=str(tmp_path / "snapshot.safetensors"), SNAPSHOT_EVERY_S="0")


@pytest.mark.slow
def test_the_cpu_recipe_warm_starts_from_the_snapshot_then_resumes_and_snapshots(tmp_path):
    config = load_config(None, ["model.family=hyperprior-codec", *TINY_MODEL])
    write_weights(build_model(config.model), config.to_dict()["model"], tmp_path)
    (tmp_path / "weights.safetensors").rename(tmp_path / "snapshot.safetensors")
    before = read_weights(tmp_path / "snapshot.safetensors")[0]

    first = _tiny_cpu_run(tmp_path, steps=2)
    log = (tmp_path / "run.log").read_text()
    assert first.returncode == 0, log
    assert f"start: --init-from {tmp_path / 'snapshot.safetensors'}" in log
    after = read_weights(tmp_path / "snapshot.safetensors")[0]
    assert any(not torch.equal(before[k], after[k]) for k in before), "the snapshot was not rewritten"

    second = _tiny_cpu_run(tmp_path, steps=4)
    log = (tmp_path / "run.log").read_text()
    assert second.returncode == 0, log
    assert "start: --resume" in log
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 4
