"""Figures of the paper's evaluation and a static HTML report that opens offline.

``figures`` draws one neuron's ConceptSet (and a layer scan) with matplotlib; ``examples`` holds
the pluggable example renderers; ``html.write_report`` writes the report folder, with ``pages``
gathering what each page shows and ``render`` filling the Jinja templates of ``templates/``.
"""

from __future__ import annotations

from .examples import Examples, ImageExamples, TextExamples, examples_for_store


def write_report(*args, **kwargs):
    """Write the static HTML report of a run directory (see ``conceptvec.report.html.write_report``)."""
    # Imported on first use: the report pulls in matplotlib and jinja2, which `import conceptvec` need not.
    from . import html

    return html.write_report(*args, **kwargs)


__all__ = ["Examples", "ImageExamples", "TextExamples", "examples_for_store", "write_report"]
