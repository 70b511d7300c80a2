"""Sharded GZIP TFRecords with the same files, in the same record order, on every run.

Beam's ``WriteToTFRecord`` writes records in the order its bundles finish, which changes from
run to run (on the DirectRunner as on Dataflow), and the training readers' seeded shuffle
starts from that order: two preprocessing runs of the same logs then trained different
batches and moved a model's AUC by up to 0.014 (README, *Two runs of the same command*).
Here every record comes with an order key (``features.*_ORDER``): a record's shard is a
fingerprint of the key's first field (a user's impressions share a shard and stay together,
as the request-grouping readers expect), a split has one shard per ``RECORDS_PER_SHARD``
records, and a shard holds its records sorted by (that fingerprint, key, bytes). Each shard is
written to a temporary name and renamed when complete, so a reader never globs half a shard.
The records written are summed over the shards and must equal the records counted on the way
in: a runner that drops records between the two (the DirectRunner's multi-threaded mode once
wrote 9,962 of 10,000 item vectors without an error) fails the job instead.
"""
from __future__ import annotations

import hashlib
import math
import posixpath
import uuid
from typing import Any, Iterable

import apache_beam as beam
import tensorflow as tf

from ppm_tf.errors import StageError
from ppm_tf.work_layout import TFRECORD_SUFFIX

# Enough to keep shard files few on small logs, few enough that one shard's records sort in a
# worker's memory.
RECORDS_PER_SHARD = 50_000


def order_key(record: dict[str, Any], fields: tuple[str, ...]) -> tuple:
    """The record's values of ``fields``: its place in the written order."""
    return tuple(record[name] for name in fields)


def group_fingerprint(key: tuple) -> int:
    """A stable 64-bit fingerprint of the key's first field (Python's ``hash`` of a string
    changes between processes)."""
    return int.from_bytes(hashlib.blake2b(str(key[0]).encode("utf-8"), digest_size=8).digest(),
                          "big")


def shard_count(records: int, records_per_shard: int) -> int:
    return max(1, math.ceil(records / records_per_shard))


def shard_path(prefix: str, shard: int, shards: int) -> str:
    """Beam's shard naming (``prefix-00003-of-00008.tfrecord.gz``), so the work layout's
    ``*_pattern`` globs match."""
    return f"{prefix}-{shard:05d}-of-{shards:05d}{TFRECORD_SUFFIX}"


def _keyed_by_shard(keyed_record: tuple[tuple, bytes], shards: int):
    key, serialized = keyed_record
    fingerprint = group_fingerprint(key)
    return fingerprint % shards, (fingerprint, key, serialized)


class RecordsLostError(StageError):
    """The runner lost records between counting and writing them."""


def _write_shard(element, prefix: str) -> tuple[str, int]:
    """``(shard, {"records": [(fingerprint, key, bytes)], "shards": [count]})`` -> the
    shard's path and its record count, written through a temporary file (``tf.io.gfile``:
    local or gs://)."""
    shard, grouped = element
    (shards,) = grouped["shards"]
    path = shard_path(prefix, shard, shards)
    records = sorted(grouped["records"])  # a runner's grouped values need not have a len()
    temporary = f"{path}.tmp-{uuid.uuid4().hex}"
    if posixpath.dirname(path):
        tf.io.gfile.makedirs(posixpath.dirname(path))
    try:
        with tf.io.TFRecordWriter(temporary, tf.io.TFRecordOptions(compression_type="GZIP")
                                  ) as writer:
            for _, _, serialized in records:
                writer.write(serialized)
        tf.io.gfile.rename(temporary, path, overwrite=True)
    finally:
        if tf.io.gfile.exists(temporary):
            tf.io.gfile.remove(temporary)
    return path, len(records)


def check_nothing_lost(written: int, counted: int, prefix: str) -> None:
    if written != counted:
        raise RecordsLostError(f"{prefix}: {counted:,} records came to be written and "
                               f"{written:,} were written; the runner lost records (re-run "
                               "with the DirectRunner's in_memory mode, the default here)")


def _shard_ids(shards: int) -> Iterable[tuple[int, int]]:
    return ((shard, shards) for shard in range(shards))


class WriteTFRecordShards(beam.PTransform):
    """``(order key, serialized record)`` pairs -> ``prefix-SSSSS-of-NNNNN.tfrecord.gz``
    (at least one shard, empty when there is no record); returns the shards' paths."""

    def __init__(self, prefix: str, records_per_shard: int = RECORDS_PER_SHARD):
        super().__init__()
        self.prefix = prefix
        self.records_per_shard = records_per_shard

    def expand(self, keyed_records):
        counted = keyed_records | "Count" >> beam.combiners.Count.Globally()
        shards = counted | "ShardCount" >> beam.Map(shard_count, self.records_per_shard)
        by_shard = keyed_records | "KeyByShard" >> beam.Map(
            _keyed_by_shard, shards=beam.pvalue.AsSingleton(shards))
        shard_ids = shards | "ShardIds" >> beam.FlatMap(_shard_ids)
        written = ({"records": by_shard, "shards": shard_ids}
                   | "GroupByShard" >> beam.CoGroupByKey()
                   | "WriteShard" >> beam.Map(_write_shard, self.prefix))
        _ = (written
             | "RecordsPerShard" >> beam.Map(lambda path_and_records: path_and_records[1])
             | "RecordsWritten" >> beam.CombineGlobally(sum)
             | "CheckNothingLost" >> beam.Map(check_nothing_lost,
                                              counted=beam.pvalue.AsSingleton(counted),
                                              prefix=self.prefix))
        return written | "Paths" >> beam.Map(lambda path_and_records: path_and_records[0])
