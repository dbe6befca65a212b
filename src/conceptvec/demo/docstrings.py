"""The text demo's corpora: sentences of standard-library docstrings, labelled by module (standard library only).

Run as a script in a fresh interpreter (``python -I -S docstrings.py``) it prints the larger corpus as JSON: other
packages may add methods to standard-library classes once imported (transformers adds ``warning_once`` to
``logging.Logger``), so the corpus is read where nothing but the standard library was imported.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
import sys
import warnings

MODULES = ("os", "shutil", "pathlib", "re", "string", "textwrap", "math", "statistics", "random", "datetime", "calendar",
           "collections", "itertools", "functools", "json", "csv", "socket", "threading", "subprocess")
# The larger corpus, for a top above TOP: more modules (a few chosen submodules of packages whose top-level module
# defines little), every prose sentence of each docstring, each labelled by its top-level package. All are pure
# standard library on any Python 3.11+ (none of Debian's split-out packages: tkinter, venv, distutils, lib2to3).
LARGE_MODULES = tuple(sorted(set(MODULES) | set((
    "abc argparse ast asyncio.base_events asyncio.events asyncio.futures asyncio.locks asyncio.queues asyncio.streams "
    "asyncio.tasks asyncio.transports base64 bisect bz2 cmd codecs colorsys concurrent.futures._base configparser "
    "contextlib copy dataclasses decimal difflib dis email.header email.headerregistry email.message email.policy "
    "email.utils enum filecmp fileinput fnmatch fractions ftplib getopt gettext glob gzip hashlib heapq hmac html "
    "html.parser http.client http.cookiejar http.cookies http.server imaplib inspect io ipaddress locale logging "
    "logging.handlers lzma mailbox mimetypes multiprocessing.managers multiprocessing.pool numbers operator optparse "
    "pickle pkgutil platform plistlib poplib pprint queue quopri sched secrets selectors shelve shlex signal smtplib "
    "socketserver sqlite3 ssl stat struct tarfile tempfile timeit token tokenize trace traceback types typing "
    "unittest.case unittest.mock urllib.parse urllib.request uuid warnings wave weakref xml.dom.minidom "
    "xml.etree.ElementTree xml.sax.handler xmlrpc.client zipfile zlib zoneinfo").split())))


def docstring_sentences(modules=MODULES, *, max_chars: int = 300, every: bool = False) -> list[dict[str, str]]:
    """The first sentence of the docstring of every public function, class and method of ``modules``, labelled by module.

    ``every``: every prose sentence of the docstring instead (paragraphs of code or indented lists left out), labelled
    by the module's top-level package (``asyncio.tasks`` is ``asyncio``): the larger corpus of a top above ``TOP``.
    Sorted and de-duplicated (a sentence found in two modules is left out: its label would be arbitrary).
    """
    seen: dict[str, set[str]] = {}
    for name in modules:
        module = importlib.import_module(name)
        for attr, obj in sorted(vars(module).items()):
            if attr.startswith("_") or getattr(obj, "__module__", name) not in (name, None) and not inspect.isbuiltin(obj):
                continue
            members = [obj] + ([m for k, m in sorted(vars(obj).items()) if not k.startswith("_")] if inspect.isclass(obj) else [])
            for member in members:
                with warnings.catch_warnings():  # typing's deprecated aliases (typing.re) warn when their docstring is read
                    warnings.simplefilter("ignore", DeprecationWarning)
                    doc = inspect.getdoc(member) if callable(member) or inspect.isclass(member) else None
                for sentence in (prose_sentences(doc) if every else [first_sentence(doc)]):
                    if sentence and 20 <= len(sentence) <= max_chars:
                        seen.setdefault(sentence, set()).add(name.split(".")[0] if every else name)
    return [{"text": s, "module": next(iter(m))} for s, m in sorted(seen.items()) if len(m) == 1]


def first_sentence(doc: str | None) -> str | None:
    if not doc:
        return None
    paragraph = " ".join(doc.strip().split("\n\n")[0].split())
    if re.match(r"^[\w.]+\(.*\)( -> .*)?$", paragraph):  # a signature line, not prose
        return None
    return re.split(r"(?<=[.!?])\s", paragraph, maxsplit=1)[0]


def prose_sentences(doc: str | None) -> list[str]:
    """Every sentence of the paragraphs of ``doc`` that are prose (no indented or ``>>>`` line, not a signature)."""
    sentences: list[str] = []
    for block in (doc or "").strip().split("\n\n"):
        if not block.strip() or any(line.startswith((" ", ">>>")) for line in block.splitlines()):
            continue
        paragraph = " ".join(block.split())
        if not re.match(r"^[\w.]+\(.*\)( -> .*)?$", paragraph):
            sentences += re.split(r"(?<=[.!?])\s", paragraph)
    return sentences


if __name__ == "__main__":
    json.dump(docstring_sentences(LARGE_MODULES, every=True), sys.stdout)
