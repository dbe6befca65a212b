"""A language model over a corpus: the plan of rows and chunks, batches by length, and the forward to the layer.

Notation: a document of T tokens (special ones included, at most ``max_tokens``); the layer's output for a
batch is (B, T_max, D). *Counted* tokens are the document's real tokens, less the special ones (BOS, EOS,
CLS, SEP, pad) unless ``keep_special_tokens``. ``documents`` examples pool the counted tokens' outputs
into one row (masked mean by default); ``tokens`` examples are one row per counted token.

The plan tokenises every document once and keeps only its counts, so the rows and their chunks (whole
documents, about ``chunk_size`` rows each) are fixed by the corpus and the options alone: a run resumed
after ``kill -9`` computes the very batches of an uninterrupted one. A chunk's documents are tokenised
again when it runs (the tokenizer is deterministic, and checked to be) and a store of token rows writes
each chunk's part of the example index beside its rows: memory holds the corpus's text and a few numbers
per document, never anything per token of the whole corpus.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..errors import ConceptvecError
from ..progress import progress_bar
from ..models.hooks import StopForward, stop_at_layer, stop_at_layers
from ..models.language import TextModel
from ..models.layers import find_layer
from .runner import autocast_context
from ..sources.text import TextCorpus

TOKENIZE_BLOCK = 1024  # documents per tokenizer call
CHARS_PER_TOKEN = 64  # a document is cut to max_tokens * 64 characters before tokenising: a very long line costs no more than that


@dataclass
class Tokenized:
    """The tokens of some documents: ``ids[j]`` the token ids of document j, ``counted[j]`` which of them make
    or enter its rows, ``spans[j]`` their (start, end) characters in the text (None without a fast tokenizer)."""

    ids: list[np.ndarray]
    counted: list[np.ndarray]
    spans: list[np.ndarray | None]


def check_max_tokens(loaded: TextModel, asked: int | None) -> int:
    """The tokens a document keeps at most: ``asked`` (--max-tokens), else the model's limit; refused when it leaves no
    room for text (the tokenizer never truncates below its own special tokens: the limit would be recorded, not applied)
    or exceeds the positions the model has (its forward would fail on the first long document, after the work)."""
    max_tokens = asked or loaded.max_tokens
    special = int(loaded.tokenizer.num_special_tokens_to_add()) if hasattr(loaded.tokenizer, "num_special_tokens_to_add") else 0
    if max_tokens <= special:
        raise ConceptvecError(f"--max-tokens {max_tokens} leaves no room for text: {loaded.name}'s tokenizer adds {special} "
                              f"special token(s) to every document; give --max-tokens {special + 1} or more.")
    config = getattr(loaded.module, "config", None)
    positions = [v for v in (getattr(config, k, None) for k in ("max_position_embeddings", "n_positions")) if isinstance(v, int) and v > 0]
    if asked is not None and positions and asked > min(positions):
        raise ConceptvecError(f"--max-tokens {asked} is more than {loaded.name} takes: it has {min(positions)} positions; give "
                              f"--max-tokens {min(positions)} or less, or leave it out for the model's limit.")
    return max_tokens


def tokenize(tok: Any, texts: list[str], *, max_tokens: int, keep_special_tokens: bool) -> Tokenized:
    """Tokenise ``texts`` as an extraction does: truncated to ``max_tokens``, special tokens not counted unless kept."""
    fast = bool(getattr(tok, "is_fast", False))
    special = np.asarray(sorted(set(tok.all_special_ids)), dtype=np.int64)
    out = Tokenized([], [], [])
    for b in range(0, len(texts), TOKENIZE_BLOCK):
        block = [t[: max_tokens * CHARS_PER_TOKEN] for t in texts[b:b + TOKENIZE_BLOCK]]
        enc = tok(block, truncation=True, max_length=max_tokens, return_offsets_mapping=fast, return_attention_mask=False,
                  return_token_type_ids=False)
        for j, doc_ids in enumerate(enc["input_ids"]):
            doc_ids = np.asarray(doc_ids, dtype=np.int64)
            out.ids.append(doc_ids)
            out.counted.append(np.ones(len(doc_ids), bool) if keep_special_tokens else ~np.isin(doc_ids, special))
            out.spans.append(np.asarray(enc["offset_mapping"][j], dtype=np.int64).reshape(-1, 2) if fast else None)
    return out


@dataclass
class TextPlan:
    """The rows an extraction will write.

    ``documents`` lists the kept documents (id, label, label_name, text, n_tokens); ``n_counted[d]`` is the
    number of counted tokens of document d; ``chunks`` are ``(index, row_start, row_stop, doc_start, doc_stop)``.
    ``examples`` is the example index of a store of documents; None for token rows, whose index each
    chunk writes (``token_index``).
    """

    examples: dict[str, list[Any]] | None
    documents: dict[str, list[Any]]
    n_counted: np.ndarray
    chunks: list[tuple[int, int, int, int, int]]
    describe: dict[str, Any]
    max_tokens: int
    keep_special_tokens: bool

    @property
    def n_rows(self) -> int:
        return self.chunks[-1][2]

    def digest(self) -> str:
        """What identifies the rows: the documents' ids, labels and texts (the tokens follow from them, the tokenizer and the
        options); a line edited without changing its number of tokens makes other rows."""
        import hashlib

        h = hashlib.sha256()
        for i, label, text in zip(self.documents["id"], self.documents["label"], self.documents["text"]):
            h.update(f"{i}\t{label}\t{len(text)}\n{text}\n".encode())
        return h.hexdigest()

    def tokenize_chunk(self, tok: Any, d0: int, d1: int) -> Tokenized:
        """The tokens of documents ``d0:d1``, checked against the plan's counts."""
        tokens = tokenize(tok, self.documents["text"][d0:d1], max_tokens=self.max_tokens, keep_special_tokens=self.keep_special_tokens)
        counts = np.asarray([int(c.sum()) for c in tokens.counted])
        if not np.array_equal(counts, self.n_counted[d0:d1]):
            raise ConceptvecError("the tokenizer gave different tokens for the same documents on a second call; conceptvec needs a "
                                  "deterministic tokenizer (a fast tokenizer from a tokenizer.json is).")
        return tokens


def plan_text(model: TextModel, corpus: TextCorpus, *, examples: str, max_tokens: int, keep_special_tokens: bool,
              chunk_size: int) -> TextPlan:
    """Tokenise ``corpus`` and lay out its rows and chunks; documents with no counted token are skipped and listed."""
    tok = model.tokenizer
    if examples == "tokens" and not getattr(tok, "is_fast", False):
        raise ConceptvecError(f"--examples tokens needs a fast tokenizer (it maps tokens to character spans); {type(tok).__name__} is "
                              f"not one. Save the folder with a tokenizer.json, or use --examples documents.")
    kept, n_tokens, n_counted, skipped, truncated = [], [], [], list(corpus.skipped), 0
    for b in range(0, len(corpus), TOKENIZE_BLOCK):
        block = tokenize(tok, corpus.texts[b:b + TOKENIZE_BLOCK], max_tokens=max_tokens, keep_special_tokens=keep_special_tokens)
        for j, (ids, keep, spans) in enumerate(zip(block.ids, block.counted, block.spans)):
            d = b + j
            if not keep.any():
                skipped.append({"id": corpus.ids[d], "reason": "no token but special ones"})
                continue
            if len(ids) >= max_tokens and (spans is None or spans[:, 1].max() < len(corpus.texts[d].rstrip())):
                truncated += 1
            kept.append(d)
            n_tokens.append(len(ids))
            n_counted.append(int(keep.sum()))
    if not kept:
        raise ConceptvecError("no document of the corpus has a token that is not a special token; check the corpus and the tokenizer.")
    labels = [corpus.labels[d] for d in kept]
    all_names = corpus.label_names  # a property that builds the list: once, not once per document
    names = [all_names[d] for d in kept]
    documents: dict[str, list[Any]] = {"id": [corpus.ids[d] for d in kept], "label": labels, "label_name": names,
                 "text": [corpus.texts[d] for d in kept], "n_tokens": n_tokens}
    counted = np.asarray(n_counted, dtype=np.int64)
    if examples == "documents":
        rows: dict[str, list[Any]] | None = {"id": documents["id"], "label": labels, "label_name": names, "source": documents["id"], "text": documents["text"]}
        bounds = [(s, min(s + chunk_size, len(kept))) for s in range(0, len(kept), chunk_size)]
        chunks = [(k, s, e, s, e) for k, (s, e) in enumerate(bounds)]
    else:
        rows, chunks = None, _token_chunks(counted, chunk_size)
    describe = {**corpus.describe(), "n_documents": len(kept), "examples": examples,
                "n_rows": len(kept) if examples == "documents" else int(counted.sum()),
                "n_tokens": int(sum(n_tokens)), "truncated": truncated,
                "skipped_rows": {"count": len(skipped), "rows": skipped[:1000]}}
    return TextPlan(rows, documents, counted, chunks, describe, max_tokens, keep_special_tokens)


def _token_chunks(per_doc: np.ndarray, chunk_size: int) -> list[tuple[int, int, int, int, int]]:
    """Chunks of whole documents of at least ``chunk_size`` token rows (the last one fewer)."""
    chunks: list[tuple[int, int, int, int, int]] = []
    row, chunk_row, chunk_doc = 0, 0, 0
    for d, count in enumerate(per_doc.tolist()):
        row += count
        if row - chunk_row >= chunk_size or d == len(per_doc) - 1:
            chunks.append((len(chunks), chunk_row, row, chunk_doc, d + 1))
            chunk_row, chunk_doc = row, d + 1
    return chunks


def token_index(tok: Any, plan: TextPlan, d0: int, tokens: Tokenized, *, first_document: int | None = None):
    """The example index of documents ``d0:d0 + len(tokens.ids)``'s token rows: a pyarrow Table, no Python object per token.

    ``document`` numbers them from ``first_document`` (default ``d0``: their place in the plan)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    positions = [np.flatnonzero(keep) for keep in tokens.counted]
    per_doc = np.asarray([len(p) for p in positions])
    local = np.repeat(np.arange(len(positions)), per_doc)
    position = np.concatenate(positions)
    token_id = np.concatenate([i[p] for i, p in zip(tokens.ids, positions)])
    known = [o for o in tokens.spans if o is not None]
    if len(known) != len(positions):  # extract checks this up front (--examples tokens)
        raise ConceptvecError(f"token rows need character spans, which only a fast tokenizer gives; {type(tok).__name__} gave none.")
    spans = np.concatenate([o[p] for o, p in zip(known, positions)])
    d1 = d0 + len(positions)
    take = pa.array(local)
    doc_ids = pa.array(plan.documents["id"][d0:d1], type=pa.string()).take(take)
    vocab = np.unique(token_id)
    strings = pa.array(tok.convert_ids_to_tokens(vocab.tolist()), type=pa.string())
    return pa.table({
        "id": pc.binary_join_element_wise(doc_ids, pa.array(position).cast(pa.string()), "#"),
        "label": pa.array(plan.documents["label"][d0:d1], type=pa.int64()).take(take),
        "label_name": pa.array(plan.documents["label_name"][d0:d1], type=pa.string()).take(take),
        "source": doc_ids, "document": pa.array(local + (d0 if first_document is None else first_document)), "position": pa.array(position), "token_id": pa.array(token_id),
        "token": strings.take(pa.array(np.searchsorted(vocab, token_id))), "start": pa.array(spans[:, 0]), "end": pa.array(spans[:, 1]),
    })


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


class TextForward:
    """``model`` run to ``layer`` on ``dev``: the rows of a chunk of documents, and for token rows its example index.

    The hook that stops the forward at the layer stays on the model until ``close``; the forward of each
    chunk, its batches (by length) and its pooling are those of a local run wherever it runs (here, or in
    a Ray actor with a plan of the chunk's documents alone).
    """

    def __init__(self, model: TextModel, layer: str | list[str], *, examples: str, pool: str, dev: torch.device, batch_size: int,
                 batch_tokens: int | None, use_autocast: bool, autocast_dtype: str = "float16", widths: list[int] | None = None):
        self.module, self.tok, self.layer, self.dev = model.module.to(dev), model.tokenizer, layer, dev
        self.examples, self.pool, self.batch_size, self.batch_tokens = examples, pool, batch_size, batch_tokens
        self.pad_id = next((i for i in (self.tok.pad_token_id, self.tok.eos_token_id, 0) if i is not None))
        self.side = self.tok.padding_side if self.tok.padding_side in ("left", "right") else "right"
        self.accepted = inspect.signature(self.module.forward).parameters
        self.extra = {"use_cache": False} if "use_cache" in self.accepted else {}
        self.amp = (use_autocast, autocast_dtype)
        self.widths: list[int] = [] if widths is None else widths  # several layers: each one's units, side by side in the rows (pooling is per unit)
        self._hook = (stop_at_layers([find_layer(self.module, name) for name in layer], lambda out: out.detach(), widths=self.widths)
                      if isinstance(layer, (list, tuple)) else stop_at_layer(find_layer(self.module, layer), lambda out: out.detach()))
        self.captured = self._hook.__enter__()

    def close(self) -> None:
        self._hook.__exit__(None, None, None)

    def chunk(self, plan: TextPlan, d0: int, d1: int, *, first_document: int | None = None):
        """(rows (n_rows, units) float32, the index Table of token rows or None) of documents ``d0:d1`` of ``plan``;
        ``first_document`` is d0's number in the whole corpus (default d0)."""
        tokens = plan.tokenize_chunk(self.tok, d0, d1)
        out_rows: dict[int, torch.Tensor] = {}
        with torch.inference_mode(), autocast_context(*self.amp):
            for batch in length_batches(np.asarray([len(i) for i in tokens.ids]), self.batch_size, self.batch_tokens):
                ids, mask, positions = pad_batch([tokens.ids[j] for j in batch], self.pad_id, self.side)
                hidden = self._forward(ids, mask, positions)
                width = ids.shape[1]
                for b, j in enumerate(batch):
                    n = len(tokens.ids[j])
                    start = width - n if self.side == "left" else 0
                    h = hidden[b, start:start + n].float()[torch.from_numpy(tokens.counted[j]).to(hidden.device)]
                    if self.examples == "tokens":
                        out_rows[j] = h
                    elif self.pool == "cls":
                        out_rows[j] = hidden[b, start:start + 1].float()
                    else:
                        out_rows[j] = POOLED[self.pool](h)
        rows = torch.cat([out_rows[j] for j in range(d1 - d0)]).cpu().numpy()
        index = token_index(self.tok, plan, d0, tokens, first_document=first_document) if self.examples == "tokens" else None
        return rows, index

    def _forward(self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        inputs = {"input_ids": ids.to(self.dev), "attention_mask": mask.to(self.dev), **self.extra}
        if "position_ids" in self.accepted:
            inputs["position_ids"] = positions.to(self.dev)
        try:
            self.module(**inputs)
        except StopForward:
            pass
        if "output" not in self.captured:
            raise ConceptvecError(f"the forward pass finished without reaching layer {self.layer!r}; is it used by forward()?")
        hidden = self.captured.pop("output")
        if hidden.ndim != 3 or tuple(hidden.shape[:2]) != tuple(ids.shape):
            raise ConceptvecError(f"layer {self.layer!r} gives outputs of shape {tuple(hidden.shape)}, not one vector per token "
                                  f"({tuple(ids.shape)} x units); choose a layer whose output is (batch, tokens, units).")
        return hidden


def run_text_chunks(model: TextModel, layer: str | list[str], plan: TextPlan, todo, writer, *, examples: str, pool: str,
                    dev: torch.device, batch_size: int, batch_tokens: int | None, use_autocast: bool, progress: bool, finished: int,
                    autocast_dtype: str = "float16", layer_widths: list[int] | None = None) -> None:
    """Run ``model`` to ``layer`` over the documents of the chunks ``todo`` and write each complete chunk of rows."""
    forward = TextForward(model, layer, examples=examples, pool=pool, dev=dev, batch_size=batch_size, batch_tokens=batch_tokens,
                          use_autocast=use_autocast, autocast_dtype=autocast_dtype, widths=layer_widths)
    try:
        with progress_bar("rows", disable=not progress) as bar:
            task = bar.add_task(f"extract {layer if isinstance(layer, str) else ', '.join(layer)}", total=plan.n_rows, completed=finished)
            for index, row_start, row_stop, d0, d1 in todo:
                rows, index_rows = forward.chunk(plan, d0, d1)
                writer.write_chunk(index, row_start, row_stop, rows, examples=index_rows)
                bar.advance(task, row_stop - row_start)
    finally:
        forward.close()
