"""Models: resolve a spec to a torch module (``load``, ``zoo``, ``statedict``, ``language``), find its layers
(``layers``), hook them (``hooks``), and the demo's digits CNN (``digits``, trained weights in ``weights/``).

Torch lives here; this ``__init__`` imports nothing, so that the torch-free ``pooling`` is importable alone.
"""
