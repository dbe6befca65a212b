"""One thread for the demo's small work: a 16 px CNN, 100 x 64 k-means, a 1797 x 64 store.

Each step is far too small to gain from a second thread, and torch's and OpenMP's threads spin
while they wait: next to another busy process on two cores, torch's default two threads trained the
digits CNN 4x slower than one thread did (318 s against 82 s), and scikit-learn's OpenMP k-means
added a third to the rest of the demo.
"""

from __future__ import annotations

import contextlib
from typing import Iterator


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """torch, BLAS and OpenMP (scikit-learn's k-means) on one thread inside the block; the settings before it restored after."""
    import sklearn.cluster  # noqa: F401 - threadpoolctl limits only the thread pools loaded when the block starts
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1):
            yield
    finally:
        torch.set_num_threads(before)
