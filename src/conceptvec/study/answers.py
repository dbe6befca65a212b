"""Participants' answers: the CSVs the form exports (``rater,question,answer``), checked against a study's key."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from ..errors import ConceptvecError
from .make import Study

CSV_COLUMNS = ("rater", "question", "answer")


@dataclass(frozen=True)
class Answer:
    """One row of an answer file."""

    rater: str
    question: str
    answer: str
    where: str  # file and row, for messages


def read_answers(paths: Sequence[str | os.PathLike[str]], *, study: Study) -> list[Answer]:
    """Rows of participants' CSVs (``rater,question,answer``), checked against the study's key.

    An agree answer is lower-cased; blank rows are skipped. A rater answering a question twice, in
    one file or across files, is an error.
    """
    if not paths:
        raise ConceptvecError("no answer files given; pass the CSVs exported from the form.")
    seen: dict[tuple[str, str], str] = {}
    rows: list[Answer] = []
    ids = list(study.key)
    shown_ids = f"{ids[0]}-{ids[-1]}" if len(ids) > 1 else ids[0]
    for path in map(Path, paths):
        if not path.exists():
            raise ConceptvecError(f"answer file {path} does not exist.")
        if path.is_dir():
            raise ConceptvecError(f"answer file {path} is a folder; give the CSV files exported from the form.")
        raw = path.read_bytes()
        if b"\x00" in raw:
            raise ConceptvecError(f"answer file {path} is not a text file; give the CSV exported from the form "
                                  f"(rater,question,answer).")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError:
            # A spreadsheet re-saved in Latin-1 (Windows-1252) is read as such, rather than refused.
            try:
                text = raw.decode("cp1252")
            except UnicodeDecodeError:
                raise ConceptvecError(f"answer file {path} is not UTF-8 text; save it as CSV (UTF-8) and score again.") from None
        if not text.strip():
            raise ConceptvecError(f"answer file {path} is empty; export it from the form (it starts with the row rater,question,answer).")
        try:  # csv's own errors (a field over its 128 KiB limit, a stray quote): the file's fault, said as such
            table = list(csv.reader(io.StringIO(text, newline="")))
        except csv.Error as exc:
            raise ConceptvecError(f"answer file {path} is not a CSV the form exports ({exc}); give the CSV exported from the "
                                  f"form (rater,question,answer).") from None
        reader = iter(table)
        header = [h.strip().lower() for h in next(reader)]
        if header[:3] != list(CSV_COLUMNS):
            raise ConceptvecError(f"{path}, row 1: expected the header rater,question,answer, got {','.join(header)!r}.")
        n_rows = 0
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{path}, row {line}"
            if len(row) < 3:
                raise ConceptvecError(f"{where}: expected 3 fields (rater,question,answer), got {len(row)}.")
            rater, question, answer = row[0].strip(), row[1].strip(), row[2].strip()
            if not rater:
                raise ConceptvecError(f"{where}: the rater is empty.")
            if question not in study.key:
                raise ConceptvecError(f"{where}: question {question!r} is not in study {study.study_id} (its questions are "
                                      f"{shown_ids}); were these answers given on another study's form?")
            if (rater, question) in seen:
                raise ConceptvecError(f"{where}: rater {rater!r} answers question {question} a second time (first at "
                                      f"{seen[rater, question]}); keep one row per rater and question.")
            entry = study.key[question]
            if entry["type"] == "agree":
                answer = answer.lower()
            if not answer:
                raise ConceptvecError(f"{where}: the answer is empty; leave unanswered questions out.")
            if entry["type"] != "label" and answer not in entry["options"]:
                raise ConceptvecError(f"{where}: answer {answer!r} is not an option of question {question} "
                                      f"({', '.join(entry['options'])}).")
            seen[rater, question] = where
            rows.append(Answer(rater, question, answer, where))
            n_rows += 1
        if n_rows == 0:
            raise ConceptvecError(f"answer file {path} has a header but no answers.")
    return rows
