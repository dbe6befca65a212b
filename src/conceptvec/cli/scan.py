"""`conceptvec scan`: the method on every neuron of a layer (or on SVD / given directions), locally or on Ray."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from ..core.params import Params
from ..errors import ConceptvecError
from ..scan.result import share_of_live
from .app import app
from .common import EngineOpt, OverwriteOpt, RayAddressOpt, StoreArg, cli_errors, console
from .options import method_options


CHECK_ORDER = ["split", "stability", "labels", "causal"]
CHECK_WORDS = {"split": "the first split a discovery at FDR {level:g} over the scan (Benjamini-Hochberg, --evidence-fdr)", "stability": "stability runs",
               "labels": "the store's class labels", "causal": "causal effects"}


@app.command()
@cli_errors
@method_options
def scan(
    store: StoreArg,
    out: Annotated[Path, typer.Option("--out", help="Directory for the scan (resumable: run again to continue).")],
    neurons: Annotated[Optional[str], typer.Option("--neurons", help="Which neurons (or directions), e.g. 0-99 or 0-99,512; default all.")] = None,
    directions: Annotated[str, typer.Option("--directions", help="neurons, svd:K (top K right singular vectors), dictionary:DIR (the atoms of `conceptvec dictionary`, or an SAE .safetensors checkpoint), or a .npy / .safetensors file of vectors.")] = "neurons",
    workers: Annotated[Optional[int], typer.Option("--workers", help="Processes clustering neurons; 0 or 1: this process alone; default all CPUs.")] = None,
    projecting: Annotated[bool, typer.Option("--projecting/--no-projecting", help="Also find the maximally projecting examples of every concept.")] = True,
    power: Annotated[bool, typer.Option("--power", help="Also write power.parquet: per one-concept neuron (auto), the separation X auto would detect and the top that would detect two concepts one step closer than X (about a second per neuron).")] = False,
    stability: Annotated[int, typer.Option("--stability", help="Resampling runs per neuron that check each concept comes back (about B times the clustering time); 0 skips.")] = 0,
    engine: EngineOpt = "local",
    ray_address: RayAddressOpt = None,
    overwrite: OverwriteOpt = False,
    params: Params = Params(),
) -> None:
    """Run the method on every neuron of a layer (or on SVD / given directions) and summarise."""
    from ..scan.layer import scan_layer
    from ..storage.store import ActivationStore

    from ..core.live import dead_summary
    from ..storage.duplicates import duplicates_warning

    if power and not params.auto_distance:
        raise ConceptvecError("--power needs --distance-threshold auto: it simulates auto's test.")
    acts = ActivationStore.open(store)
    repeated = duplicates_warning(acts.metadata.get("duplicates"))
    if repeated:
        console.print(f"[yellow]warning:[/] {escape(repeated)}", highlight=False, soft_wrap=True)
    result = scan_layer(acts, params=params, neurons=neurons, workers=workers, directions=directions,
                        projecting=projecting, out=out, overwrite=overwrite, progress=True, engine=engine, ray_address=ray_address,
                        stability=stability)
    s = result.summary()
    what = "neurons" if result.kind == "neurons" else f"directions ({result.kind})"
    if result.reused:
        console.print(f"{out} already holds this scan; reusing it.")
    elif result.resumed:
        console.print(f"resumed: {result.resumed} {what} were already done in {out}.partial")
    console.print(f"{s['n_scanned']} {what}, {s['n_live']} live: {s['n_concepts_total']} concepts; {s['n_with_2_or_more_concepts']} "
                  f"({share_of_live(s)}{' of live' if s['n_live'] else ''}) have 2 or more")
    if result.layer_error is not None:
        console.print(f"rule: {result.rule_text()}")
    split = [rows for rows, n, live in zip(result.evidence(), result.n_concepts, result.live) if n >= 2 and live]
    if split:
        supported = sum(sum(bool(r["supported_by"]) for r in rows) >= 2 for rows in split)
        unchecked = sum(all(not r["checks"] for r in rows) for rows in split)
        ran = sorted({name for rows in split for r in rows for name in r["checks"]}, key=CHECK_ORDER.index)
        level = result.params.evidence_fdr
        console.print(f"evidence ({', '.join(CHECK_WORDS[n].format(level=level) for n in ran) or 'no check applies'}): "
                      f"checks support 2 or more concepts in {supported} of the {len(split)}; "
                      f"{len(split) - supported - unchecked} are unsupported splits"
                      + (f", {unchecked} unchecked (no check applies)" if unchecked else "")
                      + " (neurons.parquet 'evidence', concepts.parquet 'verdict')")
    borderline = borderline_line(result.evidence(), result.live)
    if borderline:
        console.print(borderline)
    dead = dead_summary(result.top_scores, result.neurons, floors=result.floors, unit="neuron" if result.kind == "neurons" else "direction")
    if dead:
        console.print(f"[yellow]not live:[/] {escape(dead)}")
    table = Table(title="concepts per " + ("neuron" if result.kind == "neurons" else "direction"))
    table.add_column("concepts", justify="right")
    table.add_column("count", justify="right")
    for k, v in s["concepts_per_neuron"].items():
        table.add_row(k, str(v))
    console.print(table)
    if result.stability is not None:
        import numpy as np

        st = result.stability
        live_concepts = np.repeat(result.live, result.n_concepts)
        unstable = int(np.sum(st["concept_reappearance"][live_concepts] < result.UNSTABLE))
        console.print(f"[bold]stability[/] ({st['runs']} runs, {st['resampling']}): {unstable} of {int(live_concepts.sum())} concepts of "
                      f"live neurons come back in fewer than half of the runs (flagged 'unstable' in concepts.parquet); "
                      f"{float(np.mean(st['count_agreement'][result.live])):.0%} of runs agree on a live neuron's count on average")
    console.print(f"scan written to {out} (neurons.parquet, concepts.parquet, concepts.safetensors, summary.png)")
    if power:
        write_power(result, out)


def borderline_line(evidence: list[list[dict]], live) -> str:
    """"N of M counts are borderline: ..." over the live neurons whose count auto decided by a p-value ("" if none)."""
    from ..core.evidence import BORDERLINE_FLIPPED, BORDERLINE_MEASURED_ON, NOT_BORDERLINE_FLIPPED, borderline_band

    decided = [rows[0] for rows, ok in zip(evidence, live) if ok and rows and "borderline" in rows[0]]
    if not decided:
        return ""
    level = decided[0]["decision_level"]
    lo, hi = borderline_band(level)
    n = sum(bool(r["borderline"]) for r in decided)
    return (f"[bold]borderline[/] {n} of {len(decided)} counts are borderline: their first split's p is in "
            f"{lo:g}-{hi:g}, near the level {level:g}; such counts flipped for {100 * BORDERLINE_FLIPPED:.0f} % of neurons "
            f"under a 10 % perturbation of the direction, others for {100 * NOT_BORDERLINE_FLIPPED:.0f} % (measured on "
            f"{BORDERLINE_MEASURED_ON}; neurons.parquet 'borderline')")


def write_power(result, out: Path) -> None:
    """``power.parquet`` into the finished scan ``out`` (temporary name, rename, recorded in its manifest)."""
    import os

    import numpy as np
    import pyarrow.parquet as pq

    from ..core.power import RECOMMEND_FOR, TOPS
    from ..storage.atomic import record_written

    table = result.power(recommend_for=RECOMMEND_FOR, progress=True)
    tmp = out / ".power.parquet.tmp"
    pq.write_table(table, tmp)
    os.replace(tmp, out / "power.parquet")
    record_written(out, "power.parquet")
    closer = np.asarray(table.column("one_concept_or_two_closer_than").to_numpy(zero_copy_only=False), dtype=float)
    finite = closer[np.isfinite(closer)]
    need = np.asarray(table.column("recommended_top").to_numpy(zero_copy_only=False), dtype=float)
    asked = need[~np.isnan(need)]  # NaN (null): X is already the grid's finest, nothing finer to recommend for
    tried = np.asarray(table.column("recommended_within").to_numpy(zero_copy_only=False), dtype=float)
    within = float(np.nanmax(tried)) if np.isfinite(tried).any() else float(max(TOPS))  # the largest top the layer allows
    console.print(f"[bold]power[/] {table.num_rows} one-concept neurons: one concept, or two closer than "
                  + (f"{np.median(finite):.3g} (median; {len(closer) - len(finite)} beyond 4)" if len(finite) else "any tested")
                  + (f"; a top of {np.median(asked):.0f} (median) would detect two one step closer"
                     + f" ({int(np.sum(np.isinf(asked)))} of {len(asked)} not even at {within:.0f})" if len(asked) else "")
                  + "; power.parquet")
