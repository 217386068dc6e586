"""Training across processes: 2 CPU ranks under torchrun step exactly as 1 process with their global batch."""

import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import BSDS, ROOT
from training.checkpoint import LATEST, load_checkpoint
from training.config import load_config
from training.distributed import GlobalBatchShard, Ranks, ranks_from_env
from training.fit import fit

# Tiny conv model (see TINY_CONV) with every source of difference between the runs off: centre
# crops, no flips, no noise, the training set read in order. 6 steps pass 36 images in global
# batches of 8 more than once, so the second pass and the dropped incomplete batch are covered.
EQUAL_RUNS = [
    "model.family=conv",
    "model.widths=[8,16]",
    "model.latent_channels=4",
    "model.activation=relu",
    "model.upsample_kernel=2",
    f'data.path="{BSDS}"',
    "data.crop_size=32",
    "data.augment=false",
    "optim.shuffle=false",
    "optim.steps=6",
    "optim.val_every=3",
    "optim.lr=3e-3",
]
PER_RANK_BATCH = 4
RANKS = 2
# Float sums in another order (two half-batch means averaged by the all-reduce vs one mean) differ
# by rounding only; 1e-5 of each tensor's scale is far above that and far below one real step.
RELATIVE_TOLERANCE = 1e-5


def _torchrun(run_dir, overrides, timeout_s=120):
    """`ae-train fit` under torchrun with 2 CPU processes; returns the finished process."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={RANKS}"]
    command += ["-m", "training.cli", "fit", "--run-dir", str(run_dir), "--no-progress"]
    command += [arg for override in overrides for arg in ("--set", override)]
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout_s)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


def _relative_differences(ours, theirs):
    return {
        name: float((ours[name] - theirs[name]).abs().max() / theirs[name].abs().max().clamp(min=1e-12))
        for name in theirs
    }


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.distributed
def test_two_ranks_step_as_one_process_with_their_global_batch(tmp_path):
    distributed = _torchrun(tmp_path / "ddp", [*EQUAL_RUNS, f"optim.batch_size={PER_RANK_BATCH}"])
    single = load_config(None, [*EQUAL_RUNS, f"optim.batch_size={PER_RANK_BATCH * RANKS}"])
    fit(single, tmp_path / "one", progress=False, report=lambda line: None)

    ours, theirs = (load_checkpoint(tmp_path / run / LATEST) for run in ("ddp", "one"))
    assert ours["step"] == theirs["step"] == 6
    differences = _relative_differences(ours["model"], theirs["model"])
    assert max(differences.values()) < RELATIVE_TOLERANCE, differences
    # The logged training loss is the mean over both ranks, i.e. over the global batch.
    train = [[r["loss"] for r in _metrics(tmp_path / run) if r["split"] == "train"] for run in ("ddp", "one")]
    assert train[0] == pytest.approx(train[1], rel=RELATIVE_TOLERANCE)
    # Rank 0 alone answers: one JSON summary on stdout, and one data line on stderr.
    assert json.loads(distributed.stdout)["steps"] == 6
    assert distributed.stderr.count("read 40 images") == 1


@pytest.mark.distributed
def test_ranks_stop_together_on_rank_zeros_time_budget(tmp_path):
    # Were the ranks to decide on their own clocks, one would stop first and leave the other
    # waiting in the gradient all-reduce; torchrun would then hit the timeout instead of exiting.
    started = time.perf_counter()
    budgeted = [*EQUAL_RUNS, "optim.steps=100000", "optim.val_every=100000", "optim.time_budget_s=1"]
    _torchrun(tmp_path / "ddp", [*budgeted, f"optim.batch_size={PER_RANK_BATCH}"], timeout_s=90)
    assert time.perf_counter() - started < 90
    steps = load_checkpoint(tmp_path / "ddp" / LATEST)["step"]
    assert 1 <= steps < 100000
    assert _metrics(tmp_path / "ddp")[-1]["step"] == steps


@pytest.mark.parametrize("shuffle", [pytest.param(False, id="in-order"), pytest.param(True, id="shuffled")])
def test_rank_slices_make_up_the_global_batches(shuffle):
    def batches(rank, world_size, batch_size):
        shard = GlobalBatchShard(37, batch_size, Ranks(rank, world_size), shuffle, seed=3)
        return [batch for _ in range(2) for batch in shard]  # two passes

    global_batches = batches(0, 1, 8)
    assert len(global_batches) == 2 * (37 // 8)
    assert [a + b for a, b in zip(batches(0, 2, 4), batches(1, 2, 4), strict=True)] == global_batches
    assert global_batches[0] != global_batches[4] if shuffle else global_batches[0] == global_batches[4]


def test_too_small_a_training_set_for_one_global_batch_is_refused():
    with pytest.raises(ValueError, match="do not fill one global batch of 16"):
        GlobalBatchShard(10, 8, Ranks(1, 2), shuffle=False, seed=0)


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param({}, Ranks(), id="no-torchrun"),
        pytest.param({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}, Ranks(1, 2, 1), id="torchrun"),
    ],
)
def test_ranks_come_from_torchruns_environment(environ, expected):
    assert ranks_from_env(environ) == expected
    assert expected.distributed == (expected.world_size > 1)
