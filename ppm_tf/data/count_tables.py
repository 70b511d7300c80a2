"""The count tables ``ppm preprocess`` writes (``WORK/count_tables/<name>-*.tsv``): per item id
and per category, the as-of counts (``features.COUNT_SIZE`` values) at the log's end. An
export builds them into the served model, so clients send item ids, not item statistics.

One line per key: the key, then the counts as integers, tab-separated. Keys never hold a tab
or a newline: the raw contract refuses control characters in ids and categories.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.work_layout import WorkLayout


def format_row(key: str, counts: Sequence[float]) -> str:
    return "\t".join([key, *(str(int(value)) for value in counts)])


def read_count_table(work: str, name: str) -> tuple[list[str], np.ndarray]:
    """(keys, ``[num_keys, COUNT_SIZE]`` float32 counts) of table ``name`` (item_id or
    category)."""
    pattern = WorkLayout(work).count_table_pattern(name)
    files = sorted(tf.io.gfile.glob(pattern))
    if not files:
        raise FileNotFoundError(f"no count table matches {pattern}: run `ppm preprocess` "
                                "(this version) first")
    keys, rows = [], []
    for path in files:
        with tf.io.gfile.GFile(path) as handle:
            for line_number, line in enumerate(handle, 1):
                key, *values = line.rstrip("\n").split("\t")
                if len(values) != features.COUNT_SIZE:
                    raise ValueError(f"{path}:{line_number}: {len(values)} counts, expected "
                                     f"{features.COUNT_SIZE}")
                keys.append(key)
                rows.append([float(value) for value in values])
    return keys, np.asarray(rows, np.float32).reshape(-1, features.COUNT_SIZE)
