"""The paper's human evaluation study: intruder and labelling questions in one offline form, and their scores."""

from .humaneval import (Study, StudyConfig, StudyScores, fleiss_kappa, make_study, read_labels, score_study,
                        wilson_interval, write_scores)

__all__ = ["Study", "StudyConfig", "StudyScores", "fleiss_kappa", "make_study", "read_labels", "score_study",
           "wilson_interval", "write_scores"]
