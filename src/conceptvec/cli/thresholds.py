"""`conceptvec thresholds`: what a distance threshold (the paper's 15) means on a layer."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..core.params import Params
from .app import app
from .common import OverwriteOpt, StoreArg, cli_errors, console
from .options import method_options

JSON_FILE = "thresholds.json"
FIGURE_FILE = "thresholds.png"


# The sweep's options only: its auto row tests each neuron at --significance, and it clusters the store's
# activations, so --fdr, --null (refused with a fixed threshold, and auto is refused here), --evidence-fdr (unused)
# and --representation (needs the model) could only be refused; `conceptvec scan` takes them.
SWEEP_OPTIONS = ("top", "distance_threshold", "outlier_threshold", "min_cluster_size", "n_init", "max_iter", "seed",
                 "significance")


@app.command()
@cli_errors
@method_options(only=SWEEP_OPTIONS)
def thresholds(
    store: StoreArg,
    neurons: Annotated[Optional[str], typer.Option("--neurons", help="Which neurons, e.g. 0-99 or 0-99,512; default all (live ones only count).")] = None,
    grid: Annotated[int, typer.Option("--grid", help="Distance thresholds swept over the layer's merge heights.")] = 40,
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder for thresholds.json and thresholds.png; default: print only.")] = None,
    workers: Annotated[Optional[int], typer.Option("--workers", help="Processes sweeping neurons (as the scan's); 0 or 1: this process alone; default all CPUs (this process for a small layer).")] = None,
    engine: Annotated[str, typer.Option("--engine", help="local (this machine's processes; Ray is offered for scan and extract).")] = "local",
    overwrite: OverwriteOpt = False,
    params: Params = Params(),
) -> None:
    """Where a distance threshold falls among a layer's ward merge heights, and the concepts per neuron it gives
    against the layer-wide rule and every other threshold (the layer-wide paper Fig. A.8)."""
    from ..scan.sweep import sweep_layer
    from ..storage.atomic import atomic_directory, refuse_existing, write_json
    from ..storage.provenance import environment
    from ..storage.store import ActivationStore

    acts = ActivationStore.open(store)
    if out is not None:  # refuse before the work, not after it
        refuse_existing(out, overwrite=overwrite, what="thresholds report", marker=JSON_FILE, protect=[store])
    sweep = sweep_layer(acts, params=params, neurons=neurons, n_grid=grid, workers=workers, engine=engine, progress=True)
    d = sweep.to_dict()
    given, rule, h = d["given"], d["layer_rule"], d["merge_heights"]
    console.print(f"{d['n_live']} live neurons" + (f" ({len(d['not_live'])} selected ones not live, left out)" if d["not_live"] else "")
                  + f"; {h['n']} ward merge heights of their top {params.top}: median {h['quantiles']['0.5']:.3g}, "
                  f"97th percentile {h['quantiles']['0.97']:.3g}, largest {h['quantiles']['1']:.3g}")
    console.print(f"[bold]distance_threshold {params.distance_threshold:g}[/] falls at quantile {given['quantile']:.3f} of them "
                  f"({100 * (1 - given['quantile']):.1f}% of merges are cut)")
    table = Table(title="concepts per live neuron")
    table.add_column("threshold")
    table.add_column("distance", justify="right")
    table.add_column("outlier", justify="right")
    table.add_column("quantile", justify="right")
    table.add_column("mean C", justify="right")
    table.add_column("mean concepts", justify="right")
    table.add_column("neurons with 0/1/2/3/4+ concepts")
    for name, values in (("given", given), ("layer rule", rule), ("auto", d["auto"])):
        hist = {int(k): v for k, v in values["concepts_per_neuron"].items()}
        binned = [hist.get(k, 0) for k in range(4)] + [sum(v for k, v in hist.items() if k >= 4)]
        mean_c = sum(int(k) * v for k, v in values["clusters_per_neuron"].items()) / max(1, d["n_live"])
        number = (lambda v, f: v if isinstance(v, str) else format(v, f))  # noqa: E731 - 'auto' or a number
        table.add_row(name, number(values["distance_threshold"], ".4g"), number(values["outlier_threshold"], ".4g"),
                      number(values.get("quantile", "-"), ".3f"), f"{mean_c:.2f}", f"{values['mean_concepts_per_neuron']:.2f}",
                      "/".join(map(str, binned)))
    console.print(table)
    console.print(f"layer rule: {rule['rule']}")
    console.print(f"auto: ward's splits of each neuron's unit-length top examples kept when a single concept would show one "
                  f"as clear with probability below {params.significance:g} (--significance); no threshold, the same on every layer")
    if out is None:
        console.print("give --out DIR to write thresholds.json and the figure thresholds.png")
        return
    from ..report.figures.thresholds import threshold_sweep_plot

    record = {"format": "conceptvec.thresholds/1", "params": params.to_dict(), "neurons": neurons, "n_grid": grid, "workers": workers,
              "units": sweep.units.tolist(), **d, "store": acts.provenance(), **environment()}
    figure = threshold_sweep_plot(sweep)
    with atomic_directory(out, overwrite=overwrite, what="thresholds report", marker=JSON_FILE, protect=[store]) as tmp:
        figure.savefig(tmp / FIGURE_FILE, dpi=120)
        write_json(tmp / JSON_FILE, record)
    console.print(f"written to {out} ({JSON_FILE}, {FIGURE_FILE})")
