"""Does the digits CNN use the concepts the method finds? Causal selectivity on the demo's split merged-pair units.

For every unit of ``demo.json`` whose merged pair (a, b) the method split, and for each digit a of the
pair: the concept of a (the concept with the most members of digit a among those whose majority is a)
is ablated in ``block3`` and the merged class's logit (a % 5) is measured on the unit's top examples of
digit a and of digit b. Selectivity holds for (unit, a) when the logit drops more on a's examples than
on b's, and more than any random direction (same number as concepts, at least 3) drops it on a's
examples; a unit holds when it holds for both digits. From the command line::

    conceptvec causal-demo RUN [--mode ablate|mean] [--centred] [--out FILE.json]
"""

from __future__ import annotations

import os
from collections import Counter
from typing import Any

import numpy as np

from ..scan.disentangle import disentangle
from ..core.params import Params
from ..errors import ConceptvecError
from ..storage.atomic import read_json
from ..storage.provenance import environment
from ..storage.rundir import RunDir
from .demo import DEMO_FILE
from .threads import one_thread


def unit_selectivity(effects, cs, digits: np.ndarray, pair: list[int]) -> list[dict[str, Any]]:
    """Per digit of the pair: the concept ablated and the drops of the merged class's logit."""
    rows = []
    for a, b in (pair, pair[::-1]):
        counts = [Counter(digits[cs.members(j)].tolist()) for j in range(cs.n_concepts)]
        own = [j for j, c in enumerate(counts) if c.most_common(1)[0][0] == a]
        if not own:
            continue
        j = max(own, key=lambda k: counts[k][a])
        name = f"concept {j}"
        on_a, on_b = effects.hurt(name, f"top digit {a}"), effects.hurt(name, f"top digit {b}")
        randoms = max(effects.hurt(r, f"top digit {a}") for r in effects.randoms)
        rows.append({"digit": a, "other": b, "concept": j, "drop_on_digit": on_a, "drop_on_other": on_b,
                     "largest_random_drop_on_digit": randoms, "drop_by_neuron_on_digit": effects.hurt("neuron", f"top digit {a}"),
                     # how much more, as a share of the larger drop: tiny margins are not selectivity worth the name
                     "margin_over_other": (on_a - on_b) / max(abs(on_a), abs(on_b), 1e-12),
                     "more_than_other": bool(on_a > on_b), "more_than_random": bool(on_a > randoms),
                     "holds": bool(on_a > on_b and on_a > randoms)})
    return rows


def merged_pair_causal(run_dir: str | os.PathLike[str], *, mode: str = "ablate", centred: bool = False, seed: int = 0,
                       progress: bool = False) -> dict[str, Any]:
    """Causal selectivity of every split merged-pair unit of a demo run; the record written by :func:`main`.

    ``centred``: ablate each concept's members' mean minus the layer's mean (normalised) instead of its concept vector.
    """
    from ..causal.effects import causal_effects, store_inputs
    from ..models.digits import merged_class
    from ..models.load import load_model

    run = RunDir(run_dir)
    if not (run.path / DEMO_FILE).is_file():
        raise ConceptvecError(f"{run.path} is not a demo run ({DEMO_FILE} is missing); make one with `conceptvec demo --out {run.path}`.")
    demo = read_json(run.path / DEMO_FILE)
    store = run.open_store()
    acts = np.asarray(store.activations, dtype=np.float64)
    digits = np.asarray(store.labels)
    params = Params.from_dict(demo["params"])
    with one_thread():
        loaded = load_model("digits", store.metadata["model"]["weights"])
        data = store_inputs(store, loaded)
        units = []
        for unit in (u for u in demo["merged_pair_units"] if u["split"]):
            cs = disentangle(acts, neuron=unit["neuron"], params=params)
            top = cs.top_indices
            groups = {f"top digit {d}": top[digits[top] == d] for d in unit["pair"]}
            effects = causal_effects(loaded, store.metadata["layer"], cs, data=data, mode=mode, mean=store if mode == "mean" else None,
                                     centre=store if centred else None, groups=groups, targets=merged_class(digits), alphas=(), seed=seed, random_examples=200,
                                     device="cpu", progress=progress)
            units.append({"neuron": unit["neuron"], "pair": unit["pair"], "n_concepts": cs.n_concepts,
                          "digits": unit_selectivity(effects, cs, digits, unit["pair"])})
    checks = [d for u in units for d in u["digits"]]
    held = [u for u in units if len(u["digits"]) == 2 and all(d["holds"] for d in u["digits"])]
    return {
        "run": str(run.path.resolve()), "mode": mode, "centred": centred, "seed": seed, "params": params.to_dict(), "layer": store.metadata["layer"],
        "model": store.metadata["model"], "target": "the merged class's logit (digit % 5)",
        "n_split_units": len(units), "n_units_where_it_holds": len(held),
        "share_of_units": len(held) / len(units) if units else None,
        "n_digit_checks": len(checks), "n_digit_checks_held": sum(d["holds"] for d in checks),
        "n_more_than_other_digit": sum(d["more_than_other"] for d in checks),
        "n_more_than_random": sum(d["more_than_random"] for d in checks),
        "median_margin_over_other": float(np.median([d["margin_over_other"] for d in checks])) if checks else None,
        "units": units, **environment(),
    }
