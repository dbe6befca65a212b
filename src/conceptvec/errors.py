"""Exceptions that carry a message for the user: what is wrong and how to fix it."""

from __future__ import annotations


class ConceptvecError(ValueError):
    """Bad input or state, described for the user; the CLI prints it without a traceback."""


class StoreError(ConceptvecError):
    """A directory that is missing, incomplete, or not what it was expected to be."""


class ConceptvecWarning(UserWarning):
    """Something the user should know about a result that was still computed; the CLI prints it in one line."""


class ThresholdScaleWarning(ConceptvecWarning):
    """The thresholds do not fit the scale of the layer's distances: the result says more about them than about the neurons."""


def wrapped_os_error(exc: BaseException) -> OSError | None:
    """The operating-system error another library's exception reports in its text (safetensors: "os error 28"), if any."""
    import errno
    import os
    import re

    text = str(exc)
    found = re.search(r"os error (\d+)", text)
    if found:
        number = int(found.group(1))
        return OSError(number, os.strerror(number))
    if "No space left on device" in text or "StorageFull" in text:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return None
