"""`conceptvec causal`: ablate a neuron's concept directions in the model and measure what changes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .app import app
from .common import OverwriteOpt, SeedOpt, cli_errors, console


@app.command()
@cli_errors
def causal(
    run_dir: Annotated[Path, typer.Argument(help="Run directory: store/ and the neuron's ConceptSet neuron_N/.")],
    neuron: Annotated[int, typer.Option("--neuron", help="Neuron whose concepts (RUN_DIR/neuron_N) are ablated.")],
    mode: Annotated[str, typer.Option("--mode", help="ablate: x - (x.v)v; mean: x - ((x.v) - m)v with m the store's mean projection.")] = "ablate",
    centred: Annotated[bool, typer.Option("--centred/--paper", help="Ablate each concept's members' mean minus the layer's mean (normalised) instead of the paper's concept vector, which on an all-positive layer lies near the mean.")] = False,
    n_random: Annotated[Optional[int], typer.Option("--random", help="Random unit directions as controls; default as many as concepts, at least 3.")] = None,
    random_examples: Annotated[int, typer.Option("--random-examples", help="Size of the group of random examples.")] = 500,
    seed: SeedOpt = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Examples per forward (each runs once per intervention above the layer).")] = 64,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    overwrite: OverwriteOpt = False,
) -> None:
    """Ablate each concept vector of a neuron (and the neuron, and random directions) in the model: the change of the
    predicted class's logit on each concept's members and on random examples, and a steering curve."""
    from ..causal.effects import run_causal

    effects, out = run_causal(run_dir, neuron=neuron, mode=mode, centred=centred, n_random=n_random, random_examples=random_examples,
                              seed=seed, batch_size=batch_size, device=device, overwrite=overwrite, progress=True)
    rows, groups, values = effects.matrix("d_logit")
    edited = "set to its mean projection" if mode == "mean" else "ablated"
    table = Table(title=f"neuron {neuron}: change of the target logit when a direction is {edited} (rows), on each example group (columns)")
    table.add_column("direction")
    for g in groups:
        table.add_column(g if g == "random" else f"{g} members", justify="right")
    for name, row in zip(rows, values):
        table.add_row(name, *[f"{v:+.3f}" for v in row])
    console.print(table)
    for r in effects.selectivity():
        verdicts = [("its members more than the other concepts' members", r["more_than_other_concepts"]),
                    ("more than random directions do", r["more_than_random_directions"])]
        said = "; ".join(f"{'yes' if ok else 'no'}: {what}" for what, ok in verdicts if ok is not None)
        own = r["hurt_own"]
        console.print(f"{r['concept']}: its members' target logit changes by {-own:+.3f}" if not math.isnan(own)
                      else f"{r['concept']}: no logit to measure", f"({said})")
    console.print(f"causal effects written to {out} (causal.json, effects.parquet, steering.parquet)")
