"""``conceptvec.reference``, a stable name for :mod:`conceptvec.core.reference` (the public API of ``shared/design.md``)."""

from .core.reference import *  # noqa: F401,F403
from .core.reference import __all__  # noqa: F401
