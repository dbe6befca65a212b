"""`conceptvec dictionary` (a sparse dictionary of a layer) and `conceptvec compare-dictionary` (concepts beside atoms)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.table import Table

from ..dictionary.config import DictionaryConfig
from ..errors import ConceptvecError
from .app import app
from .common import OverwriteOpt, StoreArg, cli_errors, console
from .options import config_options


@app.command("dictionary")
@cli_errors
@config_options(DictionaryConfig)
def dictionary(
    store: StoreArg,
    out: Annotated[Path, typer.Option("--out", help="Directory of the dictionary (run again after an interruption to resume).")],
    overwrite: OverwriteOpt = False,
    config: DictionaryConfig = DictionaryConfig(),
) -> None:
    """Fit a sparse dictionary (TopK SAE, NMF or dictionary learning) of a layer, streamed from its store."""
    from ..dictionary.fit import fit_dictionary
    from ..storage.store import ActivationStore

    acts = ActivationStore.open(store)
    dic = fit_dictionary(acts, **config.to_dict(), out=out, overwrite=overwrite, progress=True)
    q = dic.quality
    if dic.reused:
        console.print(f"{out} already holds this dictionary of this store; reusing it.")
    console.print(f"{dic.method}: {dic.n_atoms} atoms of {dic.n_units} units on {q['n_examples']} examples; explained variance "
                  f"{q['explained_variance']:.3f}, mean L0 {q['mean_l0']:.1f} active atoms per example, {q['dead_atoms']} dead atoms")
    console.print(f"dictionary written to {out} (dictionary.json, dictionary.safetensors); scan its atoms with "
                  f"`conceptvec scan {store} --directions dictionary:{out} --out DIR`")


@app.command("compare-dictionary")
@cli_errors
def compare_dictionary(
    concepts: Annotated[Path, typer.Argument(help="A scan directory (`conceptvec scan`) or a ConceptSet directory.")],
    dictionary: Annotated[Path, typer.Argument(help="A dictionary directory (`conceptvec dictionary`) or an SAE .safetensors checkpoint.")],
    out: Annotated[Path, typer.Option("--out", help="Directory for comparison.json (and comparison.parquet for a scan).")],
    baseline: Annotated[Optional[str], typer.Option("--baseline", help="random (random directions), or a dictionary fitted with --shuffle; default none.")] = None,
    store: Annotated[Optional[Path], typer.Option("--store", help="The store, when a scan was moved from where it recorded it.")] = None,
    k: Annotated[Optional[int], typer.Option("--k", help="Active atoms per example for a checkpoint (TopK's k); default: ReLU codes.")] = None,
    centre: Annotated[bool, typer.Option("--centre", help="Compare concept vectors minus the dictionary's bias (the mean for "
                                         "dictionary_learning, b_dec for an SAE) with the atoms, which describe A - bias.")] = False,
    overwrite: OverwriteOpt = False,
) -> None:
    """Put each neuron's concept vectors beside the dictionary atoms that account for its top examples."""
    from ..dictionary.compare import (COMPARISON_FILE, WHAT, DictionaryComparison, compare_scan_with_dictionary,
                                      compare_with_dictionary, comparison_inputs, earlier_comparison)
    from ..scan.result import SCAN_FILE, ScanResult
    from ..storage.atomic import refuse_existing, refuse_inside
    from ..storage.conceptset import METADATA_FILE, ConceptSet
    from ..storage.store import ActivationStore

    is_scan = (concepts / SCAN_FILE).is_file()
    if not is_scan and not (concepts / METADATA_FILE).is_file():
        raise ConceptvecError(f"{concepts} is neither a scan ({SCAN_FILE}) nor a ConceptSet ({METADATA_FILE}); give the output of "
                              f"`conceptvec scan` or `conceptvec disentangle`.")
    if not dictionary.exists():
        raise ConceptvecError(f"dictionary {dictionary} does not exist; fit one with `conceptvec dictionary STORE --out {dictionary}`.")
    if baseline is not None and baseline != "random" and not Path(baseline).exists():
        raise ConceptvecError(f"--baseline must be 'random' or a dictionary (a folder fitted with `conceptvec dictionary --shuffle`, or "
                              f"an SAE .safetensors checkpoint); {baseline} is neither.")
    refuse_inside(out, [(concepts, "scan" if is_scan else "ConceptSet"), (dictionary if dictionary.is_dir() else None, "dictionary")],
                  fix=f"Write the comparison beside them: --out {concepts.parent / 'dictionary-comparison'}.")
    # The same inputs and options as the comparison already at --out: reuse it (stages are idempotent); else refuse
    # before the work unless --overwrite.
    inputs = comparison_inputs(concepts, dictionary, baseline=baseline, k=k, centre=centre, store=store)
    saved = None if overwrite else earlier_comparison(out, inputs)
    if saved is not None:
        console.print(f"{out} already holds this comparison of these inputs and options; reusing it.")
    else:
        refuse_existing(out, overwrite=overwrite, what=WHAT, marker=COMPARISON_FILE, protect=[concepts, dictionary, store])
    if is_scan:
        if saved is not None:
            s = saved["summary"]
        else:
            dic, base = _dictionaries(dictionary, baseline, k)
            scan = ScanResult.load(concepts, acts=ActivationStore.open(store) if store is not None else None)
            result = compare_scan_with_dictionary(scan, dic, baseline=base, centre=centre, progress=True)
            result.save(out, overwrite=overwrite, inputs=inputs)
            s = result.summary
        console.print(f"{s['neurons']} neurons with concepts, {s['split_neurons']} split; split neurons whose concepts each match an atom "
                      f"at cosine >= {s['level']}: {s['split_all_concepts_match']:.0%}"
                      + (f" (baseline {s['baseline']}: {s['baseline_split_all_concepts_match']:.0%})" if s["baseline"] else ""))
        console.print(f"concepts matching an atom: {s['concepts_match']:.0%}; written to {out} (comparison.json, comparison.parquet, comparison_neurons.parquet)")
        return
    cs = ConceptSet.load(concepts)
    if saved is not None:
        comp = DictionaryComparison.from_dict(saved)
    else:
        dic, base = _dictionaries(dictionary, baseline, k)
        comp = compare_with_dictionary(cs, dic, baseline=base, centre=centre)
        comp.save(out, overwrite=overwrite, inputs=inputs)
    table = Table(title=f"neuron {cs.neuron}: concepts beside atoms")
    for col in ("concept", "members", "atom", "cosine", "members' strongest atom is it") + (("baseline cosine",) if comp.baseline else ()):
        table.add_column(col, justify="right")
    for c in range(comp.n_concepts):
        row = [str(c), str(int((cs.labels == c).sum())), str(comp.matched_atom[c]), f"{comp.cosine[c]:.2f}", f"{comp.member_share[c]:.0%}"]
        if comp.baseline:
            row.append(f"{comp.baseline['cosine'][c]:.2f}")
        table.add_row(*row)
    console.print(table)
    console.print(f"atoms carrying its top examples: {comp.atoms[:8]} (code share {', '.join(f'{v:.0%}' for v in comp.code_share[:8])})")
    console.print(f"written to {out}/comparison.json")


def _dictionaries(dictionary: Path, baseline: str | None, k: int | None) -> tuple[Any, Any]:
    """The dictionary and the baseline (a Dictionary, 'random' or None) that compare-dictionary reads."""
    from ..dictionary.model import Dictionary

    dic = Dictionary.from_checkpoint(dictionary, k=k)
    base: Dictionary | str | None = baseline
    if baseline is not None and baseline != "random":
        base = Dictionary.from_checkpoint(Path(baseline), k=k)
    return dic, base
