"""Command-line options generated from the fields that declare them (``core.options.option``), so that an option is
declared once: its default, help and check live on the config's field, and every command takes them from there.

``config_options(Config, into="config")`` gives a command every field of ``Config`` (or those in ``only``) as
``--name-with-dashes`` and calls it with ``config=Config(...)`` built from them; ``method_options`` does so for
``Params``. The Python API and the command share every default.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import Field, fields
from typing import Annotated, Any, Callable, Optional, get_type_hints

import typer
from rich.markup import escape as markup_escape  # help is rich markup: "conceptvec[ray]" must stay text

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


def flag(f: Field[Any]) -> str:
    """The command-line spelling of a field: ``distance_threshold`` -> ``--distance-threshold``."""
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def option_parameter(f: Field[Any]) -> inspect.Parameter:
    """A typer option for the field ``f``, with the field's default, help and shown default."""
    meta = f.metadata
    show: bool | str = meta["show_default"] or True
    kind = meta["kind"]
    default = f.default
    if kind in ("threshold", "numbers"):  # read as text, parsed by the field's check (or threshold_value)
        option = typer.Option(flag(f), help=markup_escape(meta["help"]), show_default=show)
        annotation: Any = Annotated[Optional[str], option]
        if kind == "threshold":
            default = None if f.default is None else f"{f.default:g}"
    elif kind == "switch":
        name = flag(f)
        option = typer.Option(f"{name}/--no-{name[2:]}", help=markup_escape(meta["help"]), show_default=show)
        annotation = Annotated[Optional[bool], option]
    else:
        value_type = meta["type"] or type(f.default)
        option = typer.Option(flag(f), help=markup_escape(meta["help"]), show_default=show)
        annotation = Annotated[Optional[value_type] if f.default is None else value_type, option]
    return inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def params_from_options(values: dict[str, Any], base: Params | None = None) -> Params:
    """``Params`` from the option values of a command (threshold texts read as numbers or 'auto')."""
    kinds = {f.name: f.metadata["kind"] for f in fields(Params)}
    # each value of its own field's type, which Params checks (one dict type cannot say which is which)
    parsed: dict[str, Any] = {name: threshold_value(name, v) if kinds[name] == "threshold" else v for name, v in values.items()}
    return base.replace(**parsed) if base is not None else Params(**parsed)


def config_options(config: type, *, into: str = "config", only: tuple[str, ...] | None = None,
                   exclude: tuple[str, ...] = (), make: Callable[[dict[str, Any]], Any] | None = None) -> Any:
    """Decorate a typer command that takes ``<into>: Config``: it gets the config's options (all of its fields but
    ``exclude``, or those named in ``only``; the others at their defaults) and is called with the config they make
    (``make(values)``, default ``Config(**values)``)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = inspect.signature(command)
        if into not in own.parameters:
            raise TypeError(f"{command.__name__} must take {into}: {config.__name__} to use its options")
        hints = get_type_hints(command, include_extras=True)
        chosen = [f for f in fields(config) if (only is None or f.name in only) and f.name not in exclude]
        taken = {f.name for f in chosen} & (set(own.parameters) - {into})
        if taken:
            raise TypeError(f"{command.__name__} declares {sorted(taken)} itself; {config.__name__} declares them")
        kept = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
                for p in own.parameters.values() if p.name != into]
        added = [option_parameter(f) for f in chosen]

        @functools.wraps(command)
        def wrapper(**kwargs: Any) -> Any:
            values = {f.name: kwargs.pop(f.name) for f in chosen}
            return command(**{into: make(values) if make is not None else config(**values)}, **kwargs)

        parameters = kept + added
        wrapper.__signature__ = own.replace(parameters=parameters)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in parameters}
        return wrapper

    return decorate


def method_options(command: Callable[..., Any] | None = None, *, only: tuple[str, ...] | None = None) -> Any:
    """Decorate a typer command that takes ``params: Params``: it gets the method's options (all of ``Params``, or
    those named in ``only``, the others at the paper's defaults) and is called with the ``Params`` they make."""
    make = functools.partial(params_from_options, base=Params() if only is not None else None)
    decorate = config_options(Params, into="params", only=only, make=make)
    return decorate(command) if command is not None else decorate
