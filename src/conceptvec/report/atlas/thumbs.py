"""How the atlas shows an example: a tile of a sprite sheet (images), a shaded snippet (text), or its caption.

Every example the atlas shows is drawn once, whatever number of neurons show it: image thumbnails are
packed ``COLUMNS`` x ``COLUMNS`` to a JPEG sheet in ``sprites/``, so a page of 100 examples loads a few
files rather than 100, and the site grows with its thumbnails, not with its pages. A shown example is
referred to in the data files by a reference the page understands:

- images: ``[sheet, column, row]``;
- text: ``[[text, shade], ...]`` pieces of its snippet, ``shade`` in [0, 1] by the activation of the
  neuron that shows it (-1: text between tokens), the example's own piece first marked by ``mark``;
- anything else: its caption.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol, cast

import numpy as np

from ..examples import Examples

SIDE = 48  # pixels of a thumbnail's longest side
COLUMNS = 16  # thumbnails per row (and per column) of a sprite sheet
SPRITES = "sprites"
QUALITY = 85
BACKGROUND = (255, 255, 255)


class _Snippets(Protocol):
    """Examples of kind "text" (``report.examples.TextSnippets``): a snippet's pieces per example."""

    def pieces(self, i: int) -> tuple[list[str], np.ndarray | None, int | None]: ...


class _Scaled(Protocol):
    """Examples of kind "image" (``report.examples.ImageExamples``): example i as a PIL image ``side`` pixels long."""

    def scaled(self, i: int, side: int) -> Any: ...


class Thumbs:
    """Draws examples of ``examples`` into sprite sheets under ``root/sprites/`` as they are first asked for.

    ``ref(i, unit)`` gives example i's reference (see the module docstring); ``close()`` writes the last sheet.
    ``kind`` is ``"image"``, ``"text"`` or ``"caption"``.
    """

    def __init__(self, examples: Examples, root: Path, *, side: int = SIDE):
        self.examples, self.root, self.side = examples, Path(root), int(side)
        self.kind = "image" if hasattr(examples, "scaled") else "text" if hasattr(examples, "pieces") else "caption"
        self.where: dict[int, list[int]] = {}
        self.sheets: list[str] = []
        self.sheet: Any = None
        self.filled = 0

    def ref(self, i: int, unit: int | None = None) -> Any:
        i = int(i)
        if self.kind == "text":
            return self.snippet(i, unit)
        if self.kind == "caption":
            return self.examples.caption(i)
        if i not in self.where:
            self.where[i] = self._draw(i)
        return self.where[i]

    def snippet(self, i: int, unit: int | None) -> list[Any]:
        """Example i's snippet as [text, shade] pieces, shaded by ``unit``'s activation, its own piece index last."""
        # kind "text" means the examples have pieces (checked in __init__); the cast tells mypy so
        ex = cast(_Snippets, self.examples.focus(unit) if hasattr(self.examples, "focus") else self.examples)
        pieces, strengths, centre = ex.pieces(i)
        top = float(np.nanmax(np.abs(strengths))) if strengths is not None and np.isfinite(strengths).any() else 0.0
        out: list[Any] = []
        for k, p in enumerate(pieces):
            s = strengths[k] if strengths is not None else np.nan
            out.append([p, round(max(0.0, float(s)) / top, 2) if np.isfinite(s) and top > 0 else -1])
        return [out, -1 if centre is None else int(centre)]

    def _draw(self, i: int) -> list[int]:
        from PIL import Image

        if self.sheet is None:
            self.sheet = Image.new("RGB", (COLUMNS * self.side, COLUMNS * self.side), BACKGROUND)
            self.filled = 0
        im = cast(_Scaled, self.examples).scaled(i, self.side)  # kind "image": the examples have scaled (__init__)
        if im.mode in ("RGBA", "LA", "P"):  # a transparent icon shown on white, as a browser would
            im = im.convert("RGBA")
            flat = Image.new("RGB", im.size, BACKGROUND)
            flat.paste(im, mask=im.getchannel("A"))
            im = flat
        col, row = self.filled % COLUMNS, self.filled // COLUMNS
        x0 = col * self.side + (self.side - im.size[0]) // 2
        y0 = row * self.side + (self.side - im.size[1]) // 2
        self.sheet.paste(im.convert("RGB"), (x0, y0))
        ref = [len(self.sheets), col, row]
        self.filled += 1
        if self.filled == COLUMNS * COLUMNS:
            self._flush()
        return ref

    def _flush(self) -> None:
        if self.sheet is None or self.filled == 0:
            return
        name = f"s{len(self.sheets):04d}.jpg"
        folder = self.root / SPRITES
        folder.mkdir(exist_ok=True)
        rows = -(-self.filled // COLUMNS)
        self.sheet.crop((0, 0, COLUMNS * self.side, rows * self.side)).save(folder / name, quality=QUALITY, optimize=True)
        self.sheets.append(name)
        self.sheet, self.filled = None, 0

    def close(self) -> dict[str, Any]:
        """Write the last sheet; return what the page needs to draw tiles."""
        self._flush()
        return {"kind": self.kind, "side": self.side, "columns": COLUMNS, "folder": SPRITES, "sheets": self.sheets,
                "n_drawn": len(self.where)}
