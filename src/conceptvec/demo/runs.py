"""What the demos' runs share, torch-free: the ``auto`` thresholds they record, and replacing their own chosen neuron."""

from __future__ import annotations

import shutil
from typing import Any

from ..core.params import Params
from ..storage.atomic import check_replaceable, read_json
from ..storage.conceptset import METADATA_FILE as CONCEPTSET_FILE
from ..storage.rundir import RunDir


def auto_params(*, seed: int, **fields: Any) -> tuple[Params, dict[str, Any]]:
    """``Params(distance_threshold="auto", seed=seed, **fields)`` and the record of the rule a demo saves with it."""
    params = Params(distance_threshold="auto", seed=seed, **fields)
    return params, {"distance_threshold": "auto", "outlier_threshold": "auto", "significance": params.significance,
                    "rule": "ward's splits of each unit's unit-length top examples kept when a single concept would show one "
                            f"as clear with probability below {params.significance:g} (core.auto); outliers beyond their "
                            "cluster's far-out fence"}


def remove_own_neuron(run: RunDir, previous: dict[str, Any] | None, *, keep: int) -> None:
    """Remove the ConceptSet the earlier run of this folder chose (its record ``previous``) when this run chooses another."""
    old = (previous or {}).get("neuron")
    if old is None or old == keep:
        return
    record = run.neuron(old) / CONCEPTSET_FILE
    if record.is_file() and "chosen_because" in (read_json(record).get("provenance") or {}):
        check_replaceable(run.neuron(old), what="ConceptSet")  # only what the earlier run wrote there, unchanged
        shutil.rmtree(run.neuron(old))
