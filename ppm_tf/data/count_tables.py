"""The count tables ``ppm preprocess`` writes (``WORK/count_tables/<name>-*.tsv``): per item id
and per category, the as-of counts (``features.COUNT_SIZE`` values) at the log's end. An
export builds them into the served model, so clients send item ids, not item statistics.
``item_days`` holds each item's totals per UTC day with events (the day's start, then
impressions, clicks, orders): the history from which counts as of any day are summed.

One line per key: the key, then the counts as integers, tab-separated. Keys never hold a tab
or a newline: the raw contract refuses control characters in ids and categories.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.work_layout import WorkLayout

ITEM_DAYS = "item_days"


def format_row(key: str, counts: Sequence[float]) -> str:
    return "\t".join([key, *(str(int(value)) for value in counts)])


def read_count_table(work: str, name: str) -> tuple[list[str], np.ndarray]:
    """(keys, ``[num_keys, COUNT_SIZE]`` float32 counts) of table ``name`` (item_id or
    category)."""
    keys, rows = _read_rows(work, name, features.COUNT_SIZE)
    return keys, np.asarray(rows, np.float32).reshape(-1, features.COUNT_SIZE)


def read_item_days(work: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(item ids, ``[rows]`` int64 day starts, ``[rows, len(COUNT_KINDS)]`` float32 totals)
    of the ``item_days`` table, one row per item and day with events."""
    keys, rows = _read_rows(work, ITEM_DAYS, 1 + len(features.COUNT_KINDS))
    rows = np.asarray(rows, np.int64).reshape(-1, 1 + len(features.COUNT_KINDS))
    return keys, rows[:, 0], rows[:, 1:].astype(np.float32)


def _read_rows(work: str, name: str, size: int) -> tuple[list[str], list[list[int]]]:
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
                if len(values) != size:
                    raise ValueError(f"{path}:{line_number}: {len(values)} values, expected "
                                     f"{size}")
                keys.append(key)
                rows.append([int(value) for value in values])
    return keys, rows
