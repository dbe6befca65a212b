"""One registry of engines, for extraction and the scan.

An engine is where a stage's parallel work runs: ``local`` (this machine: this process and its worker
processes) or ``ray`` (a Ray cluster: ``pip install "conceptvec[ray]"``). Each entry names, per stage, what
runs that stage there; a user adds an engine for the scan with ``register_engine`` (any object with the
``scan.engine.Engine`` protocol's ``run`` method, or a factory of one taking ``workers=`` and ``ray_address=``).

One meaning of the words on every engine and stage:

- ``workers``: how many workers run the stage's parallel part at once; locally processes (this one
  included), on Ray actors or tasks. ``None``: the stage's default on that engine (locally: all usable CPUs
  for the scan, this process alone for extraction; on Ray: every CPU of the cluster, or every GPU for an
  extraction on CUDA). ``0`` or ``1``: one worker (locally: this process alone).
- ``ray_address`` (``--ray-address``): the Ray cluster to join; default ``RAY_ADDRESS``, else a local Ray.
  It applies to engines that run on a cluster and is refused elsewhere.
"""

from __future__ import annotations

import os

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from ..errors import ConceptvecError

STAGES = ("extraction", "scan")


@dataclass(frozen=True)
class EngineEntry:
    """An engine: its name, what it is, whether it runs on a Ray cluster, and what runs each stage there.

    ``stages`` maps a stage to what runs it: a ``"module:attribute"`` resolved when first used (so that the
    registry imports no stage and no optional extra), or the object itself.
    """

    name: str
    description: str
    stages: dict[str, str | Callable[..., Any]]
    on_ray: bool = False

    def runner(self, stage: str) -> Callable[..., Any]:
        """What runs ``stage`` on this engine (the class or function the entry names)."""
        target = self.stages[stage]
        if not isinstance(target, str):
            return target
        module, _, attribute = target.partition(":")
        return getattr(importlib.import_module(module), attribute)  # type: ignore[no-any-return]


ENGINES: dict[str, EngineEntry] = {
    "local": EngineEntry("local", "this machine: this process and its worker processes",
                         {"extraction": "conceptvec.extraction.runner:run_chunks",
                          "scan": "conceptvec.scan.engine:LocalEngine"}),
    "ray": EngineEntry("ray", 'a Ray cluster (pip install "conceptvec[ray]")',
                       {"extraction": "conceptvec.extraction.ray_images:run_chunks_ray",
                        "scan": "conceptvec.scan.ray_engine:RayEngine"}, on_ray=True),
}


def register_engine(name: str, *, scan: Callable[..., Any], description: str = "", on_ray: bool = False) -> EngineEntry:
    """Add an engine for the scan under ``name`` (``cv.scan_layer(..., engine=name)``, ``--engine name``).

    ``scan`` is a factory taking ``workers=`` (and ``ray_address=`` when ``on_ray``) and returning an object
    with the ``scan.engine.Engine`` protocol's ``run`` method.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ConceptvecError(f"an engine's name must be a word such as 'dask', got {name!r}.")
    if name in ENGINES:
        raise ConceptvecError(f"engine {name!r} is already registered; choose another name.")
    if not callable(scan):
        raise ConceptvecError(f"scan= must be a factory of an engine (a class or function), got {type(scan).__name__}.")
    entry = EngineEntry(name, description or f"registered: {getattr(scan, '__name__', scan)!s}", {"scan": scan}, on_ray)
    ENGINES[name] = entry
    return entry


MAX_WORKERS_PER_CPU = 4  # local worker processes per CPU at most


def local_cpus() -> int:
    """The CPUs this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def check_engine(engine: str, *, stage: str, ray_address: str | None = None, workers: int | None = None) -> EngineEntry:
    """The entry of ``engine`` for ``stage``, after the checks every stage makes before minutes of work.

    Refuses an unknown engine or one that does not run ``stage``, a ``ray_address`` for an engine that
    joins no cluster, a ``workers`` that is not a whole number >= 0, and a Ray engine when Ray is missing or
    the cluster cannot be reached.
    """
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ConceptvecError(f"unknown engine {engine!r}; choose one of {', '.join(sorted(ENGINES))}.")
    entry = ENGINES[engine]
    if stage not in entry.stages:
        runs = sorted(name for name, e in ENGINES.items() if stage in e.stages)
        raise ConceptvecError(f"engine {engine!r} does not run {stage}; choose one of {', '.join(runs)}.")
    if ray_address is not None and not entry.on_ray:
        raise ConceptvecError(f"--ray-address (ray_address=) applies to an engine on a Ray cluster (--engine ray), not {engine!r}.")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 0):
        raise ConceptvecError(f"workers must be a whole number >= 0 (0 or 1: one worker), or left out for the engine's "
                              f"default, got {workers!r}.")
    if workers is not None and not entry.on_ray:
        cpus = local_cpus()
        if workers > MAX_WORKERS_PER_CPU * cpus:
            # each worker is a process on this machine: 10**5 of them never start (and leak semaphores trying)
            raise ConceptvecError(f"workers must be at most {MAX_WORKERS_PER_CPU * cpus} on this machine ({cpus} CPUs; each worker is "
                                  f"a process), got {workers}; give --workers {cpus} or leave it out.")
    if entry.on_ray:
        from .raycluster import check_reachable, require_ray

        require_ray()
        check_reachable(ray_address)
    return entry
