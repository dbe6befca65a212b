"""`conceptvec causal`: ablate a neuron's concept directions in the model and measure what changes."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..errors import ConceptvecError
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


@app.command("causal-demo")
@cli_errors
def causal_demo(
    run: Annotated[Path, typer.Argument(help="A `conceptvec demo` run (its demo.json names the split merged-pair units).")],
    mode: Annotated[str, typer.Option("--mode", help="ablate or mean (as for `conceptvec causal`).")] = "ablate",
    centred: Annotated[bool, typer.Option("--centred", help="Ablate the concept directions centred on the layer's mean.")] = False,
    seed: SeedOpt = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="Also write the result as JSON to this file.")] = None,
) -> None:
    """Does the demo's digits CNN use the concepts the method finds? Ablate the concept of each digit of every split
    merged-pair unit and compare the merged class's logit drop on the two digits and against random directions."""
    from ..demo.causal import merged_pair_causal
    from ..storage.atomic import write_json

    if out is not None:
        check_result_file(out)  # before the work
    result = merged_pair_causal(run, mode=mode, centred=centred, seed=seed)
    for u in result["units"]:
        for d in u["digits"]:
            console.print(
                f"unit {u['neuron']:2d} ({u['pair'][0]}|{u['pair'][1]}) digit {d['digit']}: concept {d['concept']} ablated, "
                f"merged-class logit drops {d['drop_on_digit']:+.3f} on its top examples, {d['drop_on_other']:+.3f} on digit "
                f"{d['other']}'s, largest random {d['largest_random_drop_on_digit']:+.3f}, neuron "
                f"{d['drop_by_neuron_on_digit']:+.3f} -> {'holds' if d['holds'] else 'does not hold'}", highlight=False)
    console.print(
        f"mode {result['mode']}{', centred directions' if centred else ''}: selectivity holds for both digits in "
        f"{result['n_units_where_it_holds']} of {result['n_split_units']} split units; {result['n_digit_checks_held']} of "
        f"{result['n_digit_checks']} digit checks ({result['n_more_than_other_digit']} beat the other digit, "
        f"{result['n_more_than_random']} beat random directions; median margin over the other digit "
        f"{result['median_margin_over_other']:+.1%} of the larger drop)", highlight=False)
    if out is not None:
        write_json(out, result)
        console.print(f"written to {out}")


CAUSAL_DEMO_KEYS = {"run", "mode", "target", "n_split_units", "units"}  # what every causal-demo result holds


def check_result_file(out: Path) -> None:
    """Refuse an --out that is a folder, or a file that is not an earlier causal-demo result (a user's file of that
    name would be replaced)."""
    import json

    if out.is_dir():
        raise ConceptvecError(f"--out {out} is a folder; give the path of a .json file to write.")
    if out.exists() or out.is_symlink():
        try:
            earlier = json.loads(out.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            earlier = None
        if out.is_symlink() or not (isinstance(earlier, dict) and CAUSAL_DEMO_KEYS <= set(earlier)):
            raise ConceptvecError(f"--out {out} exists and is not an earlier causal-demo result; writing would replace it. "
                                  f"Choose another file name.")
