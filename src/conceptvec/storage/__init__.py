"""What is written to disk, and how: stores, ConceptSets, run folders, atomic writes, provenance.

Imports no torch (``tests/test_architecture.py``): a store and a ConceptSet open anywhere.
Modules: ``store`` (ActivationStore, StoreWriter), ``conceptset`` (ConceptSet), ``rundir`` (RunDir,
the layout of a run folder), ``atomic`` (write to a temporary name, then rename), ``provenance``.
"""
