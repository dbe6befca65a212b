"""Figures of the paper's evaluation and a static HTML report that opens offline.

``figures`` draws one neuron's ConceptSet (and a layer scan) with matplotlib; ``examples`` holds
the pluggable example renderers; ``html.write_report`` writes the report folder, with ``pages``
gathering what each page shows and ``render`` filling the Jinja templates of ``templates/``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .examples import Examples, ImageExamples, TextExamples, examples_for_store


def __getattr__(name: str) -> Any:
    # write_report is imported on first use: the report pulls in matplotlib and jinja2, which `import conceptvec`
    # need not; the function itself is returned, with its signature.
    if name == "write_report":
        from .html import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


if TYPE_CHECKING:
    from .html import write_report


__all__ = ["Examples", "ImageExamples", "TextExamples", "examples_for_store", "write_report"]
