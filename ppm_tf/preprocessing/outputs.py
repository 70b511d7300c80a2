"""Writers: sharded GZIP TFRecords per split, the catalogue and search log, dead letters,
the eval split's oracle, and stats.json (exact counts, computed as PCollections)."""
from __future__ import annotations

import json
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from ppm_tf import features
from ppm_tf.data import schema
from ppm_tf.preprocessing.shards import WriteTFRecordShards, order_key
from ppm_tf.preprocessing.validate import dead_letter_json, dead_letter_key
from ppm_tf.work_layout import WorkLayout


def _keyed_encoding(record, feature_table, order: tuple[str, ...], max_seq_len: int):
    return order_key(record, order), features.encode_example(record, feature_table, max_seq_len)


class WriteRecords(beam.PTransform):
    """Encodes dicts with a feature table and writes them as TFRecords under ``prefix``, in
    the order of their ``order`` fields (``shards``: the same files on every run)."""

    def __init__(self, feature_table, prefix: str, order: tuple[str, ...],
                 max_seq_len: int = 0):
        super().__init__()
        self.feature_table = feature_table
        self.prefix = prefix
        self.order = order
        self.max_seq_len = max_seq_len

    def expand(self, records):
        return (records
                | "Encode" >> beam.Map(_keyed_encoding, self.feature_table, self.order,
                                       self.max_seq_len)
                | "Write" >> WriteTFRecordShards(self.prefix))


class WriteExamples(beam.PTransform):
    """Examples -> WORK/examples/<split>/part-*.tfrecord.gz, one folder per split."""

    def __init__(self, layout: WorkLayout, max_seq_len: int):
        super().__init__()
        self.layout = layout
        self.max_seq_len = max_seq_len

    def expand(self, examples):
        per_split = examples | "BySplit" >> beam.Partition(
            lambda example, _: features.SPLITS.index(example[features.SPLIT]), len(features.SPLITS))
        for split, split_examples in zip(features.SPLITS, per_split):
            _ = split_examples | f"Write[{split}]" >> WriteRecords(
                features.EXAMPLE_FEATURES, self.layout.examples_prefix(split),
                features.EXAMPLE_ORDER, self.max_seq_len)


class WriteDeadLetters(beam.PTransform):
    """Dead-letter entries of ``tables`` -> WORK/dead_letter/<table>-*.jsonl (a file per
    table, empty or not; the catalogue job writes its tables', the events job the others')."""

    def __init__(self, layout: WorkLayout, tables: tuple[str, ...]):
        super().__init__()
        self.layout = layout
        self.tables = tables

    def expand(self, entries):
        tables = self.tables
        per_table = entries | "ByTable" >> beam.Partition(
            lambda entry, _: tables.index(entry["table"]), len(tables))
        for table, table_entries in zip(tables, per_table):
            _ = (table_entries
                 | f"Json[{table}]" >> beam.Map(dead_letter_json)
                 | f"Write[{table}]" >> beam.io.WriteToText(
                     self.layout.dead_letter_prefix(table), file_name_suffix=".jsonl"))


def _oracle_key(row: dict[str, Any]):
    return (row["request_id"], row["item_id"]), row


def _matched_oracle(element):
    _, grouped = element
    if grouped["examples"]:
        yield from grouped["oracle"]


class CopyEvalOracle(beam.PTransform):
    """Synthetic worlds: the true probabilities of the eval examples, apart from features."""

    def __init__(self, oracle_pattern: str, layout: WorkLayout):
        super().__init__()
        self.oracle_pattern = oracle_pattern
        self.layout = layout

    def expand(self, eval_examples):
        oracle = (eval_examples.pipeline
                  | "ReadOracle" >> beam.io.ReadFromText(self.oracle_pattern)
                  | "Parse" >> beam.Map(json.loads)
                  | "KeyOracle" >> beam.Map(_oracle_key))
        examples = eval_examples | "KeyExamples" >> beam.Map(
            lambda example: ((example[features.REQUEST_ID], example[features.ITEM_ID]), None))
        return ({"oracle": oracle, "examples": examples}
                | "Join" >> beam.CoGroupByKey()
                | "Matched" >> beam.FlatMap(_matched_oracle)
                | "Json" >> beam.Map(json.dumps, sort_keys=True)
                | "Write" >> beam.io.WriteToText(self.layout.oracle_eval_prefix,
                                                 file_name_suffix=".jsonl"))


def _example_counts(example):
    return example[features.SPLIT], (1, example[features.CLICK], example[features.ORDER],
                                     example[features.IS_COLD_ITEM])


def _sum_counts(rows):
    return tuple(map(sum, zip(*rows))) if rows else (0, 0, 0, 0)


def _assemble_stats(parts, bounds, settings, with_splits: bool = True) -> dict[str, Any]:
    stats = {"dead_letter": {}, "vocabulary_sizes": {}, "valid": {},
             "split_bounds": bounds, "settings": settings}
    if with_splits:
        stats["splits"] = {split: {"examples": 0, "clicks": 0, "orders": 0, "cold_examples": 0}
                           for split in features.SPLITS}
    for section, key, value in parts:
        if section == "splits":
            examples, clicks, orders, cold = value
            stats["splits"][key] = {"examples": examples, "clicks": clicks, "orders": orders,
                                    "cold_examples": cold}
        else:
            stats[section][key] = value
    for split_stats in stats.get("splits", {}).values():
        examples = max(split_stats["examples"], 1)
        split_stats.update(click_rate=split_stats["clicks"] / examples,
                           order_rate=split_stats["orders"] / examples,
                           cold_share=split_stats["cold_examples"] / examples)
    return _with_dead_letter_total(stats)


def _with_dead_letter_total(stats: dict[str, Any]) -> dict[str, Any]:
    stats["dead_letter"] = dict(sorted(stats["dead_letter"].items()))
    stats["dead_letter_total"] = sum(stats["dead_letter"].values())
    return stats


def merge_catalogue_stats(events: dict[str, Any], catalogue: dict[str, Any]) -> dict[str, Any]:
    """stats.json of the whole run: the events job's, with the catalogue job's dead letters,
    valid counts and vocabulary sizes (their tables never overlap)."""
    merged = {**events}
    for section in ("dead_letter", "valid", "vocabulary_sizes"):
        merged[section] = {**events[section], **catalogue[section]}
    return _with_dead_letter_total(merged)


def write_json_file(value: dict[str, Any], path: str) -> None:
    """JSON through Beam's filesystems (local or gs://), as the jobs write everything."""
    with FileSystems.create(path) as handle:
        handle.write((json.dumps(value, indent=2, sort_keys=True) + "\n").encode("utf-8"))


class WriteStats(beam.PTransform):
    """{"dead_letter", "vocabulary_sizes"} with "examples" (the events job) or "items" and
    "queries" (the catalogue job) -> the job's stats JSON at ``path``."""

    def __init__(self, path: str, bounds, settings: dict[str, Any]):
        super().__init__()
        self.path = path
        self.bounds = bounds
        self.settings = settings

    def expand(self, inputs):
        split_counts = []
        if "examples" in inputs:
            split_counts.append(inputs["examples"]
                                | "SplitOf" >> beam.Map(_example_counts)
                                | "SumSplits" >> beam.CombinePerKey(_sum_counts)
                                | "SplitRows" >> beam.Map(lambda kv: ("splits", kv[0], kv[1])))
        dead_counts = (inputs["dead_letter"]
                       | "Reason" >> beam.Map(dead_letter_key)
                       | "CountReasons" >> beam.combiners.Count.PerElement()
                       | "ReasonRows" >> beam.Map(lambda kv: ("dead_letter", kv[0], kv[1])))
        vocab_sizes = inputs["vocabulary_sizes"] | "VocabRows" >> beam.Map(
            lambda kv: ("vocabulary_sizes", kv[0], kv[1]))
        valid_counts = [inputs[name]
                        | f"Count[{name}]" >> beam.combiners.Count.Globally()
                        | f"Row[{name}]" >> beam.Map(lambda count, name=name: ("valid", name, count))
                        for name in ("items", "queries") if name in inputs]
        return ((*split_counts, dead_counts, vocab_sizes, *valid_counts)
                | "AllRows" >> beam.Flatten()
                | "Collect" >> beam.combiners.ToList()
                | "Assemble" >> beam.Map(_assemble_stats, bounds=beam.pvalue.AsSingleton(self.bounds),
                                         settings=self.settings,
                                         with_splits=bool(split_counts))
                | "WriteJson" >> beam.Map(write_json_file, path=self.path))
