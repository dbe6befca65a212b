"""Ray, the optional engine of extraction and the scan: importing it, joining a cluster, and errors from its workers.

Ray is an extra (``pip install "conceptvec[ray]"``); nothing imports it until ``engine="ray"`` is asked
for. ``connected`` joins the cluster at ``address`` (default: ``RAY_ADDRESS``, else a local Ray started
for this run and stopped after it), or uses the one this process is already connected to.
``user_error`` digs the exception a worker raised out of Ray's wrappers, so that a user sees the same
one-line message a local run gives.
"""

from __future__ import annotations

import contextlib
import logging
import os
from typing import Any, Iterator

from ..errors import ConceptvecError

INSTALL = 'pip install "conceptvec[ray]"'
ADDRESS_ENV = "RAY_ADDRESS"


def require_ray() -> Any:
    """The ``ray`` module, or a ConceptvecError saying how to install it."""
    try:
        import ray
        import ray.data  # noqa: F401 - extraction needs Ray Data, which is ray[data]
    except ImportError:
        raise ConceptvecError(f"--engine ray (engine='ray') needs Ray, which is not installed; install it with {INSTALL}, "
                              f"or use --engine local.") from None
    return ray


@contextlib.contextmanager
def connected(address: str | None = None) -> Iterator[Any]:
    """Ray, connected: to the cluster this process already joined, to ``address`` / ``RAY_ADDRESS``, or to a local Ray.

    A local Ray started here is shut down on leaving; a cluster joined here is left running.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    address = address or os.environ.get(ADDRESS_ENV) or None
    check_reachable(address)
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")  # Ray's C++ notes on actors' restarts, not for users
    try:
        ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "on this machine"
        raise ConceptvecError(f"could not start or join a Ray cluster {where} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                              f"start one with `ray start --head` and pass its address to --ray-address (or set {ADDRESS_ENV}), "
                              f"or leave both out for a Ray on this machine alone.") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nothing answers at, at once: ``ray.init`` would wait minutes."""
    import re
    import socket

    match = re.fullmatch(r"(?:ray://)?([^:/\s]+):(\d+)", address or "")
    if match is None:
        return  # 'auto', or no address: Ray finds or starts the cluster itself
    try:
        socket.create_connection((match.group(1), int(match.group(2))), timeout=timeout).close()
    except OSError as exc:
        raise ConceptvecError(f"no Ray cluster answers at {address} ({exc.strerror or exc}); start one with `ray start --head` "
                              f"and pass the address it prints to --ray-address (or {ADDRESS_ENV}), or leave both out for "
                              f"a Ray on this machine alone.") from None


def quiet_ray_data(ray: Any) -> None:
    """Ray Data's own progress bars and log lines off (the driver shows one bar of ours); a map's errors as raised."""
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.raise_original_map_exception = True  # the actor's own exception, not a UserCodeException without its cause
    for name in ("enable_operator_progress_bars", "print_on_execution_start", "verbose_progress"):
        if hasattr(ctx, name):
            setattr(ctx, name, False)
    logging.getLogger("ray.data").setLevel(logging.ERROR)  # e.g. its notice that its progress bars are off


class CarriedError(Exception):
    """A worker's ConceptvecError or OSError (``args[0]``), carried whole past Ray Data, which edits the text of
    the exceptions it re-raises (it appends a note on retries)."""


@contextlib.contextmanager
def carrying_errors() -> Iterator[None]:
    """In a worker: raise a ConceptvecError or OSError as a CarriedError, for ``user_error`` to unwrap."""
    try:
        yield
    except (ConceptvecError, OSError) as exc:
        raise CarriedError(exc) from None


def user_error(exc: BaseException) -> BaseException:
    """The error a worker raised (a ConceptvecError or OSError), unwrapped from Ray's exceptions; else ``exc``.

    Ray re-raises a worker's exception as a ``RayTaskError`` (sometimes also an instance of the
    original class) whose text carries the worker's traceback; its ``cause`` is the original.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        carried = current.args[0] if isinstance(current, CarriedError) and current.args else None
        if isinstance(carried, BaseException):  # Ray's wrapper of a CarriedError may carry the CarriedError itself
            current = carried
            continue
        if isinstance(current, (ConceptvecError, OSError)) and not type(current).__module__.startswith("ray."):
            return current
        current = getattr(current, "cause", None) or current.__cause__
    return exc


def cluster_cpus(ray: Any) -> int:
    """The CPUs of the cluster Ray is connected to."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def this_machine_only(ray: Any) -> bool:
    """Whether the cluster is this machine alone, so that its workers see this machine's files."""
    alive = [node for node in ray.nodes() if node.get("Alive")]
    here = ray.util.get_node_ip_address()
    return all(node.get("NodeManagerAddress") == here for node in alive)
