"""The "Beside a sparse dictionary" section of a neuron's page, when the run holds ``dictionary/``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..dictionary.compare import compare_with_dictionary
from ..dictionary.model import METADATA_FILE, Dictionary
from ..storage.atomic import write_json
from ..storage.conceptset import ConceptSet
from ..storage.rundir import RunDir
from ..storage.store import ActivationStore
from .examples import Examples

DPI = 100


def run_dictionary(run: RunDir) -> Dictionary | None:
    """The run's dictionary (``<run>/dictionary/``, from `conceptvec dictionary STORE --out RUN/dictionary`), or None."""
    folder = run.dictionary
    return Dictionary.load(folder) if (folder / METADATA_FILE).is_file() else None


def dictionary_section(dictionary: Dictionary | None, cs: ConceptSet, store: ActivationStore, examples: Examples,
                       folder: Path, page: str, assets: str) -> dict[str, Any] | None:
    """Draw the concepts-beside-atoms figure and return what the template prints; None without a dictionary."""
    from .figures.dictionary import atom_top_examples, concepts_beside_atoms

    if dictionary is None or dictionary.n_units != cs.n_units or cs.n_concepts == 0:
        return None
    comp = compare_with_dictionary(cs, dictionary, baseline="random")
    shown = sorted(set(comp.matched_atom) - {-1})
    atom_examples = atom_top_examples(dictionary, store.activations, shown)
    concepts_beside_atoms(cs, comp, atom_examples, examples).savefig(folder / "dictionary.png", dpi=DPI)
    write_json(folder / "dictionary.json", {**comp.to_dict(), "atom_top_examples": {str(k): v for k, v in atom_examples.items()}})
    q = dictionary.quality
    rows = [{"concept": c, "members": int((cs.labels == c).sum()), "matched atom": comp.matched_atom[c], "cosine": round(comp.cosine[c], 3),
             "members whose strongest atom it is": f"{comp.member_share[c]:.0%}",
             "random directions' best cosine": round(comp.baseline["cosine"][c], 3) if comp.baseline else None}
            for c in range(comp.n_concepts)]
    atoms = [{"atom": a, "share of the top examples' codes": f"{s:.0%}", "weight on the unit": None if u != u else round(u, 3)}
             for a, s, u in zip(comp.atoms, comp.code_share, comp.unit_weight)]
    return {
        "src": f"{assets}/{page}/dictionary.png",
        "json": f"{assets}/{page}/dictionary.json",
        "what": f"{dictionary.method}, {dictionary.n_atoms} atoms" + (f", k = {dictionary.k}" if dictionary.k else "")
                + (f"; explained variance {q['explained_variance']:.3f}, mean L0 {q['mean_l0']:.1f}, {q['dead_atoms']} dead atoms"
                   if "explained_variance" in q else ""),
        "agree": int(comp.agrees().sum()),
        "n_concepts": comp.n_concepts,
        "concepts": rows,
        "atoms": atoms,
    }
