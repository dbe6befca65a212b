"""What other commands found about the scanned neurons, shown beside their concepts in the atlas.

- Causal selectivity (``conceptvec causal RUN --neuron N``, ``cv.causal_effects``): ``RUN/neuron_N/causal/causal.json``
  per neuron. Its concepts are those of the ConceptSet ``RUN/neuron_N``; each is matched to the scan's concept of the
  neuron it points most alike (cosine of the concept vectors), since the two may have been cut with other parameters.
- A dictionary's atoms (``conceptvec compare-dictionary RUN/scan RUN/dictionary --out DIR``,
  ``cv.compare_scan_with_dictionary``): a folder of the run holding its ``comparison.json``. The comparison records
  no scan, so it is taken as this scan's when every neuron it holds is a scanned neuron with as many concepts.

Each returns plain JSON values by scan row, for the overview and the neurons' data files; neurons without are absent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ...errors import ConceptvecError, StoreError
from ...scan.result import ScanResult
from ...storage.causal_effects import FORMAT as CAUSAL_FORMAT
from ...storage.causal_effects import METADATA_FILE as CAUSAL_FILE
from ...storage.conceptset import ConceptSet
from ...storage.files import read_format
from ...storage.rundir import RunDir
from ...storage.store import ActivationStore

COMPARISON_FILE = "comparison.json"  # what `conceptvec compare-dictionary` writes for a scan (dictionary/compare.py)
COMPARISON_FORMAT = "conceptvec.ScanDictionaryComparison/1"


def _num(x: Any) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), 4)


def selective(row: dict[str, Any]) -> bool:
    """A concept passes when removing it hurts its own members more than every other concept's members, than random
    examples, and more than any random direction hurts its members (tests that do not apply, e.g. with one concept, pass)."""
    return all(row.get(k) is not False for k in ("more_than_other_concepts", "more_than_random_examples",
                                                "more_than_random_directions"))


def causal_by_row(scan: ScanResult, run: RunDir | None, store: ActivationStore) -> dict[int, dict[str, Any]]:
    """Per scan row with causal effects in the run: the mode, and per concept of the ConceptSet its drops, verdict and
    the scan's concept it matches."""
    if run is None or scan.kind != "neurons":
        return {}
    found = {}
    for pos, n in enumerate(scan.neurons.tolist()):
        folder = run.causal(int(n))
        if not (folder / CAUSAL_FILE).is_file():
            continue
        try:
            meta = read_format(folder / CAUSAL_FILE, expected=CAUSAL_FORMAT, what="causal effects", fix="run `conceptvec causal` again")
            cs = ConceptSet.load(run.neuron(int(n)))
            store.check_made_from(cs.provenance, what=f"the ConceptSet of neuron {n}")
        except (ConceptvecError, StoreError, OSError, ValueError):
            continue  # not readable or of another store: the atlas shows the scan alone for this neuron
        a, b = int(scan.concept_offsets[pos]), int(scan.concept_offsets[pos + 1])
        ours = scan.concept_vectors[a:b].astype(np.float64)
        theirs = cs.concept_vectors.astype(np.float64)
        cos = (theirs / np.linalg.norm(theirs, axis=1, keepdims=True)) @ (ours / np.linalg.norm(ours, axis=1, keepdims=True)).T \
            if len(ours) and len(theirs) else np.zeros((len(theirs), 0))
        concepts: list[dict[str, Any]] = []
        for j, row in enumerate(meta.get("selectivity") or []):
            match = int(np.argmax(cos[j])) if j < len(cos) and cos.shape[1] else -1
            concepts.append({
                "concept": j, "scan_concept": match, "cosine": _num(cos[j, match]) if match >= 0 else None,
                "members": int(np.sum(cs.labels == j)),
                "own": _num(row.get("hurt_own")), "other": _num(row.get("hurt_other_concepts_max")),
                "random_examples": _num(row.get("hurt_random_examples")),
                "random_directions": _num(row.get("hurt_random_directions_max")),
                "neuron": _num(row.get("hurt_neuron_on_own")), "selective": selective(row),
            })
        params = meta.get("params") or {}
        found[pos] = {"mode": str(params.get("mode", "ablate")), "directions": str(params.get("directions", "concept vectors")),
                      "concepts": concepts, "n_selective": sum(c["selective"] for c in concepts)}
    return found


def find_comparison(folders: list[Path], scan: ScanResult) -> Path | None:
    """The first folder among ``folders`` and their direct sub-folders holding a dictionary comparison of this scan."""
    counts = dict(zip(scan.neurons.tolist(), scan.n_concepts.tolist()))
    for folder in folders:
        if not folder.is_dir():
            continue
        for candidate in [folder] + sorted(p for p in folder.iterdir() if p.is_dir()):
            path = candidate / COMPARISON_FILE
            if not path.is_file():
                continue
            try:
                made = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            neurons = made.get("neurons") if isinstance(made, dict) and made.get("format") == COMPARISON_FORMAT else None
            if isinstance(neurons, dict) and neurons and all(
                    counts.get(int(n)) == len(c.get("matched_atom", ())) for n, c in neurons.items()):
                return candidate
    return None


def dictionary_by_row(scan: ScanResult, folders: list[Path]) -> tuple[dict[int, dict[str, Any]], dict[str, Any] | None]:
    """Per scan row compared with a dictionary: its concepts' matched atom, cosine, member share (and the baseline's
    cosine), and the atoms carrying its top examples; and what the dictionary was. Empty without a comparison."""
    found = find_comparison(folders, scan)
    if found is None:
        return {}, None
    made = json.loads((found / COMPARISON_FILE).read_text(encoding="utf-8"))
    rows = {}
    for n, c in made["neurons"].items():
        base = c.get("baseline") or {}
        rows[scan.position(int(n))] = {
            "concepts": [{"atom": int(a), "cosine": _num(cos), "member_share": _num(share),
                          "baseline_cosine": _num(base["cosine"][j]) if base.get("cosine") else None}
                         for j, (a, cos, share) in enumerate(zip(c["matched_atom"], c["cosine"], c["member_share"]))],
            "atoms": [[int(a), _num(s)] for a, s in zip(c["atoms"], c["code_share"])],
        }
    summary = made.get("summary") or {}
    d = summary.get("dictionary") or {}
    return rows, {"source": str(found.resolve()), "method": d.get("method"), "n_atoms": d.get("n_atoms"), "k": d.get("k"),
                  "level": summary.get("level"), "baseline": summary.get("baseline")}
