"""Benchmark: the text demo's method part at top 50, 500 and 1,000 on its larger corpus (issue 23, item 5).

Extracts ``encoder.layer.3.intermediate`` of all-MiniLM-L6-v2 over the larger docstring corpus
(``demo.text.demo_corpus``, as ``conceptvec demo --text --top 500`` does; or reuses ``--store``), then times, at each
top, what the demo runs after extraction to count and disentangle its mixing units: ``mixing_neurons`` on the 1,536
neurons and on the 128 random directions, with ``distance_threshold="auto"`` (the report's scan of every unit is left
out). It prints the wall time, the units disentangled, the cost per disentangled top example and its ratio to top
50's (one run, one thread), and what the demo says at each top (mixing, split into 2+ groups, chance, across modules).

Usage: python benchmarks/bench_text_top.py [--tops 50,500,1000] [--store DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np

import conceptvec as cv
from conceptvec.demo.runs import auto_params
from conceptvec.demo.text import (LAYER, RANDOM_DIRECTIONS, _classes, control_summary, demo_corpus, minilm_folder,
                                  mixing_neurons)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tops", default="50,500,1000")
    parser.add_argument("--store", type=Path, default=None, help="a store of the larger corpus to reuse (made if absent)")
    args = parser.parse_args()
    tops = [int(t) for t in args.tops.split(",")]
    print(f"machine: {os.cpu_count()} CPUs, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; load average before: "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()))
    sentences, record = demo_corpus(max(tops))
    with tempfile.TemporaryDirectory() as tmp:
        store_dir = args.store or Path(tmp) / "store"
        if not (store_dir / "metadata.json").is_file():
            corpus = Path(tmp) / "corpus.jsonl"
            corpus.write_text("".join(json.dumps(s) + "\n" for s in sentences), encoding="utf-8")
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            start = time.perf_counter()
            cv.extract(f"hf:{minilm_folder()}", layer=LAYER, data=corpus, out=store_dir, text_column="text",
                       label_column="module", device="cpu", batch_size=32, progress=False)
            print(f"extracted {len(sentences)} sentences in {time.perf_counter() - start:.1f} s")
        store = cv.ActivationStore.open(store_dir)
        acts = np.asarray(store.activations, dtype=np.float64)
        labels, names = store.labels, np.asarray(_classes(store), dtype=object)
    print(f"corpus: {record['name']}, {len(record['modules'])} modules, {store.n_examples} sentences x {store.n_units} units, "
          f"{len(names)} labels; a unit mixes when its second label holds >= {record['min_second']:.0%} of its top")
    dirs = np.random.default_rng(0).normal(size=(RANDOM_DIRECTIONS, acts.shape[1]))
    base = None
    for top in tops:
        params, _ = auto_params(seed=0, top=top)
        start = time.perf_counter()
        rows = mixing_neurons(acts, labels, names, params, seed=0, min_second=record["min_second"])
        random_rows = mixing_neurons(acts, labels, names, params, seed=0, directions=dirs, min_second=record["min_second"])
        seconds = time.perf_counter() - start
        units = len(rows) + len(random_rows)
        per_example = seconds / max(units * top, 1)
        base = base or per_example
        n, r = control_summary(rows, params), control_summary(random_rows, params)
        print(f"top {top}: {seconds:.1f} s, {units} units disentangled ({len(rows)} neurons, {len(random_rows)} directions), "
              f"{per_example * 1e6:.1f} us per disentangled top example = {per_example / base:.2f}x top {tops[0]}'s")
        print(f"  neurons: {n['n_mixing']} of {store.n_units} mix two modules, {n['n_several']} split into 2+ groups "
              f"(~{n['expected_several_by_chance']:.1f} by chance, p {n['p_several_by_chance']:.2f}), {n['n_split']} across "
              f"modules, {n['n_beyond_chance']} beyond chance in purity; random directions: {r['n_mixing']} of "
              f"{RANDOM_DIRECTIONS} mix, {r['n_several']} split")
        pairs = sorted({tuple(x["modules"]) for x in rows if x["n_concepts"] > 1})
        print(f"  split neurons' modules: {pairs[:10]}")
    print("load average after: " + " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
