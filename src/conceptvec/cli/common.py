"""What the commands share: the consoles, one-line errors (``cli_errors``), the concept table, shared option types."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from rich.table import Table

from ..errors import ConceptvecError, wrapped_os_error

console = Console()
err_console = Console(stderr=True)

StoreArg = Annotated[Path, typer.Argument(help="ActivationStore directory (from `conceptvec extract`).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed, recorded with the output.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output directory.")]
EngineOpt = Annotated[str, typer.Option("--engine", help="local (this machine) or ray (a Ray cluster; pip install \"conceptvec\\[ray]\").")]
RayAddressOpt = Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster to join with --engine ray; default RAY_ADDRESS, else a local Ray.")]


def cli_errors(command: Callable) -> Callable:
    """Run a command so that the user sees one line, never a traceback.

    A ConceptvecError (bad input, with its fix) and an operating-system error (a full disk, a
    read-only folder, a missing file) exit with status 2; Ctrl-C with 130, after saying so; a
    ThresholdScaleWarning or other warning of the package is one ``warning:`` line. Anything else is
    a bug of conceptvec: one line saying so (status 1), the traceback with ``CONCEPTVEC_DEBUG=1``.
    """

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        import os
        import warnings

        from rich.markup import escape  # a message's own brackets ("conceptvec[ray]") are text, not markup

        def show(message, category, *_args, **_kwargs):
            err_console.print(f"[bold yellow]warning:[/] {escape(str(message))}", highlight=False, soft_wrap=True)

        try:
            with warnings.catch_warnings():
                warnings.showwarning = show
                return command(*args, **kwargs)
        except ConceptvecError as exc:
            # one line, whatever a library's message put into it (tracebacks of torch's own errors span lines)
            err_console.print(f"[bold red]error:[/] {escape(' '.join(str(exc).split()))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except OSError as exc:
            err_console.print(f"[bold red]error:[/] {escape(os_error_message(exc))}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None
        except KeyboardInterrupt:
            err_console.print("[bold red]interrupted[/] (Ctrl-C); finished outputs are complete, unfinished ones were not written "
                              "under their final name.", highlight=False, soft_wrap=True)
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - the last line of defence against a traceback
            if os.environ.get("CONCEPTVEC_DEBUG"):
                raise
            wrapped = wrapped_os_error(exc)
            if wrapped is not None:  # a library's own error around a full disk or a denied write: the input's fault, not ours
                err_console.print(f"[bold red]error:[/] {escape(os_error_message(wrapped))}", highlight=False, soft_wrap=True)
                raise typer.Exit(2) from None
            err_console.print(f"[bold red]error:[/] unexpected {type(exc).__name__}: {escape(' '.join(str(exc).split()))}. This is a bug of conceptvec; "
                              f"run again with CONCEPTVEC_DEBUG=1 for the traceback and report it.", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: what failed on which file, and what to do."""
    import errno

    where = f" {exc.filename}" if exc.filename else ""
    fixes: dict[int | None, str] = {  # looked up by OSError.errno, which may be None
        errno.ENOSPC: "free some space or choose an --out on another disk",
        errno.EDQUOT: "free some space or choose an --out on another disk",
        errno.EACCES: "choose a folder you may write to (--out) or fix its permissions",
        errno.EPERM: "choose a folder you may write to (--out) or fix its permissions",
        errno.EROFS: "the disk is read-only; choose an --out on a writable disk",
        errno.ENOENT: "check the path",
        errno.EISDIR: "give a file, not a folder",
        errno.ENOTDIR: "give a folder, not a file",
    }
    fix = fixes.get(exc.errno, "check the path and the disk")
    return f"{exc.strerror or exc}:{where}; {fix}."


def concept_table(cs, label_names=None, title: str | None = None) -> Table:
    """A rich table, one row per concept: size, class make-up, and its members' mean cosine similarity
    with the concept vector and with the starting neuron (or direction), as in the paper's Fig. 5; with
    ``cs.evidence`` (``cv.concept_evidence``) also each concept's verdict."""
    from collections import Counter

    from rich.markup import escape

    from ..core.evidence import short_verdict, state
    from ..core.metrics import cosine_similarity

    if label_names is not None and not any(str(name) for name in label_names):
        label_names = None  # a store without classes (a flat folder, a list of paths): no column of empty names
    table = Table(title=title)
    table.add_column("concept", justify="right")
    table.add_column("members", justify="right")
    if label_names is not None:
        table.add_column("labels of members (count)")
    table.add_column("cos with concept", justify="right")
    table.add_column("cos with " + ("neuron" if cs.neuron is not None else "direction"), justify="right")
    if cs.stability is not None:
        table.add_column(f"comes back ({cs.stability['runs']} runs)", justify="right")
    evidence = cs.evidence if cs.evidence is not None and len(cs.evidence) == cs.n_concepts else None
    if evidence is not None:
        table.add_column("supported by")
    for j in range(cs.n_concepts):
        rows = cs.top_activations[cs.labels == j]
        row = [str(j), str(len(rows))]
        if label_names is not None:
            counts = Counter(label_names[cs.members(j)].tolist()).most_common(3)
            row.append(", ".join(f"{name}: {n}" for name, n in counts))
        row.append(f"{cosine_similarity(rows, cs.concept_vectors[j]).mean():.3f}")
        row.append(f"{cosine_similarity(rows, cs.neuron_direction).mean():.3f}")
        if cs.stability is not None:
            share = cs.stability["reappearance"][j]
            row.append(f"{share:.0%}" + (" [yellow]unstable[/]" if cs.unstable()[j] else ""))
        if evidence is not None:
            colour = {"supported": "green", "unsupported": "red"}.get(state(evidence[j]), "dim")
            row.append(f"[{colour}]{escape(short_verdict(evidence[j]))}[/]")
        table.add_row(*row)
    return table
