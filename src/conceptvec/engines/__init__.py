"""Where a stage's parallel work runs: one registry of engines for extraction and the scan (``registry``),
and the Ray cluster's plumbing (``raycluster``: importing Ray, joining a cluster, errors from its workers)."""
