"""Example grids drawn in one Axes (``report.figures.panels``): every panel placed, read back, and renderers without
``draw_in`` still drawn."""

import matplotlib

matplotlib.use("Agg")

import numpy as np
from matplotlib.figure import Figure
from PIL import Image

from conceptvec.report.examples import ImageExamples
from conceptvec.report.figures.panels import canvas, headings, heading, panel, shown_examples


class Wide(ImageExamples):
    """Images of 16 x 8 pixels, made in memory."""

    def __init__(self, n):
        super().__init__([f"e{i}" for i in range(n)], ["x"] * n, [""] * n)
        self.image = lambda i: Image.fromarray(np.full((8, 16), 10 * i, dtype=np.uint8))


class DrawOnly:
    """A renderer of the Examples protocol alone: no draw_in."""

    def __len__(self):
        return 5

    def label(self, i):
        return ""

    def caption(self, i):
        return f"item {i}"

    def draw(self, ax, i):
        ax.text(0.5, 0.5, f"<{i}>", transform=ax.transAxes)

    def html(self, i, asset_dir):
        return ""


def test_an_image_fills_its_box_keeping_its_aspect_centred():
    fig = Figure(figsize=(4, 2))
    ax = canvas(fig)
    assert ax.get_xlim() == (0.0, 4.0) and ax.get_ylim() == (0.0, 2.0)
    assert Wide(3).draw_in(ax, 2, (1.0, 0.0, 2.0, 2.0)) == (1.0, 0.5, 2.0, 1.0)  # 16 x 8 pixels into 2 x 2 inches
    assert ax.images[0].get_extent() == [1.0, 3.0, 0.5, 1.5]
    assert ax.get_xlim() == (0.0, 4.0)  # placing images does not move the canvas


def test_panels_are_read_back_in_order_with_their_titles_and_frames():
    fig = Figure(figsize=(6, 2))
    ax = canvas(fig)
    heading(ax, 0.1, 1.9, "group", colour="red")
    for k, i in enumerate([2, 0, 1]):
        panel(ax, Wide(3), i, f"#{k + 1}", (2.0 * k, 0.0, 2.0, 1.8), colour="blue" if k else None)
    assert shown_examples(fig) == [(2, "#1"), (0, "#2"), (1, "#3")]
    assert headings(fig) == ["group"] and len(fig.axes) == 1 and len(ax.images) == 3
    assert len(ax.patches) == 2  # a frame where a colour is given


def test_a_renderer_with_draw_alone_gets_an_inset_axes_per_panel():
    fig = Figure(figsize=(4, 2))
    ax = canvas(fig)
    for k in range(2):
        panel(ax, DrawOnly(), k + 3, f"item {k + 3}", (2.0 * k, 0.0, 2.0, 2.0))
    assert [i for i, _ in shown_examples(fig)] == [3, 4]
    assert [a.texts[0].get_text() for a in ax.child_axes] == ["<3>", "<4>"]
