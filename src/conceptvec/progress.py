"""One progress bar style for long loops: count, rate, elapsed and time left; can be disabled."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

        self.first: dict = {}  # per task: (completed, elapsed) when first drawn, so a resumed run's rate counts only this run

    def render(self, task) -> Text:
        speed = task.speed
        if speed is None and task.elapsed:
            # rich estimates speed from advances within its last 30 s; a loop whose steps take longer
            # (a text chunk of thousands of rows) never has two, so fall back to the mean rate of this run
            done0, t0 = self.first.setdefault(task.id, (task.completed, task.elapsed))
            if task.completed > done0 and task.elapsed > t0:
                speed = (task.completed - done0) / (task.elapsed - t0)
        else:
            self.first.setdefault(task.id, (task.completed, task.elapsed or 0.0))
        return Text(f"{speed:,.0f} {self.unit}/s" if speed else f"- {self.unit}/s", style="progress.data.speed")


def progress_bar(unit: str = "it", *, disable: bool = False, transient: bool = False) -> Progress:
    """A rich Progress on stderr with description, bar, count, rate (``unit``/s), elapsed and remaining time.

    On stderr, so that a command's printed results (stdout) can be piped or redirected without bars in them.
    """
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(unit),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
        disable=disable, transient=transient, console=Console(stderr=True),
    )
