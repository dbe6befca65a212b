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
from typing import Any, Callable, Protocol, Sequence, runtime_checkable

import numpy as np

from ..errors import ConceptvecError

THUMB_DIR = "thumbs"
THUMB_SIZE = 96


@runtime_checkable
class Examples(Protocol):
    """What the figures and the report need to show example i.

    ``draw`` renders into a matplotlib Axes; ``html`` returns an HTML fragment (already escaped)
    and may write files it refers to under ``asset_dir``; the fragment's links are relative to
    ``asset_dir.parent``, the folder of the report's pages.
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
    """Image examples loaded lazily from their ``source`` strings (see ``conceptvec.nn.data``).

    Parameters
    ----------
    ids, label_names, sources : sequences of str, one per example
    root : path, optional
        Folder that relative image paths in ``sources`` are relative to.
    thumb_size : int
        Longest side of the report's thumbnails, in pixels; small images (the 8 x 8 digits) are
        scaled up with nearest-neighbour so their pixels stay sharp.
    """

    def __init__(
        self,
        ids: Sequence[str],
        label_names: Sequence[str],
        sources: Sequence[str],
        root: str | os.PathLike | None = None,
        thumb_size: int = THUMB_SIZE,
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
        self.thumb_size = int(thumb_size)
        # Loading an image is the slow part of every figure; a neuron's examples recur across them.
        self.image = lru_cache(maxsize=1024)(self._load)

    @classmethod
    def from_store(cls, store: Any, **kwargs: Any) -> "ImageExamples":
        """The examples of an ActivationStore, loaded from its ``source`` column."""
        data = store.metadata.get("data") or {}
        root = data.get("root") if isinstance(data, dict) else None
        return cls(store.ids, store.label_names, store.sources, root=root, **kwargs)

    def _load(self, i: int):
        from ..nn.data import load_example_image

        i = self._check(i)
        try:
            return load_example_image(self.sources[i], self.root)
        except (OSError, ValueError) as e:
            raise ConceptvecError(
                f"cannot load example {self.ids[i]!r} from {self.sources[i]!r} ({e}); "
                f"check that the data folder recorded in the store (data.root = {self.root}) still exists."
            ) from e

    def draw(self, ax: Any, i: int) -> None:
        im = self.image(i)
        if im.mode == "L":
            ax.imshow(np.asarray(im), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        else:
            ax.imshow(np.asarray(im), interpolation="nearest" if max(im.size) < 64 else "antialiased")
        ax.set_xticks([])
        ax.set_yticks([])

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

    def draw(self, ax: Any, i: int) -> None:
        k = self.strongest(i)
        toks = self.tokens[i]
        text = "".join(f"[{t.strip()}]" if j == k else t for j, t in enumerate(toks))
        ax.text(0.02, 0.5, text, wrap=True, va="center", ha="left", fontsize=7, transform=ax.transAxes)
        ax.set_xticks([])
        ax.set_yticks([])

    def marked_html(self, i: int) -> str:
        """The snippet's escaped text with its strongest token in ``<mark>``, and nothing naming the example."""
        k = self.strongest(self._check(i))
        return "".join(f"<mark>{html.escape(t)}</mark>" if j == k else html.escape(t) for j, t in enumerate(self.tokens[i]))

    def html(self, i: int, asset_dir: Path) -> str:
        return f'<span class="snippet" title="{html.escape(self.caption(i), quote=True)}">{self.marked_html(i)}</span>'


# Renderers for a store, picked by the store's ``metadata["data"]["kind"]``; text stores add theirs here.
RENDERERS: dict[str, Callable[[Any], Examples]] = {
    "sklearn-digits": ImageExamples.from_store,
    "image-files": ImageExamples.from_store,
}


def examples_for_store(store: Any) -> Examples:
    """The renderer for a store's examples, chosen from ``RENDERERS`` by its data kind (images by default)."""
    data = store.metadata.get("data") or {}
    kind = data.get("kind") if isinstance(data, dict) else None
    return RENDERERS.get(kind, ImageExamples.from_store)(store)
