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
RETRIES = 3  # runs again of a task (scan) or an actor's batch (extraction) whose worker died, before the run fails


def require_ray() -> Any:
    """The ``ray`` module, or a ConceptvecError saying how to install it."""
    # Ray's C++ core reads its log level once, when it is first imported: its notes on retries and on a cluster
    # it cannot reach (a line a second) are not for users
    os.environ.setdefault("RAY_BACKEND_LOG_LEVEL", "error")
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
        here = ray.get_runtime_context().gcs_address
        if address and address != "auto" and address.removeprefix("ray://") != here:
            import warnings

            # the same results either way (a scan is bit for bit the same anywhere), but not where the user said
            warnings.warn(f"this process is already connected to the Ray cluster at {here}; ray_address {address!r} is "
                          f"not joined (call ray.shutdown() first to join it).", stacklevel=3)
        yield ray
        return
    address = address or os.environ.get(ADDRESS_ENV) or None
    check_reachable(address)
    try:
        # ERROR: Ray's notices on starting (token authentication, the dashboard) are not for conceptvec's users
        ray.init(address=address, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"at {address}" if address else "on this machine"
        # Ray says only "Failed to connect" when the cluster asks for a token this process does not send
        token = ("" if address in (None, "", "auto") or os.environ.get("RAY_AUTH_MODE") else
                 "; a cluster with token authentication (Ray's default) is joined with RAY_AUTH_MODE=token set, its token in "
                 "~/.ray/auth_token or RAY_AUTH_TOKEN")
        raise ConceptvecError(f"could not start or join a Ray cluster {where} ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                              f"start one with `ray start --head` and pass its address to --ray-address (or set {ADDRESS_ENV}), "
                              f"or leave both out for a Ray on this machine alone{token}.") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nothing answers at, at once: ``ray.init`` would wait minutes."""
    import re
    import socket

    if address is not None and not isinstance(address, str):
        raise ConceptvecError(f"ray_address (--ray-address) must be a text such as '10.0.0.1:6379' or 'auto', got "
                              f"{type(address).__name__} {address!r}.")
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
    # its notices (progress bars off) and its ERROR lines with a worker's traceback: the error reaches the user as
    # one line (``user_error``), and its traceback is not for them
    logging.getLogger("ray.data").setLevel(logging.CRITICAL)


def map_on_actors(dataset: Any, actor: type, **options: Any) -> Any:
    """``dataset.map_batches(actor, **options)``, a batch whose actor dies run at most ``RETRIES`` times more.

    Ray Data's default runs it again for ever (a poisoned example that kills its actor hangs the run); its
    ``max_task_retries`` has no named parameter yet, and Ray warns that such arguments will be named.
    """
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*ray_remote_args.* is deprecated")
        return dataset.map_batches(actor, max_task_retries=RETRIES, **options)


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
    """The error a worker raised, unwrapped from Ray's exceptions; a worker Ray lost, as a ConceptvecError.

    Ray re-raises a worker's exception as a ``RayTaskError`` (also an instance of the original class) whose
    text carries the worker's traceback; its ``cause`` is the original, which is returned, so that a run on
    Ray fails with the local run's message. A worker that died on every retry, an object store or disk
    that is full, or a lost node is Ray's own error: said in one line with what to do (``lost_worker``).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        carried = current.args[0] if isinstance(current, CarriedError) and current.args else None
        if isinstance(carried, BaseException):  # Ray's wrapper of a CarriedError may carry the CarriedError itself
            current = carried
            continue
        if not type(current).__module__.startswith("ray."):
            return current  # the worker's own exception (a ConceptvecError, an OSError, a bug), as a local run raises it
        if type(current).__module__ == "ray.exceptions" and not _is_task_error(current):
            return lost_worker(current)  # Ray's own failure (Ray Data raises it "from" a SystemException of its own)
        current = getattr(current, "cause", None) or current.__cause__
    return exc


def _is_task_error(exc: BaseException) -> bool:
    return type(exc).__name__.startswith(("RayTaskError", "UserCodeException"))


def lost_worker(exc: BaseException) -> BaseException:
    """Ray's own error (``ray.exceptions``: a worker or actor that died, a full object store or disk, a lost node) as
    a ConceptvecError saying what was kept and what to do; another exception as it is."""
    name = type(exc).__name__
    if type(exc).__module__ != "ray.exceptions" or name in ("TaskCancelledError", "AuthenticationError"):
        return exc
    if getattr(exc, "actor_init_failed", False):  # its __init__ raised: Ray keeps only the text, whose last line is the error
        last = [line.strip() for line in str(exc).splitlines() if line.strip()][-1][:300]
        return ConceptvecError(f"a Ray worker could not start ({last}); every node needs the model, its weights and the data "
                               f"at the paths given (a shared disk: docs/ray.md) and the same Python environment.")
    first = " ".join(str(exc).split())[:300]
    if name in ("ObjectStoreFullError", "OutOfDiskError"):
        fix = ("give Ray more room (`ray start --head --object-store-memory BYTES`, or free disk space where Ray spills, "
               "/tmp/ray by default) or use fewer --workers")
    else:
        fix = "if it keeps dying, give the workers more memory or use fewer --workers"
    return ConceptvecError(f"the Ray cluster lost a worker's work after {RETRIES} retries ({name}: {first}); the batches "
                           f"finished before it are kept in the output's .partial folder: run the same command again to "
                           f"resume; {fix}.")


def for_workers(path: Any) -> Any:
    """A path the driver was given, made absolute for Ray's workers (whose working folder is not the driver's on a
    cluster started elsewhere); a spec that names no file here (``none``, a weights name) as it is."""
    from pathlib import Path

    if not isinstance(path, (str, os.PathLike)):
        return path
    text = os.fspath(path)
    prefix, sep, rest = text.partition(":")
    if sep and prefix in ("hf",) and Path(rest).exists():  # a model spec naming a folder: hf:DIR
        return f"{prefix}:{Path(rest).resolve()}"
    return str(Path(text).resolve()) if Path(text).exists() else path


def check_visible(folder: Any, what: str) -> None:
    """In a worker: refuse, naming this node, a folder the driver gave that this node does not have (a data folder
    or a model folder not mounted here), instead of reading none of its files."""
    from pathlib import Path

    if folder is not None and not Path(folder).is_dir():
        import socket

        raise ConceptvecError(f"a Ray worker on {socket.gethostname()} cannot see the {what} {folder}; on a cluster of "
                              f"several machines it must be at the same path on every node (a shared disk: docs/ray.md), "
                              f"or run with --engine local.")


def cluster_cpus(ray: Any) -> int:
    """The CPUs of the cluster Ray is connected to."""
    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def this_machine_only(ray: Any) -> bool:
    """Whether the cluster is this machine alone, so that its workers see this machine's files."""
    alive = [node for node in ray.nodes() if node.get("Alive")]
    here = ray.util.get_node_ip_address()
    return all(node.get("NodeManagerAddress") == here for node in alive)
