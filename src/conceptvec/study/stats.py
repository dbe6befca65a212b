"""The statistics of a study's scores: Wilson intervals of proportions and Fleiss' kappa among raters."""

from __future__ import annotations

import numpy as np

from ..errors import ConceptvecError


def wilson_interval(successes: int, *, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (no continuity correction); (nan, nan) when n = 0.

    Returns
    -------
    (low, high) : floats in [0, 1]
    """
    from scipy.stats import binomtest

    if n == 0:
        return (float("nan"), float("nan"))
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def fleiss_kappa(counts: np.ndarray) -> float:
    """Fleiss' kappa of a table of shape (n_subjects, n_categories): how many raters put each subject in each category.

    Every subject must have the same number of ratings, at least 2. When every rating falls in one
    category the chance agreement is 1 and kappa is undefined (nan).
    """
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] == 0:
        raise ConceptvecError("fleiss_kappa needs a (subjects, categories) table with at least one subject.")
    per_subject = counts.sum(axis=1)
    n = per_subject[0]
    if np.any(per_subject != n) or n < 2:
        raise ConceptvecError("fleiss_kappa needs the same number (2 or more) of ratings for every subject.")
    p_j = counts.sum(axis=0) / counts.sum()
    p_i = (np.sum(counts**2, axis=1) - n) / (n * (n - 1))
    p_bar, p_e = p_i.mean(), np.sum(p_j**2)
    if np.isclose(p_e, 1.0):
        return float("nan")
    return float((p_bar - p_e) / (1.0 - p_e))
