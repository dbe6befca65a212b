"""Benchmark: sparse dictionaries beside concept vectors, and the TopK SAE's cost against a plain PyTorch loop.

In one run, on one torch thread (OMP_NUM_THREADS=1 unless set):

1. ``planted``: a planted layer (``core.planted``, 64 units, 16 neurons with 1-4 known facets): each method's
   dictionary (TopK SAE, NMF, dictionary learning; 128 atoms) and how many facets an atom recovers at cosine
   >= 0.9; then every multi-facet neuron disentangled (distance_threshold="auto") and its concepts compared with
   the best dictionary's atoms, against a dictionary fitted on shuffled activations; where the split is right
   and where concepts and atoms disagree.
2. ``digits``: the demo's digits CNN (shipped weights, 1797 digits): a TopK SAE of 8x the layer width and its
   shuffled twin; scan of all neurons; the share of split neurons whose concepts each match an atom, and the same
   against the shuffled baseline.
3. ``timing``: a TopK SAE of 8x the width on N x D float32 activations saved as .npy: ``cv.fit_dictionary``
   (memory-mapped store read in blocks) against a plain PyTorch loop (np.load of the whole array, random
   mini-batches, the same model and optimiser): seconds per epoch and peak memory, each in a fresh process.
   Peak memory is the peak of anonymous resident memory (RssAnon, sampled every 20 ms), i.e. what the process
   holds beyond the file pages the kernel may drop.

4. ``minilm``: all-MiniLM-L6-v2 (real weights, offline) over standard-library docstrings (the text demo's layer):
   a TopK SAE of 2x the width (8x is beyond this machine's minutes), its shuffled twin, a scan of the first 300
   neurons, and the same share as for digits.

Usage: python benchmarks/bench_dictionary.py [planted] [digits] [minilm] [timing] [--n 16000 --d 256]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

import conceptvec as cv  # noqa: E402
from conceptvec.core.planted import planted_layer  # noqa: E402

AUTO = cv.Params(distance_threshold="auto")


def facet_directions(layer):
    rows, owner = [], []
    for j in range(len(layer.n_facets)):
        for f in range(layer.n_facets[j]):
            m = layer.acts[(layer.owner == j) & (layer.facet == f)].mean(0)
            rows.append(m / np.linalg.norm(m))
            owner.append((j, f))
    return np.array(rows), owner


def planted(args):
    layer = planted_layer(64, n_neurons=16, seed=0)
    facets, owner = facet_directions(layer)
    print(f"\n## planted layer: {layer.acts.shape[0]} examples x 64 units, 16 neurons, {len(facets)} facets")
    fits = {
        "topk_sae k=1": dict(method="topk_sae", k=1, epochs=100, lr=1e-2, batch_size=256),
        "topk_sae k=4": dict(method="topk_sae", k=4, epochs=100, lr=1e-2, batch_size=256),
        "nmf": dict(method="nmf", k=4, epochs=20, alpha=1e-4, batch_size=256),
        "dictionary_learning k=4": dict(method="dictionary_learning", k=4, epochs=5, batch_size=256),
    }
    results = {}
    for name, kw in fits.items():
        t = time.perf_counter()
        dic = cv.fit_dictionary(layer.acts, n_atoms=128, progress=False, seed=0, **kw)
        took = time.perf_counter() - t
        best = (facets @ dic.atoms().T).max(axis=1)
        results[name] = dic
        q = dic.quality
        print(f"{name:26s} {took:6.1f} s  explained variance {q['explained_variance']:.3f}  mean L0 {q['mean_l0']:.2f}  "
              f"dead {q['dead_atoms']:3d}  facets recovered (cos >= 0.9): {np.mean(best >= 0.9):.0%}  median best cos {np.median(best):.2f}")
    chosen = max(results, key=lambda n: np.mean((facets @ results[n].atoms().T).max(axis=1) >= 0.9))
    dic = results[chosen]
    kw = {**fits[chosen], "shuffle": True}
    shuffled = cv.fit_dictionary(layer.acts, n_atoms=128, progress=False, seed=0, **kw)
    print(f"comparison with {chosen} (baseline: the same fit on shuffled activations)")
    right = agree = right_agree = base_agree = 0
    multi = np.flatnonzero(layer.n_facets >= 2)
    for j in multi:
        cs = cv.disentangle(layer.acts, neuron=int(j), params=AUTO)
        comp = cv.compare_with_dictionary(cs, dic, baseline=shuffled)
        ok = cs.n_concepts == layer.n_facets[j]
        right += ok
        agree += bool(comp.agrees().all())
        right_agree += bool(ok and comp.agrees().all())
        base_agree += bool(np.all(np.asarray(comp.baseline["cosine"]) >= 0.9))
        if not (ok and comp.agrees().all()):
            print(f"  neuron {j}: {layer.n_facets[j]} facets, {cs.n_concepts} concepts; cosines {np.round(comp.cosine, 2).tolist()}; "
                  f"matched atoms {comp.matched_atom}; member share {np.round(comp.member_share, 2).tolist()}")
    print(f"multi-facet neurons: {len(multi)}; split right: {right}; every concept matched at cos >= 0.9: {agree} "
          f"(of the right splits: {right_agree}/{right}); against the shuffled fit: {base_agree}")


def split_agreement(store, scan, dic, shuffled):
    comp = cv.compare_scan_with_dictionary(scan, dic, baseline=shuffled)
    s = comp.summary
    print(f"{s['split_neurons']} split neurons of {s['neurons']}: every concept matched by an atom at cos >= 0.9: "
          f"{s['split_all_concepts_match']:.1%} (shuffled baseline {s['baseline_split_all_concepts_match']:.1%}); concepts matched "
          f"{s['concepts_match']:.1%}; median cosine {np.nanmedian(comp.table['cosine'].to_numpy()):.2f} (baseline "
          f"{np.nanmedian(comp.table['baseline_cosine'].to_numpy()):.2f}); median member share "
          f"{np.nanmedian(comp.table['member_share'].to_numpy()):.2f} (baseline {np.nanmedian(comp.table['baseline_member_share'].to_numpy()):.2f})")


def digits(args):
    from conceptvec.demo.demo import run_demo

    with tempfile.TemporaryDirectory() as tmp:
        demo = run_demo(Path(tmp) / "demo", progress=False, report=False)
        store = demo.store
        n, d = store.shape
        print(f"\n## digits CNN, layer {store.metadata['layer']}: {n} examples x {d} units")
        kw = dict(n_atoms=8 * d, method=args.method, k=args.k, epochs=args.epochs, lr=args.lr, batch_size=128, progress=False)
        t = time.perf_counter()
        dic = cv.fit_dictionary(store, **kw)
        took = time.perf_counter() - t
        shuffled = cv.fit_dictionary(store, shuffle=True, **kw)
        for name, x in ((args.method, dic), (f"shuffled {args.method}", shuffled)):
            q = x.quality
            print(f"{name}: {x.n_atoms} atoms, k={args.k}, {args.epochs} epochs, lr {args.lr}: explained variance {q['explained_variance']:.3f}, "
                  f"mean L0 {q['mean_l0']:.1f}, dead {q['dead_atoms']}")
        print(f"fit time {took:.1f} s")
        scan = cv.scan_layer(store, params=AUTO, workers=1, progress=False)
        split_agreement(store, scan, dic, shuffled)


def minilm(args):
    """all-MiniLM-L6-v2 (real weights, offline) over standard-library docstrings, the text demo's layer."""
    from conceptvec.demo.text import LAYER, docstring_sentences, minilm_folder

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        corpus.write_text("".join(json.dumps(s) + "\n" for s in docstring_sentences()), encoding="utf-8")
        t = time.perf_counter()
        store = cv.extract(f"hf:{minilm_folder()}", layer=LAYER, data=corpus, out=Path(tmp) / "store", text_column="text",
                           label_column="module", device="cpu", batch_size=32, progress=False)
        n, d = store.shape
        print(f"\n## all-MiniLM-L6-v2 {LAYER} over docstrings: {n} sentences x {d} units (extracted in {time.perf_counter() - t:.0f} s)")
        kw = dict(n_atoms=args.text_factor * d, method="topk_sae", k=args.k, epochs=args.epochs, lr=1e-3, batch_size=128, progress=False)
        t = time.perf_counter()
        dic = cv.fit_dictionary(store, **kw)
        took = time.perf_counter() - t
        shuffled = cv.fit_dictionary(store, shuffle=True, **kw)
        for name, x in (("SAE", dic), ("shuffled SAE", shuffled)):
            q = x.quality
            print(f"{name}: {x.n_atoms} atoms ({args.text_factor}x), k={args.k}, {args.epochs} epochs: explained variance "
                  f"{q['explained_variance']:.3f}, mean L0 {q['mean_l0']:.1f}, dead {q['dead_atoms']}")
        print(f"fit time {took:.1f} s")
        scan = cv.scan_layer(store, params=cv.Params(distance_threshold="auto", top=50), neurons=f"0-{args.text_neurons - 1}",
                             workers=1, progress=False)
        print(f"scan of neurons 0-{args.text_neurons - 1} (top 50)")
        split_agreement(store, scan, dic, shuffled)


CHILD = r"""
import json, os, sys, threading, time
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np, torch
peak = [0]
def watch():
    while True:
        for line in open("/proc/self/status"):
            if line.startswith("RssAnon:"):
                peak[0] = max(peak[0], int(line.split()[1]) * 1024)
        time.sleep(0.02)
threading.Thread(target=watch, daemon=True).start()
kind, path, n_atoms, k, epochs, batch, block = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:8])
import conceptvec as cv
from conceptvec.dictionary.sae import TopKSAE


class DenseTopKSAE(TopKSAE):
    # The textbook TopK SAE (as SAELens and Overcomplete write it): the k largest codes scattered into a dense
    # (batch, n_atoms) matrix, decoded by a dense product; autograd's dense backward. Same init, same maths.

    def forward(self, x):
        pre = torch.relu((x - self.b_dec) @ self.W_enc + self.b_enc)
        values, indices = pre.topk(self.k, dim=1)
        z = torch.zeros_like(pre).scatter_(1, indices, values)
        return z @ self.W_dec + self.b_dec, values, indices


torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))])  # the first Adam imports torch._dynamo (seconds): not timed
time.sleep(0.1)
base = peak[0]
if kind == "ours":
    store = cv.ActivationStore.open(path)
    t = time.perf_counter()
    # aux_k=0: the plain loops have no AuxK loss either (like for like)
    dic = cv.fit_dictionary(store, n_atoms=n_atoms, k=k, epochs=epochs, batch_size=batch, block_rows=block, aux_k=0, progress=False)
    took = time.perf_counter() - t
    seconds = dic.provenance["seconds"]  # the scaling, training and quality passes, timed apart by fit_dictionary
else:
    t = time.perf_counter()
    a = torch.from_numpy(np.load(os.path.join(path, "acts.npy")))
    n, d = a.shape
    sq = sum(float((a[i:i + 4096].double() ** 2).sum()) for i in range(0, n, 4096))  # no float64 copy of the whole array
    scale = float(np.sqrt(d * n / sq))
    sae = (DenseTopKSAE if kind == "plain" else TopKSAE)(d, n_atoms, k, seed=0)
    with torch.no_grad():
        sae.b_dec.copy_(a.mean(0) * scale)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    seconds = {"scale": time.perf_counter() - t}
    t_train = time.perf_counter()
    for epoch in range(epochs):
        order = torch.randperm(n, generator=g)
        for b in range(0, n, batch):
            x = a[order[b:b + batch]] * scale
            x_hat, _, _ = sae(x)
            loss = ((x_hat - x) ** 2).sum(dim=1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sae.normalise_decoder()
    seconds["train"] = time.perf_counter() - t_train
    took = time.perf_counter() - t
time.sleep(0.05)
print(json.dumps({"seconds": took, "passes": seconds, "peak_anon_bytes": peak[0], "base_anon_bytes": base}))
"""


def timing(args):
    n, d = args.n, args.d
    n_atoms, k, epochs, batch = 8 * d, 32, args.timing_epochs, 1024
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        acts = np.maximum(rng.normal(size=(n, d)).astype(np.float32), 0)
        store = cv.ActivationStore.create(Path(tmp) / "store", acts, examples=None, metadata={"model": {"name": "random"}})
        np.save(Path(tmp) / "store" / "acts.npy", acts)
        del acts
        block = args.block_rows
        print(f"\n## TopK SAE timing: {n} x {d} float32 ({n * d * 4 / 2**20:.0f} MiB), {n_atoms} atoms, k={k}, batch {batch}, "
              f"{epochs} epoch(s), block {block} rows ({block * d * 4 / 2**20:.0f} MiB); torch threads {os.environ['OMP_NUM_THREADS']}")
        out = {}
        for kind in ("plain", "plain_sparse", "ours"):
            r = subprocess.run([sys.executable, "-c", CHILD, kind, str(store.path), str(n_atoms), str(k), str(epochs), str(batch), str(block)],
                               capture_output=True, text=True, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            if r.returncode:
                raise SystemExit(r.stderr)
            out[kind] = json.loads(r.stdout.strip().splitlines()[-1])
        labels = {"plain": "plain loop, textbook dense TopK SAE", "plain_sparse": "plain loop, conceptvec's TopKSAE module",
                  "ours": "cv.fit_dictionary (blocks of the store)"}
        for kind, label in labels.items():
            o = out[kind]
            o["extra"] = o["peak_anon_bytes"] - o["base_anon_bytes"]
            passes = ", ".join(f"{name} {sec:.1f} s" for name, sec in o["passes"].items())
            print(f"{label:40s} training {o['passes']['train'] / epochs:6.1f} s/epoch; all {o['seconds']:6.1f} s ({passes}); "
                  f"peak anonymous memory {o['peak_anon_bytes'] / 2**20:5.0f} MiB, {o['extra'] / 2**20:5.0f} MiB above the process after imports")
        for kind in ("plain", "plain_sparse"):
            train = out[kind]["passes"]["train"] / out["ours"]["passes"]["train"]
            ratio = out[kind]["seconds"] / out["ours"]["seconds"]
            print(f"{labels[kind]} / ours time: training passes {train:.2f}; everything {ratio:.2f} (ours with its quality pass over "
                  f"every row, which the plain loop does not make); memory above imports ours / plain: "
                  f"{out['ours']['extra'] / out[kind]['extra']:.2f}")
        per = out["ours"]["passes"]["train"] / epochs
        scale = (128_000 / n) * (2048 / d) ** 2  # FLOPs per epoch grow with n x d x atoms, atoms = 8 d
        print(f"extrapolated to 128,000 x 2,048 (16,384 atoms), by FLOPs: about {per * scale / 60:.0f} min/epoch on this machine; "
              f"memory: block of {block} x 2048 float32 = {block * 2048 * 4 / 2**20:.0f} MiB plus the model "
              f"(4 x 2 x 2048 x 16384 floats with Adam's moments = {16 * 2048 * 16384 * 4 / 2**30:.1f} GiB)")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("parts", nargs="*", default=["planted", "digits", "timing"])
    parser.add_argument("--n", type=int, default=16000)
    parser.add_argument("--d", type=int, default=256)
    parser.add_argument("--block-rows", type=int, default=4096)
    parser.add_argument("--timing-epochs", type=int, default=1)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--method", default="topk_sae", help="digits: the dictionary's method")
    parser.add_argument("--lr", type=float, default=1e-3, help="digits: the SAE's learning rate")
    parser.add_argument("--text-factor", type=int, default=2)
    parser.add_argument("--text-neurons", type=int, default=300)
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    for part in args.parts:
        {"planted": planted, "digits": digits, "minilm": minilm, "timing": timing}[part](args)


if __name__ == "__main__":
    main()
