"""Beam preprocessing: raw logs -> validated, leak-free, time-split TFRecords.

Composite transforms, each importable and tested on its own; ``beam_jobs/preprocess.py`` is
the thin entry point that wires them with pipeline options.
"""
