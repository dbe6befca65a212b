"""Text corpora: formats, stable ids, labels, per-class sampling, bad rows skipped and listed, bad options refused."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import conceptvec as cv
from conceptvec.errors import ConceptvecError
from conceptvec.extraction.config import ExtractConfig
from conceptvec.sources.text import read_corpus
from conceptvec.extraction.textrun import length_batches, pad_batch

ROWS = [("the cat sat", "animals"), ("stocks fell", "money"), ("a dog ran", "animals"), ("rates rose", "money"), ("", "money")]


def test_txt_lines_skip_empty_and_non_utf8_rows_and_list_them(tmp_path):
    path = tmp_path / "c.txt"
    path.write_bytes(b"first line\n\n   \nbad \xff byte\nlast line\r\n")
    corpus = read_corpus(path)
    assert corpus.texts == ["first line", "last line"] and corpus.ids == ["c.txt:1", "c.txt:5"]
    assert corpus.skipped == [{"id": "c.txt:2", "reason": "empty"}, {"id": "c.txt:3", "reason": "empty"},
                              {"id": "c.txt:4", "reason": "not UTF-8 (byte 4)"}]
    assert corpus.labels == [-1, -1] and corpus.describe()["skipped_rows"]["count"] == 3


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", "dataset"])
def test_tables_read_text_and_label_columns(tmp_path, suffix):
    path = _table(tmp_path, suffix)
    corpus = read_corpus(path, text_column="body", label_column="topic")
    assert corpus.texts == [t for t, _ in ROWS[:4]]
    assert corpus.classes == ["animals", "money"] and corpus.labels == [0, 1, 0, 1]
    name = path.name
    assert corpus.ids == [f"{name}:{i}" for i in (1, 2, 3, 4)] and corpus.skipped == [{"id": f"{name}:5", "reason": "empty"}]
    sampled = read_corpus(path, text_column="body", label_column="topic", per_class=1, seed=0)
    assert sorted(sampled.labels) == [0, 1] and set(sampled.ids) <= set(corpus.ids)
    with pytest.raises(ConceptvecError, match="name the column holding the text with --text-column.*body"):
        read_corpus(path)
    if suffix != ".jsonl":
        with pytest.raises(ConceptvecError, match=r"no column 'topik' for --label-column; its columns are body, topic"):
            read_corpus(path, text_column="body", label_column="topik")


def _table(tmp_path, suffix):
    if suffix == ".jsonl":
        path = tmp_path / "c.jsonl"
        path.write_text("".join(json.dumps({"body": t, "topic": label}) + "\n" for t, label in ROWS))
    elif suffix == ".csv":
        path = tmp_path / "c.csv"
        path.write_text("body,topic\n" + "".join(f'"{t}",{label}\n' for t, label in ROWS))
    else:
        table = pa.table({"body": [t for t, _ in ROWS], "topic": [label for _, label in ROWS]})
        if suffix == ".parquet":
            path = tmp_path / "c.parquet"
            pq.write_table(table, path)
        else:  # the layout of datasets' Dataset.save_to_disk: Arrow stream files named in state.json
            path = tmp_path / "saved"
            path.mkdir()
            with pa.OSFile(str(path / "data-00000-of-00001.arrow"), "wb") as f, pa.ipc.new_stream(f, table.schema) as w:
                w.write_table(table)
            (path / "state.json").write_text(json.dumps({"_data_files": [{"filename": "data-00000-of-00001.arrow"}]}))
            (path / "dataset_info.json").write_text("{}")
    return path


def test_jsonl_rows_that_do_not_parse_are_skipped(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "ok"}\n{not json\n[1, 2]\n{"text": 7}\n{"other": "x"}\n\n{"text": "\xff"}\n')
    corpus = read_corpus(path, text_column="text")
    assert corpus.texts == ["ok"]
    assert [s["reason"] for s in corpus.skipped] == ["not a line of JSON (JSONDecodeError)", "not a JSON object (list)",
                                                     "not text (int)", "no text (missing value)", "empty",
                                                     "not a line of JSON (UnicodeDecodeError)"]
    with pytest.raises(ConceptvecError, match=r"no row of .* has the key 'body'.*keys text"):
        read_corpus(path, text_column="body")


def test_a_folder_of_txt_files_is_labelled_by_sub_folder(tmp_path):
    for label, name, text in (("news", "a.txt", "stocks fell"), ("news", "b.txt", "rates rose"), ("pets", "c.txt", "a cat"),
                              ("pets", "empty.txt", "")):
        (tmp_path / "d" / label).mkdir(parents=True, exist_ok=True)
        (tmp_path / "d" / label / name).write_text(text)
    corpus = read_corpus(tmp_path / "d")
    assert corpus.ids == ["news/a.txt", "news/b.txt", "pets/c.txt"] and corpus.label_names == ["news", "news", "pets"]
    assert corpus.skipped == [{"id": "pets/empty.txt", "reason": "empty"}]
    (tmp_path / "d" / "loose.txt").write_text("x")
    with pytest.raises(ConceptvecError, match="mixes class sub-folders with loose .txt files"):
        read_corpus(tmp_path / "d")


def test_bad_corpora_are_refused_with_the_fix(tmp_path):
    with pytest.raises(ConceptvecError, match="does not exist"):
        read_corpus(tmp_path / "missing.txt")
    (tmp_path / "blank.txt").write_text("\n\n")
    with pytest.raises(ConceptvecError, match="no readable, non-empty document.*empty"):
        read_corpus(tmp_path / "blank.txt")
    (tmp_path / "c.txt").write_text("a\nb\n")
    with pytest.raises(ConceptvecError, match="--per-class needs labels"):
        read_corpus(tmp_path / "c.txt", per_class=2)
    with pytest.raises(ConceptvecError, match="no columns; leave out --text-column"):
        read_corpus(tmp_path / "c.txt", text_column="text")
    (tmp_path / "c.tsv").write_text("a\tb\n")
    with pytest.raises(ConceptvecError, match=r"a \.txt, \.jsonl, \.csv or \.parquet file"):
        read_corpus(tmp_path / "c.tsv", text_column="a")
    (tmp_path / "dd").mkdir()
    (tmp_path / "dd" / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    with pytest.raises(ConceptvecError, match="DatasetDict; give one split's folder"):
        read_corpus(tmp_path / "dd")


def test_very_long_lines_are_truncated_and_counted(tmp_path, tiny_bert):
    path = tmp_path / "c.txt"
    path.write_bytes(b"short one\n" + b"the cat sat " * 20000 + b"\n\xfe\xfe\n")
    store = cv.extract(model=f"hf:{tiny_bert}", layer="encoder.layer.0", data=path, out=tmp_path / "s", max_tokens=16,
                       examples="tokens", progress=False)
    data = store.metadata["data"]
    assert data["truncated"] == 1 and data["n_documents"] == 2 and store.metadata["skipped"]["sources"] == ["c.txt:3"]
    assert data["skipped_rows"]["rows"] == [{"id": "c.txt:3", "reason": "not UTF-8 (byte 0)"}]
    positions = store.examples.column("position").to_numpy()
    assert positions.max() == 14  # 16 tokens with [CLS] and [SEP]: the real ones at positions 1-14


def test_batches_by_length_pad_little_and_keep_positions():
    lengths = np.array([3, 9, 4, 8, 2, 9])
    batches = length_batches(lengths, batch_size=3, batch_tokens=None)
    assert batches == [[1, 5, 3], [2, 0, 4]]
    assert length_batches(lengths, batch_size=3, batch_tokens=18) == [[1, 5], [3, 2], [0, 4]]
    ids, mask, pos = pad_batch([np.array([5, 6, 7]), np.array([8])], pad_id=0, side="left")
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]] and pos[1, 2] == 0


@pytest.mark.parametrize("options,match", [
    ({"examples": "words"}, r"examples must be one of documents, tokens \(--examples\)"),
    ({"max_tokens": 0}, "max_tokens must be >= 1"),
    ({"batch_tokens": 2.5}, "batch_tokens must be a whole number"),
    ({"examples": "tokens", "pool": "max"}, "--pool max pools a document's tokens"),
    ({"text_column": " "}, "--text-column NAME"),
    ({"label_column": 3}, "--label-column NAME"),
    ({"keep_special_tokens": "yes"}, "keep_special_tokens must be True or False"),
])
def test_text_options_refuse_bad_values(options, match):
    with pytest.raises(ConceptvecError, match=match):
        ExtractConfig(**options)


def test_text_options_are_refused_for_image_models_and_image_options_for_language_models(tmp_path, corpus, tiny_bert):
    with pytest.raises(ConceptvecError, match="examples apply to language models"):
        cv.extract(model="digits", layer="block3", data="digits", out=tmp_path / "d", examples="tokens", progress=False)
    with pytest.raises(ConceptvecError, match="--size set an image model's preprocessing"):
        cv.extract(model=f"hf:{tiny_bert}", layer="encoder.layer.0", data=corpus, out=tmp_path / "t", size=224, progress=False)
    with pytest.raises(ConceptvecError, match="reads a text corpus from a path"):
        cv.extract(model=f"hf:{tiny_bert}", layer="encoder.layer.0", data=[1, 2], out=tmp_path / "t", progress=False)
    with pytest.raises(ConceptvecError, match=r"not one vector per token"):
        cv.extract(model=f"hf:{tiny_bert}", layer="pooler", data=corpus, out=tmp_path / "t", progress=False)
