"""How a stage declares its options, once: a dataclass field made by :func:`option` holds the default, the help
text, and the check that validates and normalises a value. The config's validation (:func:`check_fields`), the
command line's options (``cli.options.config_options``) and the docs' tables come from these fields; a stage's
Python function keeps the same names and defaults (tests compare them), so that type checkers see them.

Used by ``Params`` (the method), ``ExtractConfig`` (extraction), ``StudyConfig`` (the study) and
``FeatureVizParams`` (feature visualisation).
"""

from __future__ import annotations

import math
import textwrap
from dataclasses import field, fields
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import ConceptvecError

Check = Callable[[str, Any], Any]


def option(default: Any, help: str, *, check: Check, kind: str = "plain", show_default: str | None = None,
           type: Any = None, flag: str | None = None, doc: str | None = None) -> Any:
    """A field of a stage's options, declared once.

    Parameters
    ----------
    default : the value a user gets by leaving the option out (in Python and on the command line)
    help : what it means, as the command line's ``--help`` shows it
    check : ``check(name, value)`` validates a value and returns it normalised, or raises ConceptvecError
    kind : how the command line reads it: ``"plain"`` (typer reads ``type``), ``"threshold"`` (a number or
        'auto'), ``"numbers"`` (comma-separated numbers, e.g. ``0.5,0.5,0.5``), ``"switch"`` (``--x/--no-x``
        for a True/False/None option)
    show_default : the default in words, where the value alone would mislead (a None that means "the model's")
    type : the command line's type when the default does not tell it (a None default): int, str, Path, bool
    flag : the command line's spelling when it is not ``--name-with-dashes``
    doc : more than the command line's help says, for the config's docstring (:func:`documented`)
    """
    return field(default=default, metadata={"help": help, "check": check, "kind": kind, "show_default": show_default,
                                             "type": type, "flag": flag, "doc": doc})


def documented(cls: type) -> type:
    """Append a numpydoc ``Parameters`` section made from the fields' declarations to ``cls.__doc__``, so that
    ``help(cls)`` shows every option without a second copy of its text."""
    lines = ["", "    Parameters", "    ----------"]
    for f in fields(cls):
        meta = f.metadata
        default = meta["show_default"] or repr(f.default)
        lines.append(f"    {f.name} : default {default}")
        words = meta["help"] + (f" {meta['doc']}" if meta["doc"] else "")
        lines.extend(textwrap.wrap(words, width=110, initial_indent=" " * 8, subsequent_indent=" " * 8))
    cls.__doc__ = (cls.__doc__ or "").rstrip() + "\n" + "\n".join(lines) + "\n"
    return cls


def check_fields(config: Any) -> None:
    """Validate and normalise every field of a frozen dataclass declared with :func:`option`, in place."""
    for f in fields(config):
        object.__setattr__(config, f.name, f.metadata["check"](f.name, getattr(config, f.name)))


def whole_number(name: str, value: Any, low: int, high: int | None = None, *, why: str = "") -> int:
    """``value`` as an int when it is a whole number in ``[low, high]``; otherwise an error naming ``name`` (and ``why``
    the upper bound is there)."""
    if isinstance(value, bool) or not isinstance(value, int) and not isinstance(value, np.integer):
        raise ConceptvecError(f"{name} must be a whole number, got {value!r}.")
    if value < low:
        raise ConceptvecError(f"{name} must be >= {low}, got {value}.")
    if high is not None and value > high:
        raise ConceptvecError(f"{name} must be at most {high}, got {value}" + (f": {why}" if why else "") + ".")
    return int(value)


def at_least(low: int) -> Check:
    """The check of a whole-number option: an int >= ``low``."""
    return lambda name, value: whole_number(name, value, low)


def optional(check: Check) -> Check:
    """``check``, or None left as it is (the option's "not given": the model's or the data's own value)."""
    return lambda name, value: None if value is None else check(name, value)


def one_of(choices: Sequence[str]) -> Check:
    """The check of an option with named values."""
    def check(name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise ConceptvecError(f"{name} must be one of {', '.join(choices)} (--{name.replace('_', '-')}), got {value!r}.")
        return value
    return check


def boolean(name: str, value: Any) -> bool:
    """The check of a True/False option (a 1 or a "yes" is a slip, not a choice)."""
    if not isinstance(value, (bool, np.bool_)):
        raise ConceptvecError(f"{name} must be True or False, got {value!r}.")
    return bool(value)


def switch(name: str, value: Any) -> bool | None:
    """The check of an on/off option whose default is decided later (None): True, False or None."""
    if value is not None and not isinstance(value, (bool, np.bool_)):
        flag = name.replace("_", "-")
        raise ConceptvecError(f"{name} must be True, False or None (--{flag}/--no-{flag}), got {value!r}.")
    return None if value is None else bool(value)


def positive_number(name: str, value: Any) -> float:
    """The check of a real-valued option: a finite number > 0."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ConceptvecError(f"{name} must be a finite number > 0, got {value!r}.")
    return float(value)


def text(name: str, value: Any) -> str:
    """The check of a name-like option: non-empty text."""
    if not isinstance(value, str) or not value.strip():
        raise ConceptvecError(f"{name} must be a name (--{name.replace('_', '-')} NAME), got {value!r}.")
    return value


def numbers(name: str, value: Any) -> tuple[float, ...]:
    """The check of a per-channel option: numbers, one per colour channel (a sequence, or text "0.5,0.5,0.5")."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        result = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        result = ()
    # three finite numbers: images are read as RGB, and a NaN or inf would turn every image into the same row
    if len(result) != 3 or not all(math.isfinite(v) for v in result):
        raise ConceptvecError(f"{name} must be three finite numbers, one per colour channel (--{name.replace('_', '-')} "
                              f"0.5,0.5,0.5), got {value!r}.")
    return result
