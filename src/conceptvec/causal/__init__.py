"""Causal checks in the model: ``interventions`` (``intervene``: ablate, mean-ablate or steer a layer's output)
and ``effects`` (``causal_effects``: what editing each concept does to the model's outputs)."""
