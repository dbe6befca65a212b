"""The layer atlas: every neuron and every concept of a scanned layer, browsable offline (``docs/atlas.md``).

``build`` gathers the data and writes the site, ``thumbs`` packs the examples' thumbnails into sprite
sheets (or snippets for text), ``layout`` places every concept vector on a map, ``thresholds`` draws or finds the
thresholds figure, ``beside`` reads what `conceptvec causal` and `compare-dictionary` wrote; ``static/`` holds the one
page, its script and style, the same for every atlas.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_atlas(run_or_scan: Any, *, out: Any = None, **kwargs: Any) -> Path:
    """Write the atlas of a scanned layer (see ``conceptvec.report.atlas.build.write_atlas``); returns its index.html."""
    # Imported on first use: building pulls in PIL, pyarrow and (for the map) umap-learn, which `import conceptvec` need not.
    from .build import write_atlas as write

    return write(run_or_scan, out=out, **kwargs)


__all__ = ["write_atlas"]
