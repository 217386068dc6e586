"""The progress bar follows whichever of steps and time budget ends the run."""

import io

import pytest

from tests.conftest import TINY_RECURRENT
from training.config import load_config
from training.fit import fit
from training.progress import Progress, RunBar


def _bar(steps, budget, step, elapsed):
    progress = Progress(steps, budget)
    progress.elapsed_s = elapsed
    bar = RunBar(progress, 0, enabled=True, file=io.StringIO())
    bar.update(step)
    return bar


@pytest.mark.parametrize(
    ("steps", "budget", "step", "elapsed", "total", "position", "ends_by"),
    [
        pytest.param(1000, None, 10, 5.0, 1000, 10, None, id="no-budget-counts-steps"),
        pytest.param(1000, 10.0, 10, 5.0, 100, 50, "time", id="time-leads"),
        pytest.param(100, 1000.0, 50, 1.0, 100, 50, "steps", id="steps-lead"),
        pytest.param(1_000_000, 10.0, 40, 10.0, 100, 100, "time", id="budget-spent"),
    ],
)
def test_the_bar_shows_the_limit_that_leads(steps, budget, step, elapsed, total, position, ends_by):
    bar = _bar(steps, budget, step, elapsed)
    assert (bar.bar.total, bar.bar.n) == (total, position)
    assert bar.shown.get("ends_by") == ends_by


def test_a_run_ended_by_its_budget_shows_a_full_bar(tmp_path, capsys):
    overrides = [*TINY_RECURRENT, "optim.steps=100000", "optim.val_every=100000", "optim.time_budget_s=0.3"]
    summary = fit(load_config(None, overrides), tmp_path / "run", progress=True, report=lambda line: None)
    last = capsys.readouterr().err.split("\r")[-1]
    assert summary["steps"] < 100000
    assert last.startswith("0.3 s or 100000 steps: 100%|")
    assert f"step={summary['steps']}, ends_by=time" in last
