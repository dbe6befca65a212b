"""A layer scan's figure: concepts per live neuron and the share of polysemantic ones."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.figure import Figure


def scan_data(n_concepts: Any, live: Any = None) -> dict[str, Any]:
    """Concepts per neuron of a scan (a ScanResult or its ``n_concepts`` array): histogram and
    share of polysemantic neurons (two or more concepts), over live neurons only (``live``, a mask;
    a ScanResult brings its own)."""
    counts = np.asarray(getattr(n_concepts, "n_concepts", n_concepts), dtype=np.int64)
    if live is None:
        live = getattr(n_concepts, "live", np.ones(len(counts), dtype=bool))
    live = np.asarray(live, dtype=bool)
    n_not_live = int(np.sum(~live))
    counts = counts[live]
    values, freq = np.unique(counts, return_counts=True)
    n = int(len(counts))
    return {
        "n_not_live": n_not_live,
        "n_neurons": n,
        "n_concepts": values.tolist(),
        "n_neurons_with": freq.tolist(),
        "n_polysemantic": int(np.sum(counts >= 2)),
        "share_polysemantic": float(np.mean(counts >= 2)) if n else float("nan"),
    }


def scan_histogram(n_concepts: Any, live: Any = None) -> Figure:
    """Histogram of the number of concepts per live neuron over a layer, with the polysemantic share."""
    d = scan_data(n_concepts, live)
    fig = Figure(figsize=(6.5, 3.6), layout="constrained")
    ax = fig.subplots()
    colours = ["#9a9a9a" if v == 0 else "#1f77b4" if v == 1 else "#d62728" for v in d["n_concepts"]]
    ax.bar(d["n_concepts"], d["n_neurons_with"], color=colours, width=0.8)
    for v, f in zip(d["n_concepts"], d["n_neurons_with"]):
        ax.text(v, f, str(f), ha="center", va="bottom", fontsize=8)
    ax.set_xticks(d["n_concepts"])
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("concepts per neuron")
    ax.set_ylabel("neurons")
    ax.set_title(
        f"{d['n_polysemantic']} of {d['n_neurons']} live neurons polysemantic (≥ 2 concepts): {100 * d['share_polysemantic']:.0f}%"
        + (f"; {d['n_not_live']} not live, left out" if d["n_not_live"] else ""),
        fontsize=9,
    )
    return fig
