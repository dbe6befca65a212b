"""The report's Jinja environment: templates from ``templates/``, scripts and styles from ``static/``.

Autoescaping is on for every HTML template, so any text from the data (ids, labels, paths,
metadata) that a template prints is escaped; only fragments that are HTML already (an example
renderer's thumbnail, a static file, ``tojson``) are marked ``Markup`` and printed as they are.
"""

from __future__ import annotations

import html
import time
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ..storage.provenance import environment as run_environment


def _escape(value: Any) -> Any:
    # Escape as html.escape does (&quot;, &#x27;), as the report always has, rather than
    # markupsafe's &#34; and &#39;: the same characters, and the pages' text stays what readers grep.
    if hasattr(value, "__html__"):
        return value
    return Markup(html.escape(str(value), quote=True))


@cache
def static(name: str) -> Markup:
    """The text of ``static/<name>``, to be inlined in a page.

    Pages inline their styles and scripts because the Content-Security-Policy allows inline ones
    only: a page that opens from ``file://`` then needs nothing else, not even its own folder.
    """
    return Markup(files(__package__).joinpath("static", name).read_text(encoding="utf-8"))


@cache
def jinja_environment() -> Environment:
    """The report's Jinja environment (autoescaped, JSON written compactly for ``tojson``)."""
    env = Environment(
        loader=PackageLoader("conceptvec.report"),
        autoescape=select_autoescape(["html"]),
        finalize=_escape,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["static"] = static
    env.policies["json.dumps_kwargs"] = {"separators": (",", ":"), "default": str}
    return env


def render(template: str, **context: Any) -> str:
    """The page ``templates/<template>`` filled with ``context`` and the footer's version and time."""
    context.setdefault("version", run_environment()["versions"].get("conceptvec", ""))
    context.setdefault("made", time.strftime("%Y-%m-%d %H:%M"))
    return jinja_environment().get_template(template).render(**context)


def write_page(path: Path, template: str, **context: Any) -> None:
    """Render ``template`` with ``context`` and write it to ``path`` (UTF-8)."""
    Path(path).write_text(render(template, **context), encoding="utf-8")
