"""The preprocessing pipeline: raw data directory -> WORK (see ``work_layout``), as two
Beam jobs.

    catalogue job: ReadAndValidate (items, queries) -> JoinItems (duplicates, query
        references, splits) -> catalogue, search log, catalogue vocabularies, their dead
        letters, catalogue_stats.json; then catalogue.json
    events job: ReadAndValidate (items, users, events) -> JoinUsers -> JoinItems (+ item
        counts) -> AttachCategoryCounts -> BehaviourSequences (+ user counts)
        -> WriteExamples, count tables (+ items' daily totals), id vocabularies, dead
           letters, oracle, stats.json

The catalogue job is all the modal encoders read, so ``ppm demo`` trains them while the
events job runs (``start_preprocess``, then ``finish_preprocess``); it needs the split bounds,
so when they come from the events (no world.json) it runs after the events job instead.
``run_preprocess`` runs both on whatever runner the options name, then checks that every split
has examples and that no event was lost, and writes ``preprocess.json`` last: its presence
means the outputs are complete.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions

from ppm_tf import features
from ppm_tf.data import raw_files, schema
from ppm_tf.data.count_tables import ITEM_DAYS
from ppm_tf.errors import StageError
from ppm_tf.filesystem import delete_tree
from ppm_tf.preprocessing.counts import AttachCategoryCounts, WriteCountTables
from ppm_tf.preprocessing.joins import ITEM_DAYS_OUT, ITEMS_OUT, QUERIES_OUT, JoinItems, JoinUsers
from ppm_tf.preprocessing.outputs import (CopyEvalOracle, WriteDeadLetters, WriteExamples,
                                          WriteRecords, WriteStats, merge_catalogue_stats,
                                          write_json_file)
from ppm_tf.preprocessing.sequences import BehaviourSequences
from ppm_tf.preprocessing.splits import SplitBounds
from ppm_tf.preprocessing.validate import (DEAD_LETTER, RECORDS_READ, VALID, ReadAndValidate,
                                           read_with_filesystems)
from ppm_tf.preprocessing.vocabulary import Vocabularies
from ppm_tf.work_layout import WorkLayout


DEFAULT_TRAIN_DAYS = DEFAULT_EVAL_DAYS = 7
REQUIRED_TABLES = (schema.ITEMS, schema.USERS, schema.EVENTS)
CATALOGUE_TABLES = (schema.ITEMS, schema.QUERIES)  # the catalogue job's; the events job's:
EVENTS_TABLES = (schema.USERS, schema.EVENTS)


@dataclasses.dataclass(frozen=True)
class PreprocessSettings:
    """What ``ppm preprocess`` was asked to do; stored in stats.json and preprocess.json."""

    data: str
    work: str
    train_days: int | None = None  # the recent window; None: world.json's, else DEFAULT_TRAIN_DAYS
    eval_days: int | None = None
    valid_days: int | None = None  # the window's last days, held out for early stopping;
    # None: the valid span world.json suggests, else splits.DEFAULT_VALID_DAYS
    max_seq_len: int = 20
    history: str = "clicks"  # what the behaviour sequences hold: features.HISTORY_KINDS
    count_lookback_days: int = 7  # the "recent" window of the as-of count features
    min_count: int = 2
    oov_buckets: int = 64
    max_events_per_user: int = 50_000
    as_of: int | None = None  # future-timestamp bound; None: world.json's end, else now
    image_roots: tuple[str, ...] = ()  # where images outside the data directory may lie
    max_record_bytes: int = schema.DEFAULT_MAX_RECORD_BYTES
    max_image_bytes: int = schema.DEFAULT_MAX_IMAGE_BYTES
    max_image_pixels: int = schema.DEFAULT_MAX_IMAGE_PIXELS

    def __post_init__(self):
        if self.history not in features.HISTORY_KINDS:
            raise ValueError(f"history must be one of {features.HISTORY_KINDS}, got "
                             f"{self.history!r}")
        for name in ("max_seq_len", "count_lookback_days", "min_count", "max_events_per_user",
                     "max_record_bytes", "max_image_bytes", "max_image_pixels"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("train_days", "eval_days", "valid_days"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 day, got {value}")


def _read_world(data: str) -> dict[str, Any] | None:
    path = raw_files.RawLayout(data).world
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def static_bounds(settings: PreprocessSettings, world: dict | None) -> SplitBounds | None:
    """Bounds known before the run (from world.json), or None to derive them from the data."""
    if settings.train_days is None and settings.eval_days is None and world \
            and "suggested_splits" in world:
        return SplitBounds.from_world(world, settings.valid_days)
    return None


def window_days(settings: PreprocessSettings, world: dict | None) -> tuple[int, int]:
    """(train_days, eval_days) for bounds counted back from the last event: each flag, else
    the length world.json suggests for that split, else the default."""
    splits = (world or {}).get("suggested_splits", {})

    def days(flag: int | None, names: tuple[str, ...], default: int) -> int:
        if flag is not None:
            return flag
        if names[0] in splits:  # the recent window is train plus a suggested valid
            return sum(splits[name]["days"][1] - splits[name]["days"][0]
                       for name in names if name in splits)
        return default

    return (days(settings.train_days, ("train", "valid"), DEFAULT_TRAIN_DAYS),
            days(settings.eval_days, ("eval",), DEFAULT_EVAL_DAYS))


def _max_ts(settings: PreprocessSettings, world: dict | None) -> int:
    if settings.as_of is not None:
        return settings.as_of
    if world and "horizon" in world:
        return world["horizon"]["end_ts"]
    return int(time.time())


def _validation_context(settings: PreprocessSettings,
                        world: dict | None) -> schema.ValidationContext:
    return schema.ValidationContext(
        max_ts=_max_ts(settings, world), image_root=settings.data,
        allowed_image_roots=tuple(settings.image_roots), read_image=read_with_filesystems,
        max_image_bytes=settings.max_image_bytes, max_image_pixels=settings.max_image_pixels)


def _read_tables(pipeline: beam.Pipeline, settings: PreprocessSettings, world: dict | None,
                 tables: tuple[str, ...]) -> dict[str, Any]:
    raw = raw_files.RawLayout(settings.data)
    context = _validation_context(settings, world)
    return {table: pipeline | ReadAndValidate(table, raw.pattern(table), context,
                                              settings.max_record_bytes)
            for table in tables}


def build_catalogue_pipeline(pipeline: beam.Pipeline, settings: PreprocessSettings,
                             world: dict | None, bounds: SplitBounds) -> None:
    """The catalogue job: items and queries -> the catalogue and search-log TFRecords, the
    catalogue's vocabularies, their dead letters and catalogue_stats.json. All the encoders
    read; it needs the split bounds (for the queries' splits), not the events."""
    layout = WorkLayout(settings.work)
    tables = _read_tables(pipeline, settings, world, CATALOGUE_TABLES)
    bounds_pc = pipeline | "SplitBounds" >> beam.Create([bounds.as_dict()])
    by_item = ({"items": tables[schema.ITEMS][VALID], "queries": tables[schema.QUERIES][VALID]}
               | "JoinItems" >> JoinItems(bounds_pc, settings.count_lookback_days))
    _ = by_item[ITEMS_OUT] | "WriteItems" >> WriteRecords(features.ITEM_FEATURES,
                                                          layout.items_prefix,
                                                          features.ITEM_ORDER)
    _ = by_item[QUERIES_OUT] | "WriteQueries" >> WriteRecords(features.QUERY_FEATURES,
                                                              layout.queries_prefix,
                                                              features.QUERY_ORDER)
    vocabulary_sizes = ({"items": by_item[ITEMS_OUT]}
                        | "Vocabularies" >> Vocabularies(layout, settings.min_count))
    dead_letters = ((*(tables[table][DEAD_LETTER] for table in CATALOGUE_TABLES),
                     by_item[DEAD_LETTER])
                    | "AllDeadLetters" >> beam.Flatten())
    _ = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(layout, CATALOGUE_TABLES)
    _ = ({"dead_letter": dead_letters, "vocabulary_sizes": vocabulary_sizes,
          "items": by_item[ITEMS_OUT], "queries": by_item[QUERIES_OUT]}
         | "WriteStats" >> WriteStats(layout.catalogue_stats_json, bounds_pc,
                                      dataclasses.asdict(settings)))


def build_events_pipeline(pipeline: beam.Pipeline, settings: PreprocessSettings,
                          world: dict | None) -> None:
    """The events job: users and events, joined with the valid catalogue -> examples, count
    tables, the id vocabularies, the users' and events' dead letters, the oracle and
    stats.json. It validates the items again, the catalogue job's way, for its item join;
    their dead letters are the catalogue job's to write."""
    raw = raw_files.RawLayout(settings.data)
    layout = WorkLayout(settings.work)
    tables = _read_tables(pipeline, settings, world, (schema.ITEMS, *EVENTS_TABLES))
    by_user = ({"users": tables[schema.USERS][VALID], "events": tables[schema.EVENTS][VALID]}
               | "JoinUsers" >> JoinUsers(settings.max_events_per_user))

    # The bounds travel as a plain dict: Beam would turn a dataclass into a schema Row.
    bounds = static_bounds(settings, world)
    if bounds is not None:
        bounds_pc = pipeline | "SplitBounds" >> beam.Create([bounds.as_dict()])
    else:
        train_days, eval_days = window_days(settings, world)
        valid_days = settings.valid_days
        bounds_pc = (by_user[VALID]
                     | "EventTs" >> beam.Map(lambda event: event["ts"])
                     # No valid event at all: placeholder bounds (nothing is in the future),
                     # so the run still writes its dead letters, then fails on empty splits.
                     | "LastEventTs" >> beam.CombineGlobally(
                         lambda ts: max(ts, default=schema.DEFAULT_MAX_TS))
                     | "SplitBounds" >> beam.Map(
                         lambda last_ts: SplitBounds.from_last_event(
                             last_ts, train_days, eval_days, valid_days).as_dict()))

    by_item = ({"items": tables[schema.ITEMS][VALID], "events": by_user[VALID]}
               | "JoinItems" >> JoinItems(bounds_pc, settings.count_lookback_days))
    examples = (by_item[VALID]
                | "CategoryCounts" >> AttachCategoryCounts(settings.count_lookback_days)
                | "BehaviourSequences" >> BehaviourSequences(settings.max_seq_len,
                                                             settings.count_lookback_days,
                                                             settings.history))

    _ = examples | "WriteExamples" >> WriteExamples(layout, settings.max_seq_len)
    _ = examples | "WriteCountTables" >> WriteCountTables(layout, bounds_pc,
                                                          settings.count_lookback_days)
    _ = by_item[ITEM_DAYS_OUT] | "WriteItemDays" >> beam.io.WriteToText(
        layout.count_table_prefix(ITEM_DAYS), file_name_suffix=".tsv")
    vocabulary_sizes = ({"examples": examples}
                        | "Vocabularies" >> Vocabularies(layout, settings.min_count))
    event_rejects = (by_item[DEAD_LETTER]
                     | "EventDeadLetters" >> beam.Filter(
                         lambda entry: entry["table"] == schema.EVENTS))
    dead_letters = ((*(tables[table][DEAD_LETTER] for table in EVENTS_TABLES),
                     by_user[DEAD_LETTER], event_rejects)
                    | "AllDeadLetters" >> beam.Flatten())
    _ = dead_letters | "WriteDeadLetters" >> WriteDeadLetters(layout, EVENTS_TABLES)
    if FileSystems.match([raw.oracle_pattern])[0].metadata_list:
        _ = (examples
             | "EvalExamples" >> beam.Filter(lambda example: example[features.SPLIT] == "eval")
             | "CopyEvalOracle" >> CopyEvalOracle(raw.oracle_pattern, layout))
    _ = ({"examples": examples, "dead_letter": dead_letters,
          "vocabulary_sizes": vocabulary_sizes}
         | "WriteStats" >> WriteStats(layout.stats_json, bounds_pc,
                                      dataclasses.asdict(settings)))


def check_inputs(settings: PreprocessSettings) -> None:
    """Fails before any work when a required table has no data at all, or when a path named
    like a data file is not one (Beam would skip a folder silently and block on a FIFO)."""
    raw = raw_files.RawLayout(settings.data)
    for table, pattern in [*((table, raw.pattern(table)) for table in schema.TABLES),
                           ("oracle", raw.oracle_pattern)]:
        not_files = raw_files.non_file_matches(pattern)
        if not_files:
            kind = "a directory" if os.path.isdir(not_files[0]) else "not a regular file"
            raise ValueError(f"{not_files[0]} matches the {table} files {pattern} but is "
                             f"{kind}; rename or remove it")
    for table in schema.TABLES:
        matched = FileSystems.match([raw.pattern(table)])[0].metadata_list
        if not matched:
            raise FileNotFoundError(f"no {table} file matches {raw.pattern(table)}")
        if table in REQUIRED_TABLES and not any(file.size_in_bytes for file in matched):
            raise ValueError(f"the {table} input is empty: {raw.pattern(table)}")


def clear_outputs(layout: WorkLayout) -> None:
    """Removes an earlier run's outputs: readers glob shards, so stale ones would be read."""
    for output in layout.preprocess_outputs:
        delete_tree(output)


def _read_json(path: str) -> dict[str, Any]:
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def read_stats(layout: WorkLayout) -> dict[str, Any]:
    return _read_json(layout.stats_json)


def events_read(result) -> int | None:
    """Events the job read, from its committed Beam counters (None if the runner has none)."""
    counters = result.metrics().query(
        MetricsFilter().with_namespace(RECORDS_READ).with_name(schema.EVENTS))["counters"]
    return sum(counter.committed for counter in counters) if counters else None


def _examples_and_rejected_events(stats: dict[str, Any]) -> tuple[int, int]:
    examples = sum(counts["examples"] for counts in stats["splits"].values())
    rejected = sum(count for reason, count in stats["dead_letter"].items()
                   if reason.startswith(f"{schema.EVENTS}."))
    return examples, rejected


def events_accounted(stats: dict[str, Any]) -> int:
    """Events the job turned into examples or dead letters (every event read, once
    ``check_nothing_lost`` passed)."""
    return sum(_examples_and_rejected_events(stats))


def check_nothing_lost(stats: dict[str, Any], read: int | None) -> None:
    """Every event read must be an example or a dead letter: fail loudly otherwise."""
    if read is None:
        return
    examples, rejected = _examples_and_rejected_events(stats)
    if examples + rejected != read:
        raise StageError(
            f"preprocessing lost events: read {read:,}, wrote {examples:,} examples and "
            f"{rejected:,} dead letters ({read - examples - rejected:,} unaccounted for); "
            "the outputs in WORK are incomplete and preprocess.json was not written")


def count_priors(stats: dict[str, Any]) -> dict[str, float]:
    """The click and order rates of the training splits (pretrain + train): what the models'
    count encodings smooth towards. Kept inside (0, 1) so a log without clicks still works."""
    splits = [stats["splits"][split] for split in ("pretrain", "train")]
    examples = max(sum(split["examples"] for split in splits), 1)
    rate = lambda key: min(max(sum(split[key] for split in splits) / examples, 1e-4), 1 - 1e-4)
    return {"click_rate": rate("clicks"), "order_rate": rate("orders")}


def bounds_before_events(settings: PreprocessSettings) -> SplitBounds | None:
    """The split bounds when they are known before the run (world.json suggests them and no
    flag overrides them); None when they come from the events' last day."""
    return static_bounds(settings, _read_world(settings.data))


def start_preprocess(settings: PreprocessSettings, options: PipelineOptions) -> None:
    """Checks the inputs, clears earlier outputs and, when ``bounds_before_events`` knows the
    bounds, runs the catalogue job: then the encoders can train while ``finish_preprocess``
    (always next) runs the events job. Otherwise ``finish_preprocess`` runs both jobs, the
    events job first."""
    check_inputs(settings)
    clear_outputs(WorkLayout(settings.work))
    bounds = bounds_before_events(settings)
    if bounds is not None:
        run_catalogue(settings, options, bounds)


def run_catalogue(settings: PreprocessSettings, options: PipelineOptions,
                  bounds: SplitBounds) -> None:
    """The catalogue job, then catalogue.json (the encoders' go-ahead: written last)."""
    pipeline = beam.Pipeline(options=options)
    build_catalogue_pipeline(pipeline, settings, _read_world(settings.data), bounds)
    pipeline.run().wait_until_finish()
    layout = WorkLayout(settings.work)
    write_json_file({"settings": dataclasses.asdict(settings), "split_bounds": bounds.as_dict()},
                    layout.catalogue_json)


def finish_preprocess(settings: PreprocessSettings, options: PipelineOptions) -> dict[str, Any]:
    """The events job (and the catalogue job after it, when ``start_preprocess`` could not
    run it), then the checks and preprocess.json, written last: its presence means every
    output is complete. Returns stats.json's content."""
    layout = WorkLayout(settings.work)
    pipeline = beam.Pipeline(options=options)
    build_events_pipeline(pipeline, settings, _read_world(settings.data))
    result = pipeline.run()
    result.wait_until_finish()
    stats = read_stats(layout)
    if not FileSystems.exists(layout.catalogue_json):
        run_catalogue(settings, options, SplitBounds(**stats["split_bounds"]))
    stats = merge_catalogue_stats(stats, _read_json(layout.catalogue_stats_json))
    write_json_file(stats, layout.stats_json)
    empty = [split for split, counts in stats["splits"].items() if not counts["examples"]]
    if empty:
        raise ValueError(
            f"no valid examples in split(s) {empty} (dead letters: {stats['dead_letter']}); "
            f"check the input's time span and {layout.path('dead_letter')}/")
    check_nothing_lost(stats, events_read(result))
    metadata = {"settings": dataclasses.asdict(settings), "split_bounds": stats["split_bounds"],
                "max_seq_len": settings.max_seq_len, "history": settings.history,
                "oov_buckets": settings.oov_buckets,
                "count_lookback_days": settings.count_lookback_days,
                "count_priors": count_priors(stats)}
    write_json_file(metadata, layout.preprocess_json)
    return stats


def run_preprocess(settings: PreprocessSettings, options: PipelineOptions) -> dict[str, Any]:
    """Runs both jobs, one after the other, and returns stats.json's content."""
    start_preprocess(settings, options)
    return finish_preprocess(settings, options)


def format_stats(stats: dict[str, Any]) -> str:
    """The summary ``ppm preprocess`` prints."""
    lines = ["preprocessed: examples per split"]
    for split in features.SPLITS:
        counts = stats["splits"][split]
        lines.append(f"  {split:<9} {counts['examples']:>10,}  click rate {counts['click_rate']:.4f}"
                     f"  order rate {counts['order_rate']:.4f}  cold share {counts['cold_share']:.1%}")
    sizes = ", ".join(f"{name} {size:,}" for name, size in stats["vocabulary_sizes"].items())
    lines.append(f"  vocabularies: {sizes}")
    lines.append(f"  valid items {stats['valid'].get('items', 0):,}, "
                 f"queries {stats['valid'].get('queries', 0):,}")
    lines.append(f"  dead letters: {stats['dead_letter_total']:,}")
    lines.extend(f"    {reason}: {count:,}" for reason, count in stats["dead_letter"].items())
    return "\n".join(lines)
