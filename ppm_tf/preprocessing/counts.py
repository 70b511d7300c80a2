"""As-of count features: how often the user, the candidate item and its category were shown,
clicked and ordered before the request, over the whole log so far and over a recent
look-back (``features.COUNT_WINDOWS``). They are what a count baseline ranks by, so every
model gets them, and PPM's gain is measured over a base that has them too.

Strictly before the request, never later:

- **user**: the user's events of earlier requests whose time is before the request's time
  (its first event), exactly as a client computes them from the user's log at request time;
- **item** and **category**: the events on UTC days before the request's day, a daily
  snapshot, the way a served table refreshed at each export sees them.

The item counts are made in the item join (which holds an item's events anyway), the
category counts by a combiner per (category, day) and a side input (a category is a hot key),
the user counts in the per-user grouping beside the behaviour sequences.
``WriteCountTables`` writes the item and category counts as of the log's end: the tables an
export builds into the served model (``work_layout.count_table_pattern``). The item join also
writes each item's daily totals (``data.count_tables.ITEM_DAYS``), from which PPM's tower can
read its behaviour items' counts as of any request (``models.history_counts``).
"""
from __future__ import annotations

import bisect
import itertools
from typing import Any, Iterable, Iterator, Sequence

import apache_beam as beam

from ppm_tf import features
from ppm_tf.data.count_tables import format_row
from ppm_tf.data.raw_files import SECONDS_PER_DAY


class AsOfCounts:
    """Cumulative (impressions, clicks, orders) of one key's events, read as of a time.

    ``rows`` are ``(ts, impressions, clicks, orders)``: one per event, or one per day (at the
    day's start) for daily snapshots.
    """

    def __init__(self, rows: Iterable[Sequence[int]]):
        rows = sorted(rows)
        self.times = [row[0] for row in rows]
        self.cumulative = [(0, 0, 0), *itertools.accumulate(
            (tuple(row[1:4]) for row in rows),
            lambda total, row: tuple(a + b for a, b in zip(total, row)))]

    def _before(self, ts: int) -> tuple[int, int, int]:
        return self.cumulative[bisect.bisect_left(self.times, ts)]

    def as_of(self, ts: int, lookback_days: int) -> list[float]:
        """``features.COUNT_SIZE`` values: the whole log before ``ts``, then its last
        ``lookback_days`` days."""
        everything = self._before(ts)
        earlier = self._before(ts - lookback_days * SECONDS_PER_DAY)
        return [float(value) for value in
                (*everything, *(now - then for now, then in zip(everything, earlier)))]


def day_start(ts: int) -> int:
    return ts - ts % SECONDS_PER_DAY


def daily_rows(events: Iterable[dict[str, Any]]) -> list[tuple[int, int, int, int]]:
    """One ``(day start, impressions, clicks, orders)`` row per day with events."""
    days: dict[int, list[int]] = {}
    for event in events:
        totals = days.setdefault(day_start(event["ts"]), [0, 0, 0])
        totals[0] += 1
        totals[1] += event["click"]
        totals[2] += event["order"]
    return [(day, *totals) for day, totals in days.items()]


def item_counts(events: Sequence[dict[str, Any]], days: Iterable[Sequence[int]],
                lookback_days: int) -> Iterator[list[float]]:
    """Per event of one item (in the given order), its daily-snapshot counts; ``days`` are
    the item's ``daily_rows``."""
    counts = AsOfCounts(days)
    for event in events:
        yield counts.as_of(day_start(event["ts"]), lookback_days)


def request_times(events: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Each request's time: its first event's (a request's events may differ by seconds)."""
    times: dict[str, int] = {}
    for event in events:
        request = event["request_id"]
        times[request] = min(times.get(request, event["ts"]), event["ts"])
    return times


def user_counts(events: Iterable[dict[str, Any]], lookback_days: int,
                at: dict[str, int]) -> dict[str, list[float]]:
    """One user's counts per request in ``at`` (request id -> request time): the user's
    events before that time. A request's own events are never before its time (its first
    event's), and a server asks about a request not yet logged."""
    counts = AsOfCounts((event["ts"], 1, event["click"], event["order"]) for event in events)
    return {request: counts.as_of(ts, lookback_days) for request, ts in at.items()}


def counts_per_request(events: Iterable[dict[str, Any]],
                       lookback_days: int) -> dict[str, list[float]]:
    """One user's counts for each of the user's requests (re-iterable ``events``)."""
    return user_counts(events, lookback_days, request_times(events))


def _category_day(example) -> tuple[tuple[str, int], tuple[int, int, int]]:
    return ((example[features.CATEGORY], day_start(example["ts"])),
            (1, example[features.CLICK], example[features.ORDER]))


def _sum_rows(rows) -> tuple[int, int, int]:
    return tuple(sum(column) for column in zip(*rows)) if rows else (0, 0, 0)


def _category_counter(element) -> tuple[str, AsOfCounts]:
    category, days = element
    return category, AsOfCounts((day, *totals) for day, totals in days)


def _attach_category_counts(example, counters: dict[str, AsOfCounts], lookback_days: int):
    counts = counters[example[features.CATEGORY]].as_of(day_start(example["ts"]), lookback_days)
    return {**example, features.CATEGORY_COUNTS: counts}


class AttachCategoryCounts(beam.PTransform):
    """Examples -> examples with ``features.CATEGORY_COUNTS`` (daily snapshots). Totals per
    (category, day) come from a combiner, so no worker groups a category's events; the
    per-category day tables (categories x days rows) travel as a side input."""

    def __init__(self, lookback_days: int):
        super().__init__()
        self.lookback_days = lookback_days

    def expand(self, examples):
        counters = (examples
                    | "CategoryDay" >> beam.Map(_category_day)
                    | "SumPerDay" >> beam.CombinePerKey(_sum_rows)
                    | "ByCategory" >> beam.Map(lambda kv: (kv[0][0], (kv[0][1], kv[1])))
                    | "Days" >> beam.GroupByKey()
                    | "Counter" >> beam.Map(_category_counter))
        return examples | "Attach" >> beam.Map(
            _attach_category_counts, counters=beam.pvalue.AsDict(counters),
            lookback_days=self.lookback_days)


COUNT_TABLES = (features.ITEM_ID, features.CATEGORY)  # keys of WORK/count_tables/<name>-*.tsv


def _table_rows(example, end_ts: int, lookback_days: int):
    recent = int(example["ts"] >= end_ts - lookback_days * SECONDS_PER_DAY)
    values = (1, example[features.CLICK], example[features.ORDER])
    row = (*values, *(value * recent for value in values))
    return [((name, example[name]), row) for name in COUNT_TABLES]


def _sum_vectors(rows) -> tuple[int, ...]:
    return tuple(sum(column) for column in zip(*rows)) if rows else (0,) * features.COUNT_SIZE


class WriteCountTables(beam.PTransform):
    """Examples -> WORK/count_tables/{item_id,category}-*.tsv: each key's counts over the whole
    log and over its last ``lookback_days`` days before ``end_ts`` (the log's end)."""

    def __init__(self, layout, bounds, lookback_days: int):
        super().__init__()
        self.layout = layout
        self.bounds = bounds
        self.lookback_days = lookback_days

    def expand(self, examples):
        totals = (examples
                  | "Rows" >> beam.FlatMap(
                      lambda example, bounds, days: _table_rows(example, bounds["end_ts"], days),
                      bounds=beam.pvalue.AsSingleton(self.bounds), days=self.lookback_days)
                  | "Sum" >> beam.CombinePerKey(_sum_vectors))
        per_table = totals | "ByTable" >> beam.Partition(
            lambda row, _: COUNT_TABLES.index(row[0][0]), len(COUNT_TABLES))
        for name, rows in zip(COUNT_TABLES, per_table):
            _ = (rows
                 | f"Format[{name}]" >> beam.Map(lambda row: format_row(row[0][1], row[1]))
                 | f"Write[{name}]" >> beam.io.WriteToText(
                     self.layout.count_table_prefix(name), file_name_suffix=".tsv"))
