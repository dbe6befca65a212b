"""``conceptvec.thresholds``: an old name of :mod:`conceptvec.core.thresholds`, kept for old notebooks; it warns once on import.

Every public name is now ``conceptvec.<name>`` (``import conceptvec as cv; cv.<name>``)."""

import warnings

from .core.thresholds import *  # noqa: F401,F403
from .core.thresholds import __all__  # noqa: F401

warnings.warn("conceptvec.thresholds is an old name: import the names from conceptvec itself "
              "(import conceptvec as cv; cv.<name>); conceptvec.thresholds will be removed.", FutureWarning, stacklevel=2)
