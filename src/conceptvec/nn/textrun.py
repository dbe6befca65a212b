"""A language model over a corpus: the tokenised plan of rows and chunks, batches by length, and the forward to the layer.

Notation: a document of T tokens (special ones included, at most ``max_tokens``); the layer's output for a
batch is (B, T_max, D). *Counted* tokens are the document's real tokens, less the special ones (BOS, EOS,
CLS, SEP, pad) unless ``keep_special_tokens``. ``documents`` examples pool the counted tokens' outputs
into one row (masked mean by default); ``tokens`` examples are one row per counted token.

Every document is tokenised before the first forward, so the rows, their chunks (whole documents, about
``chunk_size`` rows each) and each chunk's batches are fixed by the corpus and the options alone: a run
resumed after ``kill -9`` computes the very batches of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConceptvecError
from ..progress import progress_bar
from .hooks import StopForward, stop_at_layer
from .language import TextModel
from .models import find_layer
from .text import TextCorpus

TOKENIZE_BLOCK = 1024  # documents per tokenizer call
CHARS_PER_TOKEN = 64  # a document is cut to max_tokens * 64 characters before tokenising: a very long line costs no more than that


@dataclass
class TextPlan:
    """The rows an extraction will write: ``examples`` (one entry per row), ``documents`` and ``chunks``.

    ``chunks`` are ``(index, row_start, row_stop, doc_start, doc_stop)``; ``ids[d]`` the token ids of
    document d and ``counted[d]`` which of them make or enter its rows.
    """

    examples: dict[str, list]
    documents: dict[str, list]
    ids: list[np.ndarray]
    counted: list[np.ndarray]
    chunks: list[tuple[int, int, int, int, int]]
    describe: dict[str, Any]

    @property
    def n_rows(self) -> int:
        return len(self.examples["id"])

    def digest(self) -> str:
        """What identifies the rows: the documents' ids and labels (the tokens follow from them, the tokenizer and the options)."""
        import hashlib

        h = hashlib.sha256()
        for i, label in zip(self.documents["id"], self.documents["label"]):
            h.update(f"{i}\t{label}\n".encode())
        return h.hexdigest()


def plan_text(model: TextModel, corpus: TextCorpus, *, examples: str, max_tokens: int, keep_special_tokens: bool,
              chunk_size: int) -> TextPlan:
    """Tokenise ``corpus`` and lay out its rows and chunks; documents with no counted token are skipped and listed."""
    tok = model.tokenizer
    fast = bool(getattr(tok, "is_fast", False))
    if examples == "tokens" and not fast:
        raise ConceptvecError(f"--examples tokens needs a fast tokenizer (it maps tokens to character spans); {type(tok).__name__} is "
                              f"not one. Save the folder with a tokenizer.json, or use --examples documents.")
    special = np.asarray(sorted(set(tok.all_special_ids)), dtype=np.int64)
    ids, offsets, counted, kept, skipped, truncated = [], [], [], [], list(corpus.skipped), 0
    for b in range(0, len(corpus), TOKENIZE_BLOCK):
        texts = [t[: max_tokens * CHARS_PER_TOKEN] for t in corpus.texts[b:b + TOKENIZE_BLOCK]]
        enc = tok(texts, truncation=True, max_length=max_tokens, return_offsets_mapping=fast, return_attention_mask=False,
                  return_token_type_ids=False)
        for j, doc_ids in enumerate(enc["input_ids"]):
            d = b + j
            doc_ids = np.asarray(doc_ids, dtype=np.int64)
            keep = np.ones(len(doc_ids), bool) if keep_special_tokens else ~np.isin(doc_ids, special)
            if not keep.any():
                skipped.append({"id": corpus.ids[d], "reason": "no token but special ones"})
                continue
            spans = np.asarray(enc["offset_mapping"][j], dtype=np.int64).reshape(-1, 2) if fast else None
            if len(doc_ids) >= max_tokens and (spans is None or spans[:, 1].max() < len(corpus.texts[d].rstrip())):
                truncated += 1
            ids.append(doc_ids)
            offsets.append(spans)
            counted.append(keep)
            kept.append(d)
    if not kept:
        raise ConceptvecError("no document of the corpus has a token that is not a special token; check the corpus and the tokenizer.")
    labels = [corpus.labels[d] for d in kept]
    all_names = corpus.label_names  # a property that builds the list: once, not once per document
    names = [all_names[d] for d in kept]
    documents = {"id": [corpus.ids[d] for d in kept], "label": labels, "label_name": names,
                 "text": [corpus.texts[d] for d in kept], "n_tokens": [int(len(i)) for i in ids]}
    if examples == "documents":
        rows = {"id": documents["id"], "label": labels, "label_name": names, "source": documents["id"], "text": documents["text"]}
        bounds = [(s, min(s + chunk_size, len(kept))) for s in range(0, len(kept), chunk_size)]
        chunks = [(k, s, e, s, e) for k, (s, e) in enumerate(bounds)]
    else:
        rows, chunks = _token_rows(tok, documents, ids, offsets, counted, chunk_size)
    describe = {**corpus.describe(), "n_documents": len(kept), "examples": examples, "n_rows": len(rows["id"]),
                "n_tokens": int(sum(len(i) for i in ids)), "truncated": truncated,
                "skipped_rows": {"count": len(skipped), "rows": skipped[:1000]}}
    return TextPlan(rows, documents, ids, counted, chunks, describe)


def _token_rows(tok: Any, documents: dict[str, list], ids: list[np.ndarray], offsets: list[np.ndarray],
                counted: list[np.ndarray], chunk_size: int):
    """The example index of one row per counted token, as arrays (no Python object per token), and the chunks."""
    import pyarrow as pa
    import pyarrow.compute as pc

    positions = [np.flatnonzero(keep) for keep in counted]
    per_doc = np.asarray([len(p) for p in positions])
    document = np.repeat(np.arange(len(ids)), per_doc)
    position = np.concatenate(positions)
    token_id = np.concatenate([i[p] for i, p in zip(ids, positions)])
    spans = np.concatenate([o[p] for o, p in zip(offsets, positions)])
    doc_ids = pa.array(documents["id"], type=pa.string())
    take = pa.array(document)
    vocab = np.unique(token_id)
    strings = pa.array(tok.convert_ids_to_tokens(vocab.tolist()), type=pa.string())
    cols = {
        "id": pc.binary_join_element_wise(doc_ids.take(take), pa.array(position).cast(pa.string()), "#"),
        "label": pa.array(documents["label"], type=pa.int64()).take(take),
        "label_name": pa.array(documents["label_name"], type=pa.string()).take(take),
        "source": doc_ids.take(take), "document": take, "position": pa.array(position), "token_id": pa.array(token_id),
        "token": strings.take(pa.array(np.searchsorted(vocab, token_id))), "start": pa.array(spans[:, 0]), "end": pa.array(spans[:, 1]),
    }
    chunks, row, chunk_row, chunk_doc = [], 0, 0, 0
    for d, count in enumerate(per_doc.tolist()):
        row += count
        if row - chunk_row >= chunk_size or d == len(ids) - 1:
            chunks.append((len(chunks), chunk_row, row, chunk_doc, d + 1))
            chunk_row, chunk_doc = row, d + 1
    return cols, chunks


def length_batches(lengths: np.ndarray, batch_size: int, batch_tokens: int | None) -> list[list[int]]:
    """Indices of ``lengths`` in batches of similar length, longest first: at most ``batch_size`` documents and
    ``batch_tokens`` padded tokens each (a longer document goes alone)."""
    order = np.argsort(-np.asarray(lengths), kind="stable").tolist()
    batches: list[list[int]] = []
    for i in order:
        if batches:
            last = batches[-1]
            width = int(lengths[last[0]])  # the longest of a batch is its first
            if len(last) < batch_size and (batch_tokens is None or (len(last) + 1) * width <= batch_tokens):
                last.append(i)
                continue
        batches.append([i])
    return batches


def pad_batch(seqs: list[np.ndarray], pad_id: int, side: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask, position_ids), each (B, T_max), padded on ``side``; positions count real tokens only."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, s in enumerate(seqs):
        at = slice(width - len(s), width) if side == "left" else slice(0, len(s))
        ids[b, at] = torch.from_numpy(s)
        mask[b, at] = 1
    # Left padding would shift absolute positions: each token's position is the number of real tokens before it.
    positions = (mask.cumsum(1) - 1).clamp(min=0)
    return ids, mask, positions


POOLED = {
    "avg": lambda h: h.mean(dim=0, keepdim=True),
    "max": lambda h: h.amax(dim=0, keepdim=True),
}


def run_text_chunks(model: TextModel, layer: str, plan: TextPlan, todo, writer, *, examples: str, pool: str, dev: torch.device,
                    batch_size: int, batch_tokens: int | None, use_autocast: bool, progress: bool, finished: int) -> None:
    """Run ``model`` to ``layer`` over the documents of the chunks ``todo`` and write each complete chunk of rows."""
    module = model.module.to(dev)
    tok = model.tokenizer
    pad_id = next((i for i in (tok.pad_token_id, tok.eos_token_id, 0) if i is not None))
    side = tok.padding_side if tok.padding_side in ("left", "right") else "right"
    accepted = inspect.signature(module.forward).parameters
    extra = {"use_cache": False} if "use_cache" in accepted else {}
    amp = torch.autocast("cuda", dtype=torch.float16) if use_autocast else contextlib.nullcontext()
    lengths = np.asarray([len(i) for i in plan.ids])
    with stop_at_layer(find_layer(module, layer), lambda out: out.detach()) as captured, torch.inference_mode(), amp, \
            progress_bar("rows", disable=not progress) as bar:
        task = bar.add_task(f"extract {layer}", total=plan.n_rows, completed=finished)
        for index, row_start, row_stop, d0, d1 in todo:
            out_rows: dict[int, torch.Tensor] = {}
            for batch in length_batches(lengths[d0:d1], batch_size, batch_tokens):
                docs = [d0 + i for i in batch]
                ids, mask, positions = pad_batch([plan.ids[d] for d in docs], pad_id, side)
                inputs = {"input_ids": ids.to(dev), "attention_mask": mask.to(dev), **extra}
                if "position_ids" in accepted:
                    inputs["position_ids"] = positions.to(dev)
                try:
                    module(**inputs)
                except StopForward:
                    pass
                if "output" not in captured:
                    raise ConceptvecError(f"the forward pass finished without reaching layer {layer!r}; is it used by forward()?")
                hidden = captured.pop("output")
                if hidden.ndim != 3 or tuple(hidden.shape[:2]) != tuple(ids.shape):
                    raise ConceptvecError(f"layer {layer!r} gives outputs of shape {tuple(hidden.shape)}, not one vector per token "
                                          f"({tuple(ids.shape)} x units); choose a layer whose output is (batch, tokens, units).")
                width = ids.shape[1]
                for b, d in enumerate(docs):
                    n = len(plan.ids[d])
                    start = width - n if side == "left" else 0
                    h = hidden[b, start:start + n].float()[torch.from_numpy(plan.counted[d]).to(hidden.device)]
                    if examples == "tokens":
                        out_rows[d] = h
                    elif pool == "cls":
                        out_rows[d] = hidden[b, start:start + 1].float()
                    else:
                        out_rows[d] = POOLED[pool](h)
            rows = torch.cat([out_rows[d] for d in range(d0, d1)]).cpu().numpy()
            writer.write_chunk(index, row_start, row_stop, rows)
            bar.advance(task, row_stop - row_start)
