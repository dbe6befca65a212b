"""Scoring a study: intruder accuracy and agreement with 95 % Wilson intervals, Fleiss' kappa, the free labels.

:func:`score_study` (``conceptvec study score``) reads participants' CSVs against the study's
key; :func:`write_scores` writes the numbers (scores.json) and their figure (scores.png).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from ..storage.atomic import atomic_directory, write_json
from ..storage.provenance import environment
from .answers import Answer, read_answers
from .make import Study
from .stats import fleiss_kappa, wilson_interval

if TYPE_CHECKING:
    from matplotlib.figure import Figure

SCORE_DIR = "scores"  # in the study folder, where `conceptvec study score` writes by default
SCORE_FILE = "scores.json"
SCORE_FIGURE = "scores.png"


@dataclass
class StudyScores:
    """The numbers of a scored study; ``to_dict()`` is what ``--json`` prints."""

    study_id: str
    raters: list[str]
    intruder: dict[str, Any]
    agree: dict[str, Any]
    labels: list[dict[str, Any]]
    fleiss_kappa: dict[str, Any]
    unanswered: dict[str, list[str]]

    @property
    def n_raters(self) -> int:
        return len(self.raters)

    @property
    def intruder_accuracy(self) -> float:
        return self.intruder["accuracy"]

    @property
    def agreement_rate(self) -> float:
        return self.agree["rate"]

    def to_dict(self) -> dict[str, Any]:
        """The numbers as plain JSON values; an undefined number (NaN) becomes None (null)."""
        return _json_ready({
            "study_id": self.study_id,
            "n_raters": self.n_raters,
            "raters": self.raters,
            "intruder_accuracy": self.intruder_accuracy,
            "intruder_ci95": self.intruder["ci95"],
            "intruder_chance": self.intruder["chance"],
            "intruder_answers": self.intruder["n"],
            "agreement_rate": self.agreement_rate,
            "agreement_ci95": self.agree["ci95"],
            "agreement_answers": self.agree["n"],
            "fleiss_kappa": self.fleiss_kappa,
            "intruder_questions": self.intruder["questions"],
            "agree_questions": self.agree["questions"],
            "labels": self.labels,
            "unanswered": self.unanswered,
        })

    def plot(self) -> Figure:
        """Intruder accuracy and label agreement per question, with 95 % Wilson intervals; a matplotlib Figure."""
        from matplotlib.figure import Figure

        panels = [(k, v) for k, v in (("intruder", self.intruder), ("agree", self.agree)) if v["questions"]]
        fig = Figure(figsize=(4.5 * max(1, len(panels)), 3.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(1, max(1, len(panels))))
        for ax, (kind, part) in zip(axes, panels):
            qs = list(part["questions"])
            values = np.array([part["questions"][q]["accuracy" if kind == "intruder" else "rate"] for q in qs], dtype=float)
            ci = np.array([part["questions"][q]["ci95"] for q in qs], dtype=float)
            x = np.arange(len(qs))
            err = np.vstack([values - ci[:, 0], ci[:, 1] - values])
            ax.bar(x, values, color="#4477aa" if kind == "intruder" else "#228833", width=0.7)
            ax.errorbar(x, values, yerr=np.nan_to_num(err), fmt="none", ecolor="#222222", capsize=3, lw=1)
            overall = part["accuracy" if kind == "intruder" else "rate"]
            lo, hi = part["ci95"]
            if kind == "intruder":
                chance = [part["questions"][q]["chance"] for q in qs]
                ax.hlines(chance, x - 0.4, x + 0.4, colors="#cc3311", linestyles="--", label="chance")
                ax.legend(loc="lower right", fontsize=8)
                ax.set_title(f"intruder found: {overall:.0%} [{lo:.0%}, {hi:.0%}]", fontsize=10)
            else:
                ax.set_title(f"agree with the given label: {overall:.0%} [{lo:.0%}, {hi:.0%}]", fontsize=10)
            ax.set_xticks(x, [f"{q}\n{part['questions'][q]['neuron']}:{part['questions'][q]['concept']}" for q in qs], fontsize=8)
            ax.set_xlabel("question, neuron:concept", fontsize=8)
            ax.set_ylim(0, 1.05)
            ax.set_ylabel("share of raters")
        if not panels:
            axes[0].text(0.5, 0.5, "no intruder or agree answers", ha="center", va="center")
            axes[0].set_axis_off()
        fig.suptitle(f"study {self.study_id}: {self.n_raters} rater(s); bars: 95 % Wilson intervals", fontsize=10)
        return fig


def _json_ready(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _json_ready(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_ready(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return None if np.isnan(obj) else float(obj)
    return obj


def score_study(study: str | os.PathLike[str] | Study, answer_files: Sequence[str | os.PathLike[str]]) -> StudyScores:
    """Score participants' answers against the study's key.

    Parameters
    ----------
    study : a study folder, or a loaded :class:`Study`
    answer_files : CSVs exported from the form, one or more raters each

    Kappa per question type counts only the raters who answered every question of that type.
    """
    study = study if isinstance(study, Study) else Study.load(study)
    if isinstance(answer_files, (str, os.PathLike)):  # one file given alone, not its characters one by one
        answer_files = [answer_files]
    rows = read_answers(answer_files, study=study)
    raters = sorted({r.rater for r in rows})
    by_question: dict[str, list[Answer]] = {q: [] for q in study.key}
    for r in rows:
        by_question[r.question].append(r)
    answered = {(r.rater, r.question) for r in rows}
    unanswered = {rater: [q for q in study.key if (rater, q) not in answered] for rater in raters}
    unanswered = {k: v for k, v in unanswered.items() if v}

    def proportion(kind: str) -> dict[str, Any]:
        per_q: dict[str, Any] = {}
        hits = total = 0
        chance_sum = 0.0
        for q in study.questions(kind):
            entry, answers = study.key[q], by_question[q]
            k = sum(a.answer == entry["answer"] for a in answers)
            item = {"n": len(answers), "ci95": list(wilson_interval(k, n=len(answers))),
                    "neuron": entry["neuron"], "concept": entry["concept"]}
            if kind == "intruder":
                item.update(accuracy=k / len(answers) if answers else float("nan"), chance=1.0 / len(entry["options"]),
                            intruder_from=entry["intruder"]["from"])
                chance_sum += len(answers) / len(entry["options"])
            else:
                item.update(rate=k / len(answers) if answers else float("nan"), label=entry["label"],
                            label_source=entry["label_source"])
            per_q[q] = item
            hits, total = hits + k, total + len(answers)
        out = {"n": total, "correct" if kind == "intruder" else "agreeing": hits,
               "ci95": list(wilson_interval(hits, n=total)), "questions": per_q}
        out["accuracy" if kind == "intruder" else "rate"] = hits / total if total else float("nan")
        if kind == "intruder":
            out["chance"] = chance_sum / total if total else float("nan")  # expected accuracy of random picks
        return out

    kappas: dict[str, Any] = {}
    for kind in ("intruder", "agree"):
        qs = study.questions(kind)
        complete = [r for r in raters if all((r, q) in answered for q in qs)]
        if not qs or len(complete) < 2:
            kappas[kind] = {"kappa": float("nan"), "raters": len(complete), "questions": len(qs),
                            "note": "needs 2 or more raters who answered every question of this type"}
            continue
        categories = sorted({o for q in qs for o in study.key[q]["options"]})
        table = np.zeros((len(qs), len(categories)))
        for i, q in enumerate(qs):
            for a in by_question[q]:
                if a.rater in complete:
                    table[i, categories.index(a.answer)] += 1
        value = fleiss_kappa(table)
        kappas[kind] = {"kappa": value, "raters": len(complete), "questions": len(qs),
                        **({"note": "undefined: every rating fell in one category"} if np.isnan(value) else {})}

    labels = []
    for q in study.questions("label"):
        entry = study.key[q]
        labels.append({"question": q, "neuron": entry["neuron"], "concept": entry["concept"],
                       "labels": [{"rater": a.rater, "label": a.answer} for a in by_question[q]]})
    return StudyScores(study_id=study.study_id, raters=raters, intruder=proportion("intruder"), agree=proportion("agree"),
                       labels=labels, fleiss_kappa=kappas, unanswered=unanswered)


def write_scores(scores: StudyScores, out: str | os.PathLike[str], *, answer_files: Sequence[str | os.PathLike[str]] = (),
                 study: str | os.PathLike[str] | None = None) -> Path:
    """Write scores.json and scores.png to ``out``; returns ``out``.

    An earlier scores folder at ``out`` is replaced as a whole; any other folder is refused, and so is
    an ``out`` that is or holds the ``study`` folder or one of the ``answer_files`` (recorded in scores.json).
    """
    with atomic_directory(out, overwrite=True, what="scores folder", marker=SCORE_FILE,
                          protect=[study, *answer_files]) as tmp:
        write_json(tmp / SCORE_FILE, {**scores.to_dict(), "answer_files": [str(p) for p in answer_files], **environment()})
        scores.plot().savefig(tmp / SCORE_FIGURE, dpi=120)
    return Path(out)
