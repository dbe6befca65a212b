"""A layer scan's figure: concepts per live neuron and the share of polysemantic ones."""

from __future__ import annotations

import textwrap
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from ...core.metrics import concept_counts
from ...scan.result import share_of_live


def scan_data(n_concepts: Any, live: Any = None) -> dict[str, Any]:
    """Concepts per neuron of a scan (a ScanResult or its ``n_concepts`` array), over live neurons only
    (``live``, a mask; a ScanResult brings its own): ``core.metrics.concept_counts``, the keys of
    ``ScanResult.summary``, with ``n_not_live``."""
    counts = np.asarray(getattr(n_concepts, "n_concepts", n_concepts), dtype=np.int64)
    if live is None:
        live = getattr(n_concepts, "live", None)
    d = concept_counts(counts, live)
    return {**d, "n_not_live": d["n_scanned"] - d["n_live"]}


def scan_histogram(n_concepts: Any, live: Any = None, *, rule: str | None = None) -> Figure:
    """Histogram of the number of concepts per live neuron over a layer, with the polysemantic share and, given
    ``rule`` (``ScanResult.rule_text()``), the rule that made the splits."""
    d = scan_data(n_concepts, live)
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.subplots()
    values = [int(k) for k, f in d["concepts_per_neuron"].items() if f]
    freq = [d["concepts_per_neuron"][str(v)] for v in values]
    colours = ["#9a9a9a" if v == 0 else "#1f77b4" if v == 1 else "#d62728" for v in values]
    ax.bar(values, freq, color=colours, width=0.8)
    for v, f in zip(values, freq):
        ax.text(v, f, str(f), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(values)
    locator = ax.yaxis.get_major_locator()
    if isinstance(locator, MaxNLocator):  # a bar chart's AutoLocator is one; Locator's own set_params takes nothing
        locator.set_params(integer=True)
    ax.set_xlabel("concepts per neuron")
    ax.set_ylabel("neurons")
    ax.set_title(
        f"{d['n_with_2_or_more_concepts']} of {d['n_live']} live neurons polysemantic (≥ 2 concepts): "
        f"{share_of_live(d, digits=0)}"
        + (f"; {d['n_not_live']} not live, left out" if d["n_not_live"] else "")
        + ("\n" + textwrap.fill(f"rule: {rule}", 95) if rule else ""),
        fontsize=9,
    )
    return fig
