"""Extraction: examples through a model to a layer's pooled activations, written as an ActivationStore.

``config`` (ExtractConfig, torch-free), ``pipeline`` (``extract``, torch-free until it runs), ``runner``
(image batches to the layer, chunks, resume), ``gpu`` (the device path), ``textrun`` (a language model's
documents or tokens), ``ray_images`` and ``ray_text`` (the same on Ray Data). This ``__init__`` imports
nothing, so ``ExtractConfig`` and ``extract``'s signature load no torch.
"""
