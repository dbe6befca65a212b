"""The paper's figures for one neuron's ConceptSet, and for a layer scan.

Every figure function returns a matplotlib ``Figure`` (never the global ``plt`` state), so it can
be shown in a notebook or saved. Each has a ``*_data`` twin returning the numbers it draws, as
plain dicts of lists, which the report prints beside the figure and the tests check.

Notation: ``cs`` is a ConceptSet with X = ``cs.top_activations`` of shape (N, n_units), N = top;
``acts`` is the full activation matrix A of shape (n_examples, n_units); ``examples`` is a
renderer (``conceptvec.report.examples.Examples``). The example grids draw every panel in one Axes
(``panels``, fast); each panel's title carries the gid ``"example:<index>"`` (``panels.shown_examples``
reads them back), as do the UMAP's thumbnails, inset Axes, so a reader (and the tests) can tell which
example a panel shows.

Modules: ``grids`` (examples: top activating, by concept, Fig. 3), ``geometry`` (Figs. 5, 4, 2),
``tree`` (Figs. A.7, A.8), ``concepts`` (Fig. A.9, class labels, the summary table), ``scan``
(a layer scan), ``thresholds`` (Fig. A.8 over a layer: ``core.sweep``), ``causal`` (the selectivity
heatmap and steering curve of ``conceptvec causal``), ``common`` (colours), ``panels`` (example grids in one Axes); every
name is importable from here.
"""

from __future__ import annotations

from .causal import selectivity_data, selectivity_heatmap, steering_curve, steering_data
from .common import NEURON_COLOUR, REMOVED_COLOUR, concept_colour, concept_name, removal_reasons
from .concepts import class_makeup, class_makeup_data, components_data, components_plot, summary_table
from .geometry import (
    distance_matrices,
    distance_matrices_data,
    projection_comparison,
    projection_comparison_data,
    umap_data,
    umap_plot,
)
from .grids import (
    RANKINGS,
    concept_groups_data,
    concept_groups_grid,
    projecting_data,
    projecting_grid,
    top_activating_data,
    top_activating_grid,
)
from .scan import scan_data, scan_histogram
from .thresholds import threshold_sweep_data, threshold_sweep_plot
from .tree import dendrogram_data, dendrogram_plot, run_cut, threshold_curve, threshold_curve_data

__all__ = [
    "NEURON_COLOUR", "REMOVED_COLOUR", "RANKINGS",
    "concept_colour", "concept_name", "removal_reasons",
    "top_activating_data", "top_activating_grid", "concept_groups_data", "concept_groups_grid",
    "projecting_data", "projecting_grid",
    "projection_comparison_data", "projection_comparison", "distance_matrices_data", "distance_matrices",
    "umap_data", "umap_plot",
    "dendrogram_data", "dendrogram_plot", "run_cut", "threshold_curve_data", "threshold_curve",
    "components_data", "components_plot", "class_makeup_data", "class_makeup", "summary_table",
    "scan_data", "scan_histogram", "threshold_sweep_data", "threshold_sweep_plot",
    "selectivity_data", "selectivity_heatmap", "steering_data", "steering_curve",
]
