"""The algorithm core: the paper's method and what measures it, on plain arrays.

Imports NumPy, SciPy and scikit-learn only (never torch, the models, the report, the study or the
command line; ``tests/test_architecture.py`` checks it with import-linter). Modules:
``params`` (Params), ``method`` (the four steps for one direction), ``kmeans`` (step 3, bit for bit
scikit-learn's KMeans), ``streaming`` (blocks of rows, top-k), ``arrays`` (checked activations),
``metrics``, ``thresholds``, ``reference`` (the authors' loop, transcribed).
"""
