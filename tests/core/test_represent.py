"""core.represent.atom_contributions: each atom's term of a direction's projection in a dictionary's basis."""

import numpy as np

from conceptvec.core.represent import atom_contributions


def test_atom_terms_sum_to_the_projection_of_the_reconstruction():
    rng = np.random.default_rng(0)
    decoder, codes, direction = rng.standard_normal((12, 5)), np.maximum(rng.standard_normal((7, 12)), 0), rng.standard_normal(5)
    terms = atom_contributions(codes, decoder, direction)
    assert terms.shape == (7, 12)
    np.testing.assert_allclose(terms.sum(axis=1), (codes @ decoder) @ direction)
    # an atom orthogonal to the direction contributes nothing, however strongly it is coded
    orthogonal = decoder[3] - (decoder[3] @ direction) / (direction @ direction) * direction
    decoder[3] = orthogonal
    assert np.allclose(atom_contributions(codes, decoder, direction)[:, 3], 0.0)
