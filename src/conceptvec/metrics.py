"""``conceptvec.metrics``: an old name of :mod:`conceptvec.core.metrics`, kept for old notebooks; it warns once on import.

Every public name is now ``conceptvec.<name>`` (``import conceptvec as cv; cv.<name>``)."""

import warnings

from .core.metrics import *  # noqa: F401,F403
from .core.metrics import __all__  # noqa: F401

warnings.warn("conceptvec.metrics is an old name: import the names from conceptvec itself "
              "(import conceptvec as cv; cv.<name>); conceptvec.metrics will be removed.", FutureWarning, stacklevel=2)
