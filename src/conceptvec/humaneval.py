"""``conceptvec.humaneval``: an old name of :mod:`conceptvec.study`, kept for old notebooks; it warns once on import.

Every public name is now ``conceptvec.<name>`` (``import conceptvec as cv; cv.<name>``)."""

import warnings

from .study import *  # noqa: F401,F403
from .study import __all__  # noqa: F401

warnings.warn("conceptvec.humaneval is an old name: import the names from conceptvec itself "
              "(import conceptvec as cv; cv.<name>); conceptvec.humaneval will be removed.", FutureWarning, stacklevel=2)
