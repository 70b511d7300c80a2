"""Behaviour items' as-of counts, for PPM's tower (the config's ``tower_item_counts``).

Each history entry gets its item's counts as of the request, defined as the candidate's
``features.ITEM_COUNTS`` are: the impressions, clicks and orders on UTC days before the
request's day, over the whole log and over its last ``count_lookback_days`` days
(``features.COUNT_SIZE`` values). They are looked up inside the graph from each item's daily
totals (``data.count_tables.ITEM_DAYS``, written by preprocessing), so the training records
and the served requests carry nothing new: the exported tower holds the table, and a request
after the log's end reads the counts at the log's end, as a served count table does.

Stored per item and day with events, sorted by (item row, day), cumulative within each item:
an as-of lookup is one binary search (``tf.searchsorted``) per entry and window.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data.count_tables import read_item_days
from ppm_tf.data.raw_files import SECONDS_PER_DAY

# Keys are item row * _DAY_SPAN + day number: room for 2^21 days (5,700 years) per item.
_DAY_SPAN = 1 << 21


class HistoryItemCounts(tf.keras.layers.Layer):
    """``(item rows [...], ts [batch])`` -> ``[..., COUNT_SIZE]`` as-of counts of each item at
    its example's request time (``ts`` is broadcast over the trailing axes).

    ``item_rows`` are ``ItemVectorTable.row_indices`` (0: an unknown id or padding, whose
    counts are 0). Built from the daily totals: ``rows`` (each day's item row), ``days`` (day
    starts, seconds) and ``totals`` ``[n, len(COUNT_KINDS)]``.
    """

    def __init__(self, rows: np.ndarray, days: np.ndarray, totals: np.ndarray,
                 lookback_days: int, **kwargs):
        super().__init__(trainable=False, **kwargs)
        if lookback_days < 1:
            raise ValueError(f"lookback_days must be >= 1, got {lookback_days}")
        days = np.asarray(days, np.int64) // SECONDS_PER_DAY
        if len(days) and (days.min() < 0 or days.max() >= _DAY_SPAN):
            raise ValueError(f"day numbers must lie in [0, {_DAY_SPAN}), got "
                             f"[{days.min()}, {days.max()}]")
        keys = np.asarray(rows, np.int64) * _DAY_SPAN + days
        order = np.argsort(keys, kind="stable")
        keys, rows = keys[order], np.asarray(rows, np.int64)[order]
        totals = np.asarray(totals, np.float32)[order]
        if len(np.unique(keys)) != len(keys):
            raise ValueError("item_days lists an item and day more than once")
        # Running totals restarted at each item: row 0 is "nothing", row i + 1 the totals of
        # sorted row i's item up to and including its day.
        running = np.r_[np.zeros((1, totals.shape[1])), np.cumsum(totals, 0, np.float64)]
        first_of_item = np.maximum.accumulate(
            np.where(np.r_[True, rows[1:] != rows[:-1]], np.arange(len(rows)), 0))
        cumulative = np.r_[np.zeros((1, totals.shape[1])),
                           running[1:] - running[first_of_item]].astype(np.float32)
        self.lookback_days = int(lookback_days)
        self.keys = self._constant("keys", keys)
        self.cumulative = self._constant("cumulative", cumulative)

    def _constant(self, name: str, value: np.ndarray) -> tf.Variable:
        """A frozen weight, so the table is saved with the variables, not in the graph."""
        weight = self.add_weight(name=name, shape=value.shape, dtype=tf.as_dtype(value.dtype),
                                 initializer="zeros", trainable=False)
        weight.assign(value)
        return weight

    def _before(self, item_rows, day):
        """Totals of each item over the days before ``day`` (broadcast to ``item_rows``)."""
        query = item_rows * _DAY_SPAN + day
        flat = tf.reshape(query, [1, -1])
        position = tf.searchsorted(self.keys[tf.newaxis], flat, side="left")[0] - 1
        same_item = tf.logical_and(
            position >= 0,
            tf.gather(self.keys, tf.maximum(position, 0)) // _DAY_SPAN
            == tf.reshape(item_rows, [-1]))
        found = tf.where(same_item, position + 1, 0)  # row 0 of cumulative: nothing
        return tf.reshape(tf.gather(self.cumulative, found),
                          tf.concat([tf.shape(item_rows), [len(features.COUNT_KINDS)]], 0))

    def call(self, inputs):
        item_rows, ts = inputs
        item_rows = tf.cast(item_rows, tf.int64)
        # A request time outside the keys' range (no real one is) reads nothing or everything.
        day = tf.clip_by_value(tf.cast(ts, tf.int64) // SECONDS_PER_DAY, 0, _DAY_SPAN - 1)
        day = tf.reshape(day, tf.concat([tf.shape(day), tf.ones(tf.rank(item_rows) - 1,
                                                                 tf.int32)], 0))
        day = tf.broadcast_to(day, tf.shape(item_rows))
        everything = self._before(item_rows, day)
        earlier = self._before(item_rows, day - self.lookback_days)
        return tf.concat([everything, everything - earlier], -1)


def load_history_item_counts(work: str, item_ids: list[str] | str,
                             lookback_days: int, **kwargs) -> HistoryItemCounts:
    """The layer for WORK's ``item_days`` table, keyed by the item-vector table's rows
    (``item_ids``: its ids, in row order, or its ids file); days of items the table lacks
    are dropped (such an item's vector and counts are both unknown)."""
    if isinstance(item_ids, str):
        with tf.io.gfile.GFile(item_ids) as handle:
            item_ids = [line.rstrip("\n") for line in handle]
    row_of = {item_id: row + 1 for row, item_id in enumerate(item_ids)}  # 0: unknown
    keys, days, totals = read_item_days(work)
    rows = np.asarray([row_of.get(key, 0) for key in keys], np.int64)
    known = rows > 0
    return HistoryItemCounts(rows[known], days[known], totals[known], lookback_days,
                             **kwargs)
