"""``conceptvec.reference``: an old name of :mod:`conceptvec.core.reference`, kept for old notebooks; it warns once on import.

Every public name is now ``conceptvec.<name>`` (``import conceptvec as cv; cv.<name>``)."""

import warnings

from .core.reference import *  # noqa: F401,F403
from .core.reference import __all__  # noqa: F401

warnings.warn("conceptvec.reference is an old name: import the names from conceptvec itself "
              "(import conceptvec as cv; cv.<name>); conceptvec.reference will be removed.", FutureWarning, stacklevel=2)
