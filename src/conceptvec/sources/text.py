"""Text corpora: documents with stable ids and labels, read from local files; no torch, no tokenizer.

A corpus is one of:

- a ``.txt`` file: one document a line (id ``FILE:LINE``, lines counted from 1);
- a ``.jsonl``, ``.csv`` or ``.parquet`` file with the text in ``text_column`` (id ``FILE:ROW``, rows from 1);
- a folder of ``.txt`` files: one document a file (id: the path relative to the folder), labelled by
  the sub-folder they are in when there are sub-folders;
- a Hugging Face ``datasets`` folder written by ``Dataset.save_to_disk`` (its Arrow files are read
  with pyarrow: the ``datasets`` package is not needed; id ``DIR:ROW``).

Labels come from ``label_column`` (any values; their sorted distinct strings are the classes) or from the
folder names. Empty documents, and rows that cannot be read (bytes that are not UTF-8, a missing or
non-text value, a line of JSON that does not parse), are skipped and listed with the reason, never fatal.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from ..errors import ConceptvecError

TABLE_SUFFIXES = (".jsonl", ".csv", ".parquet")
TEXT_SUFFIXES = (".txt", *TABLE_SUFFIXES)
DATASET_MARKERS = ("state.json", "dataset_info.json")
MAX_SKIPPED_LISTED = 1000  # the metadata lists this many skipped rows by id; the count covers them all


@dataclass
class TextCorpus:
    """Documents in a stable order with ids, labels (-1 when none) and the rows that were skipped.

    ``sources`` say where each document was read (file and row); ``skipped`` holds
    ``{"id", "reason"}`` for every row left out.
    """

    root: Path
    texts: list[str]
    ids: list[str]
    labels: list[int]
    classes: list[str]
    layout: str
    text_column: str | None = None
    label_column: str | None = None
    per_class: int | None = None
    seed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def label_names(self) -> list[str]:
        return [self.classes[c] if c >= 0 else "" for c in self.labels]

    def describe(self) -> dict[str, Any]:
        """What the corpus was, for the store's metadata."""
        return {
            "kind": "text", "root": str(self.root.resolve()), "layout": self.layout, "n_documents": len(self.texts),
            "n_classes": len(self.classes), "text_column": self.text_column, "label_column": self.label_column,
            "per_class": self.per_class, "seed": self.seed,
            "skipped_rows": {"count": len(self.skipped), "rows": self.skipped[:MAX_SKIPPED_LISTED]},
        }


def read_corpus(data: str | os.PathLike[str], *, text_column: str | None = None, label_column: str | None = None,
                per_class: int | None = None, seed: int = 0) -> TextCorpus:
    """Read the documents of ``data`` (see the module docstring); ``per_class`` samples that many per label with ``seed``."""
    from .images import sample_per_class

    path = Path(data)
    if not path.exists():
        raise ConceptvecError(f"data path {path} does not exist; give a .txt file (one document a line), a .jsonl/.csv/.parquet "
                              f"file with --text-column, a folder of .txt files, or a folder written by Dataset.save_to_disk.")
    if path.is_dir() and (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
        raise ConceptvecError(f"{path} is a DatasetDict; give one split's folder, e.g. {path / (splits[0] if splits else 'train')}.")
    if path.is_dir() and not any((path / m).exists() for m in DATASET_MARKERS):
        if text_column is not None or label_column is not None:
            raise ConceptvecError(f"--text-column and --label-column name columns of a table; {path} is a folder of .txt files "
                                  f"(one document a file, labelled by sub-folder). Leave them out.")
        corpus = _txt_folder(path)
    elif path.is_file() and path.suffix.lower() == ".txt":
        if text_column is not None or label_column is not None:
            raise ConceptvecError(f"{path} is plain text (one document a line) with no columns; leave out --text-column and "
                                  f"--label-column, or give a .jsonl/.csv/.parquet file.")
        corpus = _txt_lines(path)
    else:
        corpus = _table(path, text_column, label_column)
    if not corpus.texts:
        reasons = sorted({s["reason"] for s in corpus.skipped})
        raise ConceptvecError(f"{path} holds no readable, non-empty document" + (f" ({'; '.join(reasons)})" if reasons else "") + ".")
    if per_class is not None:
        if not corpus.classes:
            raise ConceptvecError(f"--per-class needs labels; {path} has none. Give --label-column, or a folder with one "
                                  f"sub-folder of .txt files per class.")
        keep = sample_per_class(corpus.labels, per_class, seed)
        corpus.texts, corpus.ids, corpus.labels = ([corpus.texts[i] for i in keep], [corpus.ids[i] for i in keep],
                                                   [corpus.labels[i] for i in keep])
        corpus.per_class, corpus.seed = per_class, seed
    return corpus


def _txt_lines(path: Path) -> TextCorpus:
    texts: list[str] = []
    ids: list[str] = []
    skipped: list[dict[str, str]] = []
    with open(path, "rb") as f:
        if b"\x00" in f.read(1 << 16):  # text has no NUL byte; an executable, image or archive does
            raise ConceptvecError(f"{path} is a binary file (it holds NUL bytes), not text; give a .txt file of one "
                                  f"document a line.")
        f.seek(0)
        for number, raw in enumerate(f, start=1):
            doc_id = f"{path.name}:{number}"
            _keep(raw.rstrip(b"\r\n"), doc_id, texts, ids, skipped)
    return TextCorpus(path.parent, texts, ids, [-1] * len(texts), [], "lines", skipped=skipped)


def _keep(raw: bytes | str | None, doc_id: str, texts: list[str], ids: list[str], skipped: list[dict[str, str]]) -> bool:
    """Append a readable, non-empty document; otherwise record why it was skipped."""
    if raw is None:
        skipped.append({"id": doc_id, "reason": "no text (missing value)"})
        return False
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            skipped.append({"id": doc_id, "reason": f"not UTF-8 (byte {exc.start})"})
            return False
    if not isinstance(raw, str):
        skipped.append({"id": doc_id, "reason": f"not text ({type(raw).__name__})"})
        return False
    if "\x00" in raw:
        skipped.append({"id": doc_id, "reason": "binary data (a NUL byte)"})
        return False
    if not raw.strip():
        skipped.append({"id": doc_id, "reason": "empty"})
        return False
    texts.append(raw)
    ids.append(doc_id)
    return True


def _txt_folder(path: Path) -> TextCorpus:
    files = sorted(p for p in path.rglob("*.txt") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts))
    if not files:
        raise ConceptvecError(f"no .txt files under {path}; give a folder of .txt files (one document a file).")
    classes = sorted({p.relative_to(path).parts[0] for p in files if len(p.relative_to(path).parts) > 1})
    loose = [p for p in files if len(p.relative_to(path).parts) == 1]
    if classes and loose:
        raise ConceptvecError(f"{path} mixes class sub-folders with loose .txt files (e.g. {loose[0].name}); move them into a "
                              f"sub-folder, or give a folder with no sub-folders.")
    texts: list[str] = []
    ids: list[str] = []
    labels: list[int] = []
    skipped: list[dict[str, str]] = []
    for p in files:
        rel = p.relative_to(path)
        if _keep(p.read_bytes(), rel.as_posix(), texts, ids, skipped) and classes:
            labels.append(classes.index(rel.parts[0]))
    return TextCorpus(path, texts, ids, labels if classes else [-1] * len(texts), classes,
                      "class-folders" if classes else "files", skipped=skipped)


def _table(path: Path, text_column: str | None, label_column: str | None) -> TextCorpus:
    name = path.name
    rows = _rows(path, text_column, label_column)
    texts: list[str] = []
    ids: list[str] = []
    raw_labels: list[Any] = []
    skipped: list[dict[str, str]] = []
    for number, row in enumerate(rows, start=1):
        doc_id = f"{name}:{number}"
        if isinstance(row, str):  # a row that could not be parsed: the reason
            skipped.append({"id": doc_id, "reason": row})
            continue
        text, label = row
        if label_column is not None and label is None:
            skipped.append({"id": doc_id, "reason": f"no value in label column {label_column!r}"})
            continue
        if _keep(text, doc_id, texts, ids, skipped):
            raw_labels.append(label)
    if label_column is None:
        return TextCorpus(path.parent if path.is_file() else path, texts, ids, [-1] * len(texts), [], _layout(path),
                          text_column, skipped=skipped)
    classes = sorted({str(v) for v in raw_labels})
    index = {c: i for i, c in enumerate(classes)}
    return TextCorpus(path.parent if path.is_file() else path, texts, ids, [index[str(v)] for v in raw_labels], classes,
                      _layout(path), text_column, label_column, skipped=skipped)


def _layout(path: Path) -> str:
    return "hf-dataset" if path.is_dir() else path.suffix.lower().lstrip(".")


def _rows(path: Path, text_column: str | None, label_column: str | None) -> Iterator[Any]:
    """(text, label) per row, or a string saying why the row could not be read."""
    suffix = path.suffix.lower()
    if path.is_file() and suffix not in TABLE_SUFFIXES:
        raise ConceptvecError(f"{path}: a text corpus is a .txt, .jsonl, .csv or .parquet file, a folder of .txt files, or a "
                              f"saved Hugging Face dataset; got a {suffix or 'file without suffix'}.")
    if text_column is None:
        raise ConceptvecError(f"{path} is a table; name the column holding the text with --text-column (text_column=...)"
                              f"{_columns_hint(path)}.")
    if suffix == ".jsonl":
        return _jsonl_rows(path, text_column, label_column)
    table = _arrow_table(path)
    columns = table.column_names
    for option, column in (("--text-column", text_column), ("--label-column", label_column)):
        if column is not None and column not in columns:
            raise ConceptvecError(f"{path} has no column {column!r} for {option}; its columns are {', '.join(columns)}.")
    texts = table.column(text_column).to_pylist()
    labels = table.column(label_column).to_pylist() if label_column else [None] * len(texts)
    return iter(list(zip(texts, labels)))


def _columns_hint(path: Path) -> str:
    try:
        if path.suffix.lower() == ".jsonl":
            with open(path, "rb") as f:
                for line in f:
                    if line.strip():
                        return f"; the first row has keys {', '.join(json.loads(line))}"
            return ""
        return f"; its columns are {', '.join(_arrow_table(path).column_names)}"
    except Exception:  # noqa: BLE001 - only a hint
        return ""


def _jsonl_rows(path: Path, text_column: str, label_column: str | None) -> Iterator[Any]:
    seen_text = False
    with open(path, "rb") as f:
        for line in f:
            if not line.strip():
                yield "empty"
                continue
            try:
                row = json.loads(line)
            except (UnicodeDecodeError, ValueError) as exc:
                yield f"not a line of JSON ({type(exc).__name__})"
                continue
            if not isinstance(row, dict):
                yield f"not a JSON object ({type(row).__name__})"
                continue
            if text_column in row:
                seen_text = True
            yield row.get(text_column), (row.get(label_column) if label_column else None)
    if not seen_text:
        raise ConceptvecError(f"no row of {path} has the key {text_column!r} (--text-column){_columns_hint(path)}.")


def _arrow_table(path: Path):
    import pyarrow as pa

    try:
        if path.is_dir():
            return _saved_dataset(path)
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.read_table(path)
        import pyarrow.csv as pcsv

        # Every column as text: labels such as "007" keep their spelling, and no row fails on a type guess.
        names = pcsv.read_csv(path, read_options=pcsv.ReadOptions(block_size=1 << 20)).column_names
        return pcsv.read_csv(path, convert_options=pcsv.ConvertOptions(column_types={c: pa.string() for c in names},
                                                                      strings_can_be_null=False),
                             parse_options=pcsv.ParseOptions(newlines_in_values=True))
    except (pa.ArrowException, OSError) as exc:
        raise ConceptvecError(f"could not read {path} as a table ({str(exc).splitlines()[0]}); check that it is a valid "
                              f"{path.suffix.lstrip('.') or 'dataset'} file (UTF-8 for CSV).") from None


def _saved_dataset(path: Path):
    # Dataset.save_to_disk writes state.json naming its Arrow stream files, in order.
    import pyarrow as pa

    state_file = path / "state.json"
    if not state_file.exists():
        raise ConceptvecError(f"{path} looks like a Hugging Face dataset but has no state.json; save it with Dataset.save_to_disk.")
    files = [path / f["filename"] for f in json.loads(state_file.read_text()).get("_data_files", [])]
    if not files:
        raise ConceptvecError(f"{state_file} names no data files; save the dataset again with Dataset.save_to_disk.")
    tables = []
    for f in files:
        with pa.memory_map(str(f)) as source:
            tables.append(pa.ipc.open_stream(source).read_all())
    return pa.concat_tables(tables)
