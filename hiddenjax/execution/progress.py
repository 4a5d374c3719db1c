"""A rich progress bar fed between chunks; it never touches the draws."""

from __future__ import annotations

import numpy as np
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class SamplingProgress:
    """Shows the compile phase, then steps done, speed, divergences and step size."""

    def __init__(self, total: int, tune: int, enabled: bool = True):
        self.total, self.tune, self.enabled = total, tune, enabled
        self.divergences = 0
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(bar_width=20),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
            transient=False,
        )
        self._task = None

    def __enter__(self) -> SamplingProgress:
        self._progress.start()
        self._task = self._progress.add_task("Compiling", total=self.total, info="")
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self, start: int, done: int, stats: dict) -> None:
        """Record steps ``start`` to ``done`` (per chain); ``stats`` are stacked steps-first."""
        steps = np.arange(start, start + len(next(iter(stats.values()))))
        kept = (steps >= self.tune) & (steps < done)
        self.divergences += int(np.sum(np.asarray(stats["diverging"])[kept]))
        last = {k: np.asarray(v)[done - start - 1] for k, v in stats.items()}
        phase = "Warmup" if done <= self.tune else "Sampling"
        elapsed = self._progress.tasks[0].elapsed or 0.0
        rate = done / elapsed if elapsed > 0 else 0.0
        info = (
            f"{rate:,.0f} draws/s · {self.divergences} div · "
            f"step {np.mean(last.get('step_size', np.nan)):.2g} · "
            f"{np.mean(last.get('n_steps', np.nan)):.0f} grads/draw"
        )
        self._progress.update(self._task, completed=done, description=phase, info=info)
