"""Example renderers: how one dataset example is shown in a figure and in the HTML report.

The figures and the report only ever talk to a renderer through the :class:`Examples` protocol,
indexed by example index i (a row of the activation matrix A). Images are shown by
:class:`ImageExamples`; text snippets with the strongest token highlighted plug in the same way
(:class:`TextExamples`), and so does any other modality that implements the five members below.
"""

from __future__ import annotations

import html
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, ClassVar, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ConceptvecError

THUMB_DIR = "thumbs"
THUMB_SIZE = 96


@runtime_checkable
class Examples(Protocol):
    """What the figures and the report need to show example i.

    ``draw`` renders into a matplotlib Axes; ``html`` returns an HTML fragment (already escaped)
    and may write files it refers to under ``asset_dir``; the fragment's links are relative to
    ``asset_dir.parent``, the folder of the report's pages. A renderer may also have
    ``draw_in(ax, i, box)``, drawing example i into the box (x, y, width, height) of a shared Axes
    and returning the box it filled: the example grids then draw all their panels in one Axes
    (``figures.panels``); without it each panel gets an Axes of its own.
    """

    def __len__(self) -> int: ...

    def label(self, i: int) -> str:
        """The example's class label name ('' when it has none)."""

    def caption(self, i: int) -> str:
        """Short text naming the example: its id and class label."""

    def draw(self, ax: Any, i: int) -> None:
        """Show example i in ``ax`` (no ticks; the caller sets titles)."""

    def html(self, i: int, asset_dir: Path) -> str:
        """An escaped HTML fragment showing example i."""


class _Labelled:
    """Ids and label names shared by the renderers; captions are 'id · label'."""

    ids: np.ndarray
    label_names: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def _check(self, i: int) -> int:
        i = int(i)
        if not 0 <= i < len(self.ids):
            raise IndexError(f"example {i} out of range: there are {len(self.ids)} examples.")
        return i

    def label(self, i: int) -> str:
        return str(self.label_names[self._check(i)])

    def caption(self, i: int) -> str:
        i = self._check(i)
        name = str(self.label_names[i])
        return f"{self.ids[i]} · {name}" if name else str(self.ids[i])


class ImageExamples(_Labelled):
    """Image examples loaded lazily from their ``source`` strings (see ``conceptvec.sources.images``).

    Parameters
    ----------
    ids, label_names, sources : sequences of str, one per example
    root : path, optional
        Folder that relative image paths in ``sources`` are relative to.
    background : str, optional
        Colour transparent images are composited on, as extraction did (the store's ``data.background``).
    thumb_size : int
        Longest side of the report's thumbnails, in pixels; small images (the 8 x 8 digits) are
        scaled up with nearest-neighbour so their pixels stay sharp.
    """

    def __init__(
        self,
        ids: Sequence[str],
        label_names: Sequence[str],
        sources: Sequence[str],
        root: str | os.PathLike[str] | None = None,
        thumb_size: int = THUMB_SIZE,
        background: str | None = None,
    ):
        self.ids = np.asarray([str(x) for x in ids], dtype=object)
        self.label_names = np.asarray([str(x) for x in label_names], dtype=object)
        self.sources = np.asarray([str(x) for x in sources], dtype=object)
        if not len(self.ids) == len(self.label_names) == len(self.sources):
            raise ConceptvecError(
                f"ids, label_names and sources need one entry per example; got {len(self.ids)}, "
                f"{len(self.label_names)} and {len(self.sources)}."
            )
        self.root = Path(root) if root is not None else None
        self.background = background
        self.thumb_size = int(thumb_size)
        # Loading an image is the slow part of every figure; a neuron's examples recur across them.
        self.image = lru_cache(maxsize=1024)(self._load)

    @classmethod
    def from_store(cls, store: Any, **kwargs: Any) -> "ImageExamples":
        """The examples of an ActivationStore, loaded from its ``source`` column."""
        data = store.metadata.get("data") or {}
        root = data.get("root") if isinstance(data, dict) else None
        background = data.get("background") if isinstance(data, dict) else None
        return cls(store.ids, store.label_names, store.sources, root=root, background=background, **kwargs)

    def _load(self, i: int):
        from ..sources.images import load_example_image

        i = self._check(i)
        try:
            return load_example_image(self.sources[i], self.root, self.background)
        except (OSError, ValueError) as e:
            raise ConceptvecError(
                f"cannot load example {self.ids[i]!r} from {self.sources[i]!r} ({e}); "
                f"check that the data folder recorded in the store (data.root = {self.root}) still exists."
            ) from e

    def draw(self, ax: Any, i: int) -> None:
        im = self.image(i)
        ax.imshow(np.asarray(im), **self._look(im))
        ax.set_xticks([])
        ax.set_yticks([])

    def draw_in(self, ax: Any, i: int, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Draw example i as large as fits in ``box`` = (x, y, width, height), data coordinates of ``ax``, keeping
        its aspect and centred; return the box it fills (the example grids draw many examples in one Axes)."""
        im = self.image(i)
        x, y, w, h = box
        scale = min(w / im.size[0], h / im.size[1])
        iw, ih = im.size[0] * scale, im.size[1] * scale
        x, y = x + (w - iw) / 2, y + (h - ih) / 2
        ax.imshow(np.asarray(im), extent=(x, x + iw, y, y + ih), aspect="auto", **self._look(im))
        return x, y, iw, ih

    @staticmethod
    def _look(im: Any) -> dict[str, Any]:
        if im.mode == "L":
            return {"cmap": "gray", "vmin": 0, "vmax": 255, "interpolation": "nearest"}
        return {"interpolation": "nearest" if max(im.size) < 64 else "antialiased"}

    def scaled(self, i: int, side: int):
        """Example i as a PIL image whose longest side is ``side`` pixels; small images (the 8 x 8
        digits) are scaled up with nearest-neighbour so their pixels stay sharp."""
        from PIL import Image

        im = self.image(i)
        scale = side / max(im.size)
        size = (max(1, round(im.size[0] * scale)), max(1, round(im.size[1] * scale)))
        resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.LANCZOS
        return im.resize(size, resample)

    def thumbnail(self, i: int, asset_dir: Path) -> Path:
        """Write example i's thumbnail under ``asset_dir`` once and return its path (reused afterwards)."""
        # Named by example index, never by the user's file name, so no path or markup leaks in.
        path = Path(asset_dir) / THUMB_DIR / f"{self._check(i)}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            self.scaled(i, self.thumb_size).save(path, optimize=True)
        return path

    def html(self, i: int, asset_dir: Path) -> str:
        path = self.thumbnail(i, asset_dir)
        src = f"{Path(asset_dir).name}/{THUMB_DIR}/{path.name}"
        alt = html.escape(self.caption(i), quote=True)
        return f'<img src="{html.escape(src, quote=True)}" alt="{alt}" title="{alt}">'


class TextExamples(_Labelled):
    """Text snippets, each with per-token strengths; the strongest token is highlighted.

    Parameters
    ----------
    ids, label_names : sequences of str, one per example
    tokens : sequence of sequences of str
        Each example's tokens, joined as written (include leading spaces in the tokens).
    strengths : sequence of arrays, optional
        Each token's activation; the largest is highlighted. Without it nothing is.
    """

    def __init__(
        self,
        ids: Sequence[str],
        label_names: Sequence[str],
        tokens: Sequence[Sequence[str]],
        strengths: Sequence[Sequence[float]] | None = None,
    ):
        self.ids = np.asarray([str(x) for x in ids], dtype=object)
        self.label_names = np.asarray([str(x) for x in label_names], dtype=object)
        self.tokens = [list(map(str, t)) for t in tokens]
        self.strengths = [np.asarray(s, dtype=float) for s in strengths] if strengths is not None else None
        if not len(self.ids) == len(self.label_names) == len(self.tokens):
            raise ConceptvecError("ids, label_names and tokens need one entry per example.")

    def strongest(self, i: int) -> int | None:
        """Index of example i's strongest token, or None."""
        i = self._check(i)
        if self.strengths is None or len(self.strengths[i]) == 0:
            return None
        return int(np.argmax(self.strengths[i]))

    def figure_text(self, i: int) -> str:
        """Example i as a figure's cell shows it: its tokens, the strongest in brackets."""
        k = self.strongest(i)
        return "".join(f"[{t.strip()}]" if j == k else t for j, t in enumerate(self.tokens[i]))

    figure_font: ClassVar[dict[str, Any]] = {"fontsize": 7, "wrap": True}

    def draw(self, ax: Any, i: int) -> None:
        ax.text(0.02, 0.5, self.figure_text(i), va="center", ha="left", transform=ax.transAxes, **self.figure_font)
        ax.set_xticks([])
        ax.set_yticks([])

    def draw_in(self, ax: Any, i: int, box: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
        """Draw example i's text at the left of ``box`` = (x, y, width, height), data coordinates of ``ax``; return
        the box (the example grids draw many examples in one Axes)."""
        x, y, w, h = box
        ax.text(x + 0.02 * w, y + h / 2, self.figure_text(i), va="center", ha="left", **self.figure_font)
        return box

    def marked_html(self, i: int) -> str:
        """The snippet's escaped text with its strongest token in ``<mark>``, and nothing naming the example."""
        k = self.strongest(self._check(i))
        return "".join(f"<mark>{html.escape(t)}</mark>" if j == k else html.escape(t) for j, t in enumerate(self.tokens[i]))

    def html(self, i: int, asset_dir: Path) -> str:
        return f'<span class="snippet" title="{html.escape(self.caption(i), quote=True)}">{self.marked_html(i)}</span>'


WINDOW = 12  # tokens shown either side of a token example
SNIPPET_CHARS = 240  # characters of a document example shown
FIGURE_CHARS = 16  # characters a line of a figure's cell holds, and shown either side of a token there
# What byte-level and SentencePiece tokenizers write for a space and a newline, and WordPiece for "continues a word"
TOKEN_MARKS = (("\u0120", " "), ("\u2581", " "), ("\u010a", "\n"))


def token_text(token: str) -> str:
    """A token as text: ``Ġ`` and ``▁`` as spaces, ``Ċ`` as a newline, WordPiece's ``##`` dropped."""
    for mark, plain in TOKEN_MARKS:
        token = token.replace(mark, plain)
    return token[2:] if token.startswith("##") else token


class TextSnippets(TextExamples):
    """The examples of a text store as snippets of their documents (``conceptvec.sources.text``).

    In a store of token rows (``examples="tokens"``) example i is a token: its snippet is its document's text
    from ``window`` tokens before it to ``window`` after it, the example's token marked, each token shaded by
    the activation of unit ``unit`` (:meth:`focus`; a report page sets its neuron). In a store of documents
    example i is a document's first ``SNIPPET_CHARS`` characters, unshaded: its row pools the tokens and
    their own activations were not stored. Text comes from the document and the tokens' character spans,
    so it is shown exactly as written (no ``Ġ``), and everything is escaped.
    """

    def __init__(self, store: Any, *, unit: int | None = None, window: int = WINDOW):
        self.store, self.unit, self.window = store, unit, int(window)
        self.ids, self.label_names = store.ids, store.label_names
        table = store.examples
        self.by_token = "position" in table.column_names
        if self.by_token:
            self.document = table.column("document").to_numpy()
            self.spans = np.stack([table.column("start").to_numpy(), table.column("end").to_numpy()], axis=1)
            self.token_strings = table.column("token").to_numpy(zero_copy_only=False)
            self.texts = store.documents.column("text").to_numpy(zero_copy_only=False)
            self.first = np.searchsorted(self.document, np.arange(len(self.texts) + 1))  # rows of doc d: first[d]:first[d + 1]
        else:
            self.texts = table.column("text").to_numpy(zero_copy_only=False)

    def focus(self, unit: int | None) -> "TextSnippets":
        """The same examples, shaded by the activation of ``unit`` (None: unshaded)."""
        twin = TextSnippets.__new__(TextSnippets)
        twin.__dict__.update(self.__dict__)
        twin.unit = unit
        return twin

    def pieces(self, i: int) -> tuple[list[str], np.ndarray | None, int | None]:
        """(text pieces, one strength per piece or None, index of the example's own piece or None) of example i's snippet.

        Pieces alternate text between tokens (strength NaN) and tokens, so that joined they are the document's text.
        """
        i = self._check(i)
        if not self.by_token:
            text = str(self.texts[i])
            return [text[:SNIPPET_CHARS] + ("…" if len(text) > SNIPPET_CHARS else "")], None, None
        d = int(self.document[i])
        lo, hi = max(int(self.first[d]), i - self.window), min(int(self.first[d + 1]), i + self.window + 1)
        text = str(self.texts[d])
        acts = None if self.unit is None else np.asarray(self.store.activations[lo:hi, self.unit], dtype=float)
        pieces, strengths, at, centre = [], [], int(self.spans[lo, 0]), None
        for k, j in enumerate(range(lo, hi)):
            start, end = (int(v) for v in self.spans[j])
            if start > at:
                pieces.append(text[at:start])
                strengths.append(np.nan)
            if j == i:
                centre = len(pieces)
            # a token with no span of its own (a special token) is shown by its name
            pieces.append(text[start:end] if end > start else token_text(str(self.token_strings[j])))
            strengths.append(np.nan if acts is None else acts[k])
            at = max(at, end)
        return pieces, (None if acts is None else np.asarray(strengths)), centre

    def strongest(self, i: int) -> int | None:
        return self.pieces(i)[2]

    figure_font: ClassVar[dict[str, Any]] = {"fontsize": 5, "family": "monospace"}

    def figure_text(self, i: int) -> str:
        # A figure's cell is small: a few words either side of the token, wrapped to the cell, the token in brackets.
        import textwrap

        pieces, _, centre = self.pieces(i)
        if centre is None:
            text = pieces[0]
        else:
            before, after = "".join(pieces[:centre]), "".join(pieces[centre + 1:])
            text = before[-FIGURE_CHARS:] + "[" + pieces[centre].strip() + "]" + after[:FIGURE_CHARS]
        return "\n".join(textwrap.wrap(" ".join(text.split()), width=FIGURE_CHARS)[:5])

    def marked_html(self, i: int) -> str:
        """The snippet's escaped text with the example's token in ``<mark>``, and nothing naming the example."""
        pieces, _, centre = self.pieces(i)
        return "".join(f"<mark>{html.escape(p)}</mark>" if k == centre else html.escape(p) for k, p in enumerate(pieces))

    def html(self, i: int, asset_dir: Path) -> str:
        pieces, strengths, centre = self.pieces(i)
        top = np.nanmax(np.abs(strengths)) if strengths is not None and np.isfinite(strengths).any() else 0.0
        parts = []
        for k, p in enumerate(pieces):
            text = html.escape(p)
            if strengths is not None and np.isfinite(strengths[k]):
                alpha = max(0.0, float(strengths[k])) / top if top > 0 else 0.0
                title = html.escape(f"{p!r}: {strengths[k]:.3g}", quote=True)
                text = f'<span class="tok" style="background:rgba(255,140,0,{alpha:.2f})" title="{title}">{text}</span>'
            parts.append(f"<mark>{text}</mark>" if k == centre else text)
        return f'<span class="snippet" title="{html.escape(self.caption(i), quote=True)}">{"".join(parts)}</span>'


# Renderers for a store, picked by the store's ``metadata["data"]["kind"]``.
RENDERERS: dict[str, Callable[[Any], Examples]] = {
    "sklearn-digits": ImageExamples.from_store,
    "image-files": ImageExamples.from_store,
    "text": TextSnippets,
}


def examples_for_store(store: Any) -> Examples:
    """The renderer for a store's examples, chosen from ``RENDERERS`` by its data kind (images by default)."""
    data = store.metadata.get("data") or {}
    kind = data.get("kind") if isinstance(data, dict) else None
    if kind not in RENDERERS and not any(str(s) for s in store.sources):
        # a store made from an array (ActivationStore.create) records no examples: say so, not "the folder is gone"
        raise ConceptvecError(f"{store.path} records no examples to show (no data source: it was made from an array, not by "
                              f"`conceptvec extract`); the report and the atlas draw each neuron's examples. Extract the "
                              f"layer from its images or text with `conceptvec extract`, or read the scan in Python "
                              f"(cv.ScanResult.load).")
    return RENDERERS.get(kind if isinstance(kind, str) else "", ImageExamples.from_store)(store)
