"""Grids of example panels drawn in one Axes, so that a page's grids of 100 examples cost a fraction of a second.

A matplotlib Axes costs about 10 ms to make and as much to draw, and constrained layout over a hundred of
them more again: one Axes per example made a report page's two grids of 100 examples take 2 to 3 s
(`benchmarks/bench_report.py`). Here a grid's figure holds a single Axes that covers it, in inches from the
figure's lower left (``canvas``); each panel is the example drawn into its box, a frame and a title, placed
by arithmetic. A renderer draws into a box with ``draw_in(ax, i, box)`` (``ImageExamples`` and the text
renderers have it); one that has only ``draw(ax, i)`` gets an inset Axes per panel.

Each panel's title carries the gid ``"example:<index>"``; ``shown_examples(fig)`` reads them back.
"""

from __future__ import annotations

from typing import Any

from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from ..examples import Examples, TextExamples

TITLE_SIZE = 6.5  # points, a panel's title
LINE = TITLE_SIZE * 1.25 / 72  # inches per line of a panel's title
PAD = 2 / 72  # inches between a panel and its title
MARGIN = 0.04  # inches around a panel, inside its cell
HEADING = "heading"  # gid of a group's or column's heading


def canvas(fig: Figure) -> Any:
    """The one Axes of a grid figure: no axis, covering ``fig``, its data coordinates inches from the lower left."""
    width, height = fig.get_size_inches()
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    ax.set_axis_off()
    ax.set_xlim(0.0, width)
    ax.set_ylim(0.0, height)
    ax.set_autoscale_on(False)  # images placed later must not move the limits
    return ax


def panel(ax: Any, examples: Examples, index: int, title: str, cell: tuple[float, float, float, float],
          colour: str | None = None, margin: float = MARGIN) -> None:
    """Draw example ``index`` in ``cell`` = (x, y, width, height) of a ``canvas``, ``margin`` inches inside it, its
    ``title`` above it and, when ``colour`` is given, a frame of that colour around it."""
    if isinstance(examples, TextExamples):  # "corpus.jsonl:466 · threading" is wider than a panel: the label on its own line
        title = title.replace(" · ", "\n")
    x, y, w, h = cell
    lines = title.count("\n") + 1
    box = (x + margin, y + margin, w - 2 * margin, max(h - 2 * margin - lines * LINE - PAD, 0.1))
    draw_in = getattr(examples, "draw_in", None)
    if callable(draw_in):
        fx, fy, fw, fh = draw_in(ax, int(index), box)
    else:  # a renderer of the Examples protocol alone draws into an Axes of its own
        inset = ax.inset_axes(box, transform=ax.transData)
        examples.draw(inset, int(index))
        for side in inset.spines.values():
            side.set_visible(False)
        fx, fy, fw, fh = box
    if colour is not None:
        ax.add_patch(Rectangle((fx, fy), fw, fh, fill=False, edgecolor=colour, linewidth=2.5, zorder=3))
    ax.text(fx + fw / 2, fy + fh + PAD, title, ha="center", va="bottom", fontsize=TITLE_SIZE, gid=f"example:{int(index)}")


def heading(ax: Any, x: float, y: float, text: str, *, colour: str, ha: str = "left", fontsize: float = 9) -> None:
    """A group's or column's heading whose top is at (x, y) inches."""
    ax.text(x, y, text, ha=ha, va="top", fontsize=fontsize, color=colour, gid=HEADING)


def rows_of(cells: list[Any], ncols: int) -> int:
    """How many rows ``cells`` fill at ``ncols`` a row (at least one)."""
    return max(1, -(-len(cells) // max(1, ncols)))


def shown_examples(fig: Figure) -> list[tuple[int, str]]:
    """(example index, title) of every panel of ``fig`` drawn by ``panel``, in drawing order."""
    out = []
    for ax in fig.axes:
        for text in ax.texts:
            gid = text.get_gid() or ""
            if gid.startswith("example:"):
                out.append((int(gid.split(":", 1)[1]), text.get_text()))
    return out


def headings(fig: Figure) -> list[str]:
    """The texts of the group and column headings of a grid figure, in drawing order."""
    return [t.get_text() for ax in fig.axes for t in ax.texts if t.get_gid() == HEADING]
