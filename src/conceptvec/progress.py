"""One progress bar style for long loops: count, rate, elapsed and time left; can be disabled."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.text import Text


class _RateColumn(ProgressColumn):
    def __init__(self, unit: str):
        super().__init__()
        self.unit = unit

    def render(self, task) -> Text:
        return Text(f"{task.speed:,.0f} {self.unit}/s" if task.speed else f"- {self.unit}/s", style="progress.data.speed")


def progress_bar(unit: str = "it", *, disable: bool = False, transient: bool = False) -> Progress:
    """A rich Progress on stderr with description, bar, count, rate (``unit``/s), elapsed and remaining time.

    On stderr, so that a command's printed results (stdout) can be piped or redirected without bars in them.
    """
    return Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), _RateColumn(unit),
        TimeElapsedColumn(), TextColumn("left"), TimeRemainingColumn(),
        disable=disable, transient=transient, console=Console(stderr=True),
    )
