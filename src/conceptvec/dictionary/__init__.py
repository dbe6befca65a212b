"""A sparse dictionary of a layer (TopK SAE, NMF, dictionary learning) beside the concept vectors.

``config`` (DictionaryConfig), ``model`` (Dictionary and its files, torch-free), ``blocks`` (the store read
in blocks), ``fit`` (cv.fit_dictionary), ``quality`` (explained variance, L0, dead atoms), ``sae`` (the TopK SAE, the only module that loads torch),
``compare`` (concept vectors matched to atoms, torch-free). Import the modules, not this package, from other rooms.
"""
