"""The form participants open (form.html), rendered from ``templates/form.html.j2``.

The page is self-contained so that it opens from file:// and sends nothing anywhere: its images are
embedded as fresh PNGs, and ``static/form.css`` and ``static/form.js`` are inlined. The script keeps
answers in the page (and in localStorage, so a reload keeps them) until the participant exports
them as CSV. The form holds no answer and nothing that names an example, class, neuron or concept.
"""

from __future__ import annotations

import base64
import functools
import html
import io
from dataclasses import dataclass
from importlib import resources
from typing import Sequence

import jinja2
from markupsafe import Markup

from ..errors import ConceptvecError
from ..report.examples import ImageExamples, TextExamples, examples_for_store
from ..storage.store import ActivationStore
from .questions import Question

IMAGE_SIDE = 160  # pixels, longest side of an image in the form
PACKAGE = "conceptvec.study"  # where templates/ and static/ are shipped


@dataclass(frozen=True)
class _Shown:
    """What the template's ``example`` macro shows: an image's data: URI, or a text snippet's markup."""

    src: str | None = None
    snippet: Markup | None = None


def examples_of(store: ActivationStore) -> ImageExamples | TextExamples:
    """The store's examples as the form shows them; a study shows images or text, nothing else."""
    examples = examples_for_store(store)
    if not isinstance(examples, (ImageExamples, TextExamples)):
        raise ConceptvecError(f"humaneval shows images or text; this store's examples ({type(examples).__name__}) are neither.")
    return examples


def example_html(examples: ImageExamples | TextExamples, *, index: int) -> str:
    """Example ``index`` with nothing that names it: an embedded PNG, or the snippet with its strongest token marked."""
    return str(_environment().get_template("example.html.j2").module.example(_shown(examples, index)))  # type: ignore[attr-defined]


def render_form(study_id: str, *, questions: Sequence[tuple[str, Question]], examples: ImageExamples | TextExamples) -> str:
    """The whole form.html: ``questions`` are (question id, question) pairs in the order asked."""
    shown = {i: _shown(examples, i) for _, q in questions for i in q.examples.values()}
    return _environment().get_template("form.html.j2").render(
        study_id=study_id, questions=list(questions), shown=shown, css=_static("form.css"), js=_static("form.js"))


def _shown(examples: ImageExamples | TextExamples, i: int) -> _Shown:
    if isinstance(examples, TextExamples):
        return _Shown(snippet=Markup(examples.marked_html(i)))  # marked_html escapes the text itself
    buf = io.BytesIO()
    examples.scaled(i, IMAGE_SIDE).save(buf, format="PNG")  # a fresh PNG: no file name or metadata of the original
    return _Shown(src=f"data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}")


@functools.lru_cache(maxsize=None)
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader(PACKAGE),
        autoescape=jinja2.select_autoescape(["html.j2"], default_for_string=True, default=True),
        undefined=jinja2.StrictUndefined,  # a misspelt name in a template fails instead of printing nothing
        keep_trailing_newline=True,
    )
    # Labels were always escaped by html.escape; the autoescape writes quotes differently (&#34; for &quot;).
    env.filters["html_escape"] = lambda text: Markup(html.escape(str(text)))
    return env


@functools.lru_cache(maxsize=None)
def _static(name: str) -> Markup:
    return Markup((resources.files(PACKAGE) / "static" / name).read_text(encoding="utf-8"))
