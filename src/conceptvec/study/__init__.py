"""The paper's human evaluation study: intruder and labelling questions in one offline form, and their scores.

``config`` (StudyConfig, read_labels), ``questions`` (drawing the questions), ``form`` (form.html from
``templates/`` and ``static/``), ``make`` (make_study, Study), ``answers`` (participants' CSVs),
``stats`` (wilson_interval, fleiss_kappa) and ``scoring`` (score_study, StudyScores, write_scores).
"""

from .config import StudyConfig, read_labels
from .make import Study, make_study
from .scoring import SCORE_DIR, StudyScores, score_study, write_scores
from .stats import fleiss_kappa, wilson_interval

__all__ = ["SCORE_DIR", "Study", "StudyConfig", "StudyScores", "fleiss_kappa", "make_study", "read_labels", "score_study",
           "wilson_interval", "write_scores"]
