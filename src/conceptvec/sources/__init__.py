"""Data sources, torch-free: image folders and ImageNet trees (``images``), scikit-learn's digits (``digits``),
text corpora (``text``). Extraction reads examples through them; the report and the study read them back."""
