import numpy as np
import pytest


def planted(n_examples=400, n_units=24, neuron=3, facets=((0, 8), (12, 20)), per_facet=30, seed=0, gap=6.0):
    """Activations where ``neuron`` fires for len(facets) groups of examples, each group also strong on its own units.

    Returns the matrix and the group of every example (-1 for background).
    """
    rng = np.random.default_rng(seed)
    acts = np.abs(rng.normal(0.0, 0.3, size=(n_examples, n_units)))
    groups = np.full(n_examples, -1)
    for g, (lo, hi) in enumerate(facets):
        rows = np.arange(g * per_facet, (g + 1) * per_facet)
        acts[rows, neuron] += 5.0 + rng.normal(0, 0.1, size=len(rows))
        acts[rows, lo:hi] += gap
        groups[rows] = g
    return acts, groups


@pytest.fixture
def planted_acts():
    return planted()


@pytest.fixture(scope="module")
def one_thread():
    """torch on one thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``), restored after:
    on a busy 2-core machine two OpenMP threads spin against other processes."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def ray_cluster(request):
    """One local Ray of 2 CPUs shared by a test module (starting one costs seconds; Ray has no local mode), shut down after."""
    ray = pytest.importorskip("ray")
    # Functions and classes of the test module travel to Ray's workers by value (the workers cannot import it).
    ray.cloudpickle.register_pickle_by_value(request.module)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
