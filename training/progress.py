"""How far a run is, and the progress bar that shows it.

A run ends when its steps are done or its time budget is spent, whichever comes first. The learning
rate schedule and the bar both follow that: without a budget the bar counts steps; with one it shows
the percentage of the run, the larger of the step and time fractions, so it reaches 100% when the run
ends and its remaining-time estimate is that of whichever limit ends it.
"""

from __future__ import annotations

from typing import TextIO

from tqdm import tqdm


class Progress:
    """How far a run is, as the larger of its step fraction and its time-budget fraction."""

    def __init__(self, steps: int, time_budget_s: float | None) -> None:
        self.steps = steps
        self.time_budget_s = time_budget_s
        self.elapsed_s = 0.0

    def __call__(self, step: int) -> float:
        """Fraction done in [0, 1] at `step`."""
        by_steps = step / max(self.steps, 1)
        by_time = self.elapsed_s / self.time_budget_s if self.time_budget_s else 0.0
        return min(max(by_steps, by_time), 1.0)

    def done(self, step: int) -> bool:
        """Steps reached, or the time budget spent."""
        return step >= self.steps or (self.time_budget_s is not None and self.elapsed_s >= self.time_budget_s)

    def ending_by(self, step: int) -> str:
        """Which limit is further along: `time` (the budget) or `steps`."""
        by_time = self.elapsed_s / self.time_budget_s if self.time_budget_s else 0.0
        return "time" if by_time > step / max(self.steps, 1) else "steps"


class RunBar:
    """The run's tqdm bar: steps out of `steps`, or percent of the run when a time budget is set."""

    def __init__(self, progress: Progress, step: int, enabled: bool, file: TextIO | None = None) -> None:
        self.progress = progress
        self.by_percent = progress.time_budget_s is not None
        self.shown: dict[str, str] = {}
        self.bar = tqdm(
            total=100 if self.by_percent else progress.steps,
            initial=self.position(step),
            disable=not enabled,
            unit="%" if self.by_percent else "step",
            desc=f"{progress.time_budget_s:g} s or {progress.steps} steps" if self.by_percent else None,
            bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}" if self.by_percent else None,
            dynamic_ncols=True,
            file=file,
        )

    def position(self, step: int) -> int:
        """Where the bar stands at `step`: the step itself, or whole percent of the run."""
        return int(self.progress(step) * 100) if self.by_percent else step

    def update(self, step: int, **postfix: str) -> None:
        """Move to `step`; with a budget the postfix also says the step and which limit leads.

        `postfix` values (loss, val) are kept until replaced, so they can be given every few steps.
        """
        self.shown.update(postfix)
        if self.by_percent:
            self.shown.update(step=str(step), ends_by=self.progress.ending_by(step))
        if postfix or self.by_percent:
            self.bar.set_postfix(self.shown, refresh=False)
        self.bar.update(self.position(step) - self.bar.n)

    def close(self) -> None:
        """Close the bar where the run ended."""
        self.bar.close()
