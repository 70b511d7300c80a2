"""The reference checks, as joins: events against users, then events and queries against items.

Joins (CoGroupByKey) instead of in-memory id sets, so no worker ever holds a whole table.
What a join rejects goes to the dead-letter output in ``validate``'s format:

- users: an id listed twice (the record that sorts first is kept);
- events: an unknown user, a user over ``max_events_per_user`` (bots and crawlers: all of
  their events, so one heavy key cannot exhaust a worker), a repeated (request_id, item_id)
  (the copy that sorts first is kept), an unknown item, a time before the item's launch;
- items: an id listed twice. Identical copies collapse to one (the extra copies are
  dead-lettered as ``duplicate_id``); copies that differ are all dead-lettered
  (``conflicting_duplicate``), so no copy can replace another by how it sorts, and the
  item's events and queries then find no item;
- queries: an unknown item or a time before its launch.

The item join also adds what examples need from the catalogue and the logs: the candidate's
category, brand and content tokens, its age, the split, the cold-start flag (``features.is_cold_item``) and
the item's as-of counts (``counts``).
"""
from __future__ import annotations

import json
from typing import Any

import apache_beam as beam

from ppm_tf import features
from ppm_tf.data import schema
from ppm_tf.data.count_tables import format_row
from ppm_tf.data.raw_files import SECONDS_PER_DAY
from ppm_tf.preprocessing.counts import daily_rows, item_counts
from ppm_tf.preprocessing.splits import SplitBounds
from ppm_tf.preprocessing.validate import DEAD_LETTER, VALID, dead_letter, dead_letter_key

ITEMS_OUT, QUERIES_OUT, ITEM_DAYS_OUT = "items", "queries", "item_days"


def _canonical(record: dict[str, Any]) -> str:
    """Sort key that makes "which duplicate is kept" independent of arrival order."""
    return json.dumps(record, sort_keys=True, default=repr)


def _reject(table: str, problem: schema.Problem, record: dict[str, Any]):
    entry = dead_letter(table, [problem], record=record)
    beam.metrics.Metrics.counter(DEAD_LETTER, dead_letter_key(entry)).inc()
    return beam.pvalue.TaggedOutput(DEAD_LETTER, entry)


def _printable(record: dict[str, Any]) -> dict[str, Any]:
    """An item as read, for the dead-letter file: image bytes are replaced by their size."""
    image = record.get("image")
    if isinstance(image, bytes):
        return {**record, "image": f"<{len(image)} bytes>"}
    return record


class _CheckUserEvents(beam.DoFn):
    def __init__(self, max_events_per_user: int):
        self.max_events_per_user = max_events_per_user

    def process(self, element):
        user_id, group = element
        users = sorted(group["users"], key=_canonical)
        for extra in users[1:]:
            yield _reject(schema.USERS, schema.Problem(
                "user_id", f"duplicate id {user_id!r}: listed more than once", "duplicate_id"),
                extra)
        events = group["events"]
        if not users:
            for event in events:
                yield _reject(schema.EVENTS, schema.Problem(
                    "user_id", f"unknown id {user_id!r}: not in users", "unknown_id"), event)
            return
        num_events = sum(1 for _ in events)
        if num_events > self.max_events_per_user:
            for event in events:
                yield _reject(schema.EVENTS, schema.Problem(
                    "user_id", f"user {user_id!r} has {num_events} events, over "
                    f"max_events_per_user={self.max_events_per_user}", "user_over_cap"), event)
            return
        kept: dict[tuple[str, str], dict[str, Any]] = {}
        for event in events:
            key = (event["request_id"], event["item_id"])
            if key in kept:
                first, second = sorted((kept[key], event), key=_canonical)
                kept[key] = first
                yield _reject(schema.EVENTS, schema.Problem(
                    "request_id", f"duplicate event: item {key[1]!r} already in request "
                    f"{key[0]!r}", "duplicate_event"), second)
            else:
                kept[key] = event
        yield from kept.values()


class JoinUsers(beam.PTransform):
    """{"users", "events"} -> valid events (main) and dead letters."""

    def __init__(self, max_events_per_user: int):
        super().__init__()
        self.max_events_per_user = max_events_per_user

    def expand(self, tables):
        return ({"users": tables["users"] | "KeyUsers" >> beam.Map(
                    lambda user: (user["user_id"], user)),
                 "events": tables["events"] | "KeyEvents" >> beam.Map(
                     lambda event: (event["user_id"], event))}
                | "ByUser" >> beam.CoGroupByKey()
                | "Check" >> beam.ParDo(_CheckUserEvents(self.max_events_per_user))
                .with_outputs(DEAD_LETTER, main=VALID))


def catalogue_record(item: dict[str, Any]) -> dict[str, Any]:
    """A valid item as the catalogue TFRecords store it (``features.ITEM_FEATURES``)."""
    image = item.get("image")
    return {
        features.ITEM_ID: item["item_id"],
        features.TITLE: item["title"],
        features.IMAGE: image or b"",
        features.HAS_IMAGE: int(bool(image)),
        features.CATEGORY: item["category"],
        features.BRAND: item.get("brand") or "",
        features.ENTITIES: item["entities"],
        features.LAUNCH_TS: item["launch_ts"],
        features.ATTRS_JSON: features.attrs_to_json(item.get("attrs")),
    }


class _CheckItemReferences(beam.DoFn):
    @staticmethod
    def _problems(table, record, context, bounds: SplitBounds) -> list[schema.Problem]:
        # Fields were validated on read; only the reference checks are new here.
        problems = schema.cross_field_problems(table, record, context)
        if not problems and record["ts"] >= bounds.end_ts:
            problems.append(schema.Problem(
                "ts", f"timestamp {record['ts']} is after the eval split's end {bounds.end_ts}",
                "future"))
        return problems

    @staticmethod
    def _one_item(item_id, copies: list[dict[str, Any]]):
        """Yields the dead letters of an id's extra copies; returns the item kept, if any."""
        # The image bytes count: copies may differ only in an image of the same size.
        contents = {(_canonical(_printable(item)), item.get("image") or b"") for item in copies}
        if len(contents) > 1:
            for copy in copies:
                yield _reject(schema.ITEMS, schema.Problem(
                    "item_id", f"duplicate id {item_id!r}: {len(copies)} records with "
                    f"{len(contents)} different contents; all are rejected, since none can be "
                    "trusted over another", "conflicting_duplicate"), _printable(copy))
            return None
        for extra in copies[1:]:
            yield _reject(schema.ITEMS, schema.Problem(
                "item_id", f"duplicate id {item_id!r}: listed more than once (identical "
                "copies; one is kept)", "duplicate_id"), _printable(extra))
        return copies[0] if copies else None

    def __init__(self, count_lookback_days: int):
        self.count_lookback_days = count_lookback_days

    def process(self, element, bounds: dict[str, int]):
        bounds = SplitBounds(**bounds)
        item_id, group = element
        item = yield from self._one_item(item_id, list(group["items"]))
        context = (schema.ValidationContext(
            known_item_ids=frozenset([item_id]), item_launch_ts={item_id: item["launch_ts"]})
            if item else schema.ValidationContext(known_item_ids=frozenset()))
        valid_events = []
        for event in group.get("events", ()):
            problems = self._problems(schema.EVENTS, event, context, bounds)
            if problems:
                yield _reject(schema.EVENTS, problems[0], event)
            else:
                valid_events.append(event)
        for query in group.get("queries", ()):
            problems = self._problems(schema.QUERIES, query, context, bounds)
            if problems:
                yield _reject(schema.QUERIES, problems[0], query)
            else:
                yield beam.pvalue.TaggedOutput(QUERIES_OUT, {
                    features.QUERY: query["query"], features.ITEM_ID: item_id,
                    features.TS: query["ts"], features.SPLIT: bounds.split_of(query["ts"])})
        if item is None:
            return
        yield beam.pvalue.TaggedOutput(ITEMS_OUT, catalogue_record(item))
        if not valid_events:
            return
        first_impression_ts = min(event["ts"] for event in valid_events)
        cold = int(features.is_cold_item(first_impression_ts, bounds.train_start_ts))
        content = features.join_content(features.content_tokens(item["entities"],
                                                                item.get("attrs")))
        days = daily_rows(valid_events)
        for day in days:
            yield beam.pvalue.TaggedOutput(ITEM_DAYS_OUT, format_row(item_id, day))
        for event, counts in zip(valid_events,
                                 item_counts(valid_events, days, self.count_lookback_days)):
            yield {
                **event,
                features.ITEM_COUNTS: counts,
                features.CATEGORY: item["category"],
                features.BRAND: item.get("brand") or "",
                features.ITEM_CONTENT: content,
                features.IS_COLD_ITEM: cold,
                features.ITEM_AGE_DAYS: (event["ts"] - item["launch_ts"]) / SECONDS_PER_DAY,
                features.SPLIT: bounds.split_of(event["ts"]),
            }


class JoinItems(beam.PTransform):
    """{"items", "events", "queries"} -> enriched events (main), catalogue ``items``, valid
    ``queries``, ``item_days`` (each item's daily totals, count-table lines) and dead letters.
    ``bounds`` is a singleton PCollection of ``SplitBounds.as_dict()``; each event gets its
    item's as-of counts (``counts``). "events" or "queries" may be left out: the catalogue job
    joins only queries, the events job only events."""

    def __init__(self, bounds, count_lookback_days: int):
        super().__init__()
        self.bounds = bounds
        self.count_lookback_days = count_lookback_days

    def expand(self, tables):
        keyed = {name: tables[name] | f"Key{name.title()}" >> beam.Map(
                     lambda record: (record["item_id"], record))
                 for name in ("items", "events", "queries") if name in tables}
        return (keyed
                | "ByItem" >> beam.CoGroupByKey()
                | "Check" >> beam.ParDo(_CheckItemReferences(self.count_lookback_days),
                                        bounds=beam.pvalue.AsSingleton(self.bounds))
                .with_outputs(ITEMS_OUT, QUERIES_OUT, ITEM_DAYS_OUT, DEAD_LETTER,
                              main=VALID))
