"""Everything that runs a torch model: model specs and layers, data sources, hooks, extraction, feature visualisation.

The only part of conceptvec that imports torch, and only in the modules that need it: ``config``
(ExtractConfig) and ``extraction`` (``extract``) load torch when extraction runs, so
``conceptvec.extract`` is importable without it. Modules: ``models`` (specs, layers), ``data``
(examples, sampling), ``hooks`` (capture, stop), ``runner`` (batches to the layer), ``extraction``,
``featureviz``, ``digits`` (the demo's CNN).
"""
