"""Feature visualisation (the paper's Fig. 3); moved from ``nn/featureviz.py``, split into modules next."""

from .render import (OBJECTIVES, RESULT_FILE, TRANSFORMS, FeatureVisualisation, FeatureVizParams,  # noqa: F401
                     feature_visualisation, layer_output, neuron_directions, run_featureviz)
