"""Command-line options generated from the fields that declare them (``core.params.option``), so that an option is
declared once: its default, help and check live on the config's field, and every command takes them from there.

``method_options`` gives a command every field of ``Params`` as ``--name-with-dashes`` (or those in ``only``) and
calls it with ``params=Params(...)`` built from them; the Python API and the command share every default.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import Field, fields
from typing import Annotated, Any, Callable, Optional, get_type_hints

import typer

from ..core.params import Params
from ..errors import ConceptvecError


def threshold_value(name: str, text: str | None) -> float | str | None:
    """A threshold option's text as Params takes it: 'auto', a number, or None (left out)."""
    if text is None or text.strip().lower() == "auto":
        return None if text is None else "auto"
    try:
        return float(text)
    except ValueError:
        raise ConceptvecError(f"--{name.replace('_', '-')} must be a number or 'auto', got {text!r}.") from None


def flag(name: str) -> str:
    """The command-line spelling of a field: ``distance_threshold`` -> ``--distance-threshold``."""
    return "--" + name.replace("_", "-")


def option_parameter(f: Field[Any]) -> inspect.Parameter:
    """A typer option for the field ``f``, with the field's default, help and shown default."""
    meta = f.metadata
    show: bool | str = meta["show_default"] or True
    if meta["kind"] == "threshold":
        annotation: Any = Annotated[Optional[str], typer.Option(flag(f.name), help=meta["help"], show_default=show)]
        default = None if f.default is None else f"{f.default:g}"
    else:
        annotation = Annotated[type(f.default), typer.Option(flag(f.name), help=meta["help"], show_default=show)]
        default = f.default
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def params_from_options(values: dict[str, Any], base: Params | None = None) -> Params:
    """``Params`` from the option values of a command (threshold texts read as numbers or 'auto')."""
    kinds = {f.name: f.metadata["kind"] for f in fields(Params)}
    parsed = {name: threshold_value(name, v) if kinds[name] == "threshold" else v for name, v in values.items()}
    return base.replace(**parsed) if base is not None else Params(**parsed)


def method_options(command: Callable[..., Any] | None = None, *, only: tuple[str, ...] | None = None) -> Any:
    """Decorate a typer command that takes ``params: Params``: it gets the method's options (all of ``Params``, or
    those named in ``only``, the others at the paper's defaults) and is called with the ``Params`` they make."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command)
        if "params" not in own.parameters:
            raise TypeError(f"{command.__name__} must take params: Params to use method_options")
        hints = get_type_hints(command, include_extras=True)
        chosen = [f for f in fields(Params) if only is None or f.name in only]
        kept = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
                for p in own.parameters.values() if p.name != "params"]
        added = [option_parameter(f) for f in chosen]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in chosen}
            return command(params=params_from_options(values, base=Params() if only is not None else None), **kwargs)

        parameters = kept + added
        wrapper.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate(command) if command is not None else decorate
