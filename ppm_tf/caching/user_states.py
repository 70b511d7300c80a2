"""Cache level 2: PPM's user states and item vectors cached into the train/eval examples
(Beam).

The user tower depends only on the history at request time, so it runs once per distinct
history of a request, not once per impression::

    examples --Decode--> GroupByKey (user_id, request_id)       one request's impressions
      --DistinctHistories--> (impressions, tower input)           one per distinct history
      --RunInference(user tower, dead letters)--> states          the tower's only calls
      --AttachCachedTensors(item vectors as a side input)--> impressions with
        ``ppm_user_states`` (L x d), ``ppm_user_mask`` and ``ppm_item_vec`` --> TFRecords

Records travel as their serialised bytes: only the key, the item and the tower's inputs are
decoded, and the cached tensors are appended to the bytes (``_attach_cached_tensors``), so no
impression is decoded into a dict, shuffled as one and encoded again.

No key holds more than one request's impressions, and item vectors reach the impressions as
a side input (a dict the catalogue fits in), not by a join on ``item_id`` that would put
every impression of a popular item on one worker. The states are joined back to every
impression, so the cached examples keep one self-contained record per impression and
training reads stay a plain TFRecord scan (storing them once per request would save bytes,
not compute, at the price of a join in every training read).

A record that does not decode, or a history the tower rejects, goes to
WORK/cached/dead_letter/<split>-*.jsonl with its reason and is counted; the rest is written.

``run_precompute`` is the job (``beam_jobs.precompute_towers`` parses its flags): it checks
its inputs, clears an earlier run's output, checks that every example read was written or
dead-lettered and writes WORK/cached/metadata.json last.
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any, Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.options.pipeline_options import PipelineOptions

from ppm_tf import features
from ppm_tf.caching.inference import InferenceWithDeadLetters, SavedModelHandler, failure_reason
from ppm_tf.errors import StageError
from ppm_tf.filesystem import delete_tree
from ppm_tf.preprocessing.shards import WriteTFRecordShards, order_key
from ppm_tf.work_layout import PRETRAINED, WorkLayout, read_json, write_json

CACHED_SPLITS = ("train", "valid", "eval")
COUNTERS = "precompute"  # Beam counter namespace: per split read, written, dead-lettered
SERVING = "serving_default"


def tower_inference_fn(model, batch: Sequence[dict[str, Any]], inference_args=None,
                       model_id: str | None = None) -> list[PredictionResult]:
    """Histories -> ``PredictionResult(history, {ppm_user_states [L, d], ppm_user_mask
    [L]})``, one call of the exported tower's ``serving_default`` per batch."""
    import tensorflow as tf

    outputs = model.signatures[SERVING](**{
        name: tf.constant([history[name] for history in batch],
                          tf.string if name == features.HIST_ITEM_IDS else tf.int64)
        for name in features.USER_STATE_INPUTS})
    states = outputs[features.PPM_USER_STATES].numpy()
    masks = outputs[features.PPM_USER_MASK].numpy()
    return [PredictionResult(history, {features.PPM_USER_STATES: states[index],
                                       features.PPM_USER_MASK: masks[index]}, model_id)
            for index, history in enumerate(batch)]


def tower_handler(saved_model_dir: str):
    """``batch_size`` -> the user tower's model handler."""
    def make(batch_size: int) -> SavedModelHandler:
        return SavedModelHandler(saved_model_dir, tower_inference_fn, batch_size=batch_size)
    return make


# What precompute reads of a record; the rest travels as the record's bytes.
_IMPRESSION_FIELDS = (*features.EXAMPLE_ORDER, *features.USER_STATE_INPUTS)


def _impression(serialized: bytes, split: str):
    """A record -> ``((user_id, request_id), (tower input, item_id, order key,
    serialized))``. Every example feature must be there (else it raises and the record is
    dead-lettered), but only the keys and the tower's inputs are decoded: the record goes on
    as bytes, and is written in the examples' order (``features.EXAMPLE_ORDER``)."""
    beam.metrics.Metrics.counter(COUNTERS, f"{split}_read").inc()
    fields = features.decode_example(serialized, features.EXAMPLE_FEATURES,
                                     select=_IMPRESSION_FIELDS)
    history = tuple(_hashable(fields[name]) for name in features.USER_STATE_INPUTS)
    return ((fields[features.USER_ID], fields[features.REQUEST_ID]),
            (history, fields[features.ITEM_ID], order_key(fields, features.EXAMPLE_ORDER),
             serialized))


def _hashable(value):
    return tuple(value) if isinstance(value, list) else value


def _undecodable(failure, split: str) -> Iterable[dict[str, Any]]:
    record, error = failure
    beam.metrics.Metrics.counter(COUNTERS, f"{split}_dead_lettered").inc()
    yield {"split": split, "record_bytes": len(record), "record_start": record[:64].hex(),
           "reason": failure_reason(error)}


def _distinct_histories(element, split: str):
    """One request's impressions -> ``((user_id, request_id, ((item_id, order key,
    serialized), ...)), history)`` per distinct tower input (one, unless the request's
    impressions were logged at different times)."""
    (user_id, request_id), impressions = element
    by_history: dict[tuple, list[tuple[str, tuple, bytes]]] = {}
    for history, *impression in impressions:
        by_history.setdefault(history, []).append(tuple(impression))
    histories = beam.metrics.Metrics.counter(COUNTERS, f"{split}_tower_inputs")
    for history, group in by_history.items():
        histories.inc()
        yield (user_id, request_id, tuple(group)), {
            name: list(value) if isinstance(value, tuple) else value
            for name, value in zip(features.USER_STATE_INPUTS, history)}


def _describe_impressions(key, split: str) -> list[dict[str, Any]]:
    user_id, request_id, impressions = key
    return [{"split": split, features.REQUEST_ID: request_id, features.USER_ID: user_id,
             features.ITEM_ID: item_id} for item_id, _, _ in impressions]


_STATE_FEATURES = tuple(feature for feature in features.CACHED_FEATURES
                        if feature.name != features.PPM_ITEM_VEC)
_ITEM_VEC_FEATURES = tuple(feature for feature in features.CACHED_FEATURES
                           if feature.name == features.PPM_ITEM_VEC)


def _attach_cached_tensors(element, item_vectors: dict[str, np.ndarray], item_dim: int,
                           max_seq_len: int, split: str):
    """``((user_id, request_id, impressions), tower result)`` -> ``(order key, record)`` of
    each impression, the record with its request's states and its item's vector (items the
    encoders never saw get the zero vector, as the serving table does).

    A serialised message followed by another parses as their merge (protobuf's wire format;
    map entries with new keys are added), so the record read is kept as bytes and the cached
    features are appended as a second and third ``tf.train.Example``: the states once per
    request, the item vector per impression. Readers see one Example with every
    ``features.CACHED_EXAMPLE_FEATURES`` entry, without the record being decoded and
    re-encoded."""
    (_, _, impressions), result = element
    states = features.encode_example(
        {features.PPM_USER_STATES: result.inference[features.PPM_USER_STATES].ravel(),
         features.PPM_USER_MASK: result.inference[features.PPM_USER_MASK]},
        _STATE_FEATURES, max_seq_len)
    zeros = np.zeros([item_dim], np.float32)
    written = beam.metrics.Metrics.counter(COUNTERS, f"{split}_written")
    for item_id, order, serialized in impressions:
        written.inc()
        yield order, serialized + states + features.encode_example(
            {features.PPM_ITEM_VEC: item_vectors.get(item_id, zeros)}, _ITEM_VEC_FEATURES)


class CacheTowerOutputs(beam.PTransform):
    """Examples of one split -> the same examples with the cached PPM tensors, written;
    returns the split's dead letters."""

    def __init__(self, split: str, layout: WorkLayout, saved_model_dir: str, item_vectors,
                 item_dim: int, max_seq_len: int, batch_size: int = 1024):
        super().__init__()
        self.split = split
        self.layout = layout
        self.saved_model_dir = saved_model_dir
        self.item_vectors = item_vectors
        self.item_dim = item_dim
        self.max_seq_len = max_seq_len
        self.batch_size = batch_size

    def expand(self, pbegin):
        split = self.split
        examples, undecodable = (
            pbegin
            | "Read" >> beam.io.ReadFromTFRecord(self.layout.examples_pattern(split))
            | "Decode" >> beam.Map(_impression, split).with_exception_handling())
        states, rejected = (
            examples
            | "GroupByRequest" >> beam.GroupByKey()
            | "DistinctHistories" >> beam.FlatMap(_distinct_histories, split)
            | "UserTower" >> InferenceWithDeadLetters(
                tower_handler(self.saved_model_dir), self.batch_size,
                (COUNTERS, f"{split}_dead_lettered"),
                lambda impressions: _describe_impressions(impressions, split)))
        _ = (states
             | "AttachCachedTensors" >> beam.FlatMap(
                 _attach_cached_tensors, beam.pvalue.AsDict(self.item_vectors),
                 self.item_dim, self.max_seq_len, split)
             | "Write" >> WriteTFRecordShards(self.layout.cached_prefix(split)))
        return ((undecodable | "UndecodableReasons" >> beam.FlatMap(_undecodable, split)),
                rejected) | "DeadLetters" >> beam.Flatten()


def _item_vector(row: dict[str, Any]) -> tuple[str, np.ndarray]:
    return row[features.ITEM_ID], np.asarray(row[features.PPM_ITEM_VEC], np.float32)


def build_pipeline(pipeline: beam.Pipeline, work: str, item_dim: int, max_seq_len: int) -> None:
    layout = WorkLayout(work)
    item_vectors = (pipeline
                    | "ReadItemVectors" >> beam.io.ReadFromTFRecord(layout.item_vectors_pattern)
                    | "DecodeItemVectors" >> beam.Map(features.decode_example,
                                                      features.ITEM_VECTOR_FEATURES)
                    | "KeyItemVectors" >> beam.Map(_item_vector))
    for split in CACHED_SPLITS:
        dead_letters = pipeline | f"Cache[{split}]" >> CacheTowerOutputs(
            split, layout, layout.user_tower_dir, item_vectors, item_dim, max_seq_len)
        _ = (dead_letters
             | f"DeadLetterJson[{split}]" >> beam.Map(json.dumps, sort_keys=True)
             | f"WriteDeadLetters[{split}]" >> beam.io.WriteToText(
                 layout.path("cached", "dead_letter", split), file_name_suffix=".jsonl"))


@dataclasses.dataclass(frozen=True)
class PrecomputeSettings:
    """What ``ppm precompute`` was asked to do."""

    work: str


def precompute_counts(result) -> dict[str, dict[str, int]]:
    """Per split: examples read, written, dead-lettered, and the tower's inputs (distinct
    histories: what the tower ran on)."""
    counters = result.metrics().query(MetricsFilter().with_namespace(COUNTERS))["counters"]
    totals: dict[str, int] = {}
    for counter in counters:  # one result per step that counts under a name
        totals[counter.key.metric.name] = (totals.get(counter.key.metric.name, 0)
                                           + (counter.committed or 0))
    return {split: {name: int(totals.get(f"{split}_{name}", 0))
                    for name in ("read", "written", "dead_lettered", "tower_inputs")}
            for split in CACHED_SPLITS}


def check_nothing_lost(counts: dict[str, dict[str, int]]) -> None:
    """Every example read must be written with its cached tensors or dead-lettered: fail
    loudly otherwise."""
    for split, split_counts in counts.items():
        read, written, dead = (split_counts[name]
                               for name in ("read", "written", "dead_lettered"))
        if read != written + dead:
            raise StageError(f"precompute lost {split} examples: read {read:,}, wrote "
                             f"{written:,}, dead-lettered {dead:,}; WORK/cached is "
                             "incomplete and its metadata.json was not written")


def run_precompute(settings: PrecomputeSettings, options: PipelineOptions) -> dict[str, Any]:
    """Runs the job and returns WORK/cached/metadata.json's content."""
    layout = WorkLayout(settings.work)
    layout.require_stages("preprocess", "embed-items", "pretrain")
    pretrained = read_json(layout.training_summary(PRETRAINED), layout.command("pretrain"))
    item_dim = read_json(layout.item_vectors_metadata, layout.command("embed-items"))["item_dim"]
    max_seq_len = read_json(layout.preprocess_json, layout.command("preprocess"))["max_seq_len"]
    delete_tree(layout.path("cached/"))  # readers glob shards: stale ones would be read
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, settings.work, item_dim, max_seq_len)
    result = pipeline.run()
    result.wait_until_finish()
    counts = precompute_counts(result)
    check_nothing_lost(counts)
    metadata = {"max_seq_len": max_seq_len, "tower_dim": pretrained["tower_dim"],
                "item_dim": item_dim, "counts": counts}
    write_json(layout.cached_metadata, metadata)
    return metadata
