"""Cache level 2: PPM's user states and item vectors cached into the train/eval examples
(Beam).

``RunInference`` with the frozen ``PPMUserTower`` SavedModel turns each example's behaviour
sequence into ``ppm_user_states`` (L x d) and its mask; a join by item id adds the candidate's
``ppm_item_vec``. The models on the recent window then read these cached tensors, so the
tower never enters their training graph.

``run_precompute`` is the job (``beam_jobs.precompute_towers`` parses its flags): it checks
its inputs, clears an earlier run's output, checks that nothing was lost and writes
WORK/cached/metadata.json last.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Iterable, Sequence

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.ml.inference.base import ModelHandler, RunInference
from apache_beam.options.pipeline_options import PipelineOptions

from ppm_tf import features
from ppm_tf.errors import StageError
from ppm_tf.filesystem import delete_tree
from ppm_tf.preprocessing.outputs import WriteRecords
from ppm_tf.work_layout import PRETRAINED, WorkLayout, read_json, write_json

CACHED_SPLITS = ("train", "valid", "eval")


class UserTowerHandler(ModelHandler):
    """RunInference handler for the exported user tower (its ``serving_default``)."""

    def __init__(self, saved_model_dir: str, min_batch_size: int = 64,
                 max_batch_size: int = 1024):
        super().__init__()
        self.saved_model_dir = saved_model_dir
        self.min_batch_size = min_batch_size
        self.max_batch_size = max_batch_size

    def load_model(self):
        import tensorflow as tf  # loaded on the worker
        return tf.saved_model.load(self.saved_model_dir).signatures["serving_default"]

    def run_inference(self, batch: Sequence[dict[str, Any]], model,
                      inference_args=None) -> Iterable[dict[str, Any]]:
        import tensorflow as tf
        outputs = model(
            hist_item_ids=tf.constant([example[features.HIST_ITEM_IDS] for example in batch]),
            hist_ts=tf.constant([example[features.HIST_TS] for example in batch], tf.int64),
            ts=tf.constant([example[features.TS] for example in batch], tf.int64))
        states = outputs[features.PPM_USER_STATES].numpy()
        masks = outputs[features.PPM_USER_MASK].numpy()
        return [{**example, features.PPM_USER_STATES: states[index].ravel().tolist(),
                 features.PPM_USER_MASK: masks[index].tolist()}
                for index, example in enumerate(batch)]

    def batch_elements_kwargs(self):
        return {"min_batch_size": self.min_batch_size, "max_batch_size": self.max_batch_size}


COUNTERS = "precompute"  # Beam counter namespace: examples read and written per split


def _decode(serialized: bytes, split: str) -> dict[str, Any]:
    beam.metrics.Metrics.counter(COUNTERS, f"{split}_read").inc()
    return features.decode_example(serialized, features.EXAMPLE_FEATURES)


def _attach_item_vector(element, item_dim: int, split: str):
    _, grouped = element
    vectors = grouped["vectors"]
    # Items the encoders never saw get the zero vector, as the serving table does.
    vector = list(vectors[0]) if vectors else [0.0] * item_dim
    written = beam.metrics.Metrics.counter(COUNTERS, f"{split}_written")
    for example in grouped["examples"]:
        written.inc()
        yield {**example, features.PPM_ITEM_VEC: vector}


class CacheTowerOutputs(beam.PTransform):
    """Examples of one split -> the same examples with the cached PPM tensors, written."""

    def __init__(self, split: str, layout: WorkLayout, handler: UserTowerHandler,
                 item_vectors, item_dim: int, max_seq_len: int):
        super().__init__()
        self.split = split
        self.layout = layout
        self.handler = handler
        self.item_vectors = item_vectors
        self.item_dim = item_dim
        self.max_seq_len = max_seq_len

    def expand(self, pbegin):
        examples = (pbegin
                    | "Read" >> beam.io.ReadFromTFRecord(self.layout.examples_pattern(self.split))
                    | "Decode" >> beam.Map(_decode, self.split)
                    | "UserTower" >> RunInference(self.handler)
                    | "ByItem" >> beam.Map(lambda example: (example[features.ITEM_ID], example)))
        return ({"examples": examples, "vectors": self.item_vectors}
                | "Join" >> beam.CoGroupByKey()
                | "AttachItemVector" >> beam.FlatMap(_attach_item_vector, self.item_dim,
                                                    self.split)
                | "Write" >> WriteRecords(features.CACHED_EXAMPLE_FEATURES,
                                          self.layout.cached_prefix(self.split),
                                          self.max_seq_len))


def build_pipeline(pipeline: beam.Pipeline, work: str, item_dim: int, max_seq_len: int) -> None:
    layout = WorkLayout(work)
    item_vectors = (pipeline
                    | "ReadItemVectors" >> beam.io.ReadFromTFRecord(layout.item_vectors_pattern)
                    | "DecodeItemVectors" >> beam.Map(features.decode_example,
                                                      features.ITEM_VECTOR_FEATURES)
                    | "KeyItemVectors" >> beam.Map(
                        lambda row: (row[features.ITEM_ID], row[features.PPM_ITEM_VEC])))
    handler = UserTowerHandler(layout.user_tower_dir)
    for split in CACHED_SPLITS:
        _ = pipeline | f"Cache[{split}]" >> CacheTowerOutputs(
            split, layout, handler, item_vectors, item_dim, max_seq_len)


@dataclasses.dataclass(frozen=True)
class PrecomputeSettings:
    """What ``ppm precompute`` was asked to do."""

    work: str


def check_nothing_lost(result) -> None:
    """Every example read must be written with its cached tensors: fail loudly otherwise."""
    counters = result.metrics().query(MetricsFilter().with_namespace(COUNTERS))["counters"]
    totals = {counter.key.metric.name: counter.committed for counter in counters}
    for split in CACHED_SPLITS:
        read, written = totals.get(f"{split}_read"), totals.get(f"{split}_written")
        if read is not None and read != written:
            raise StageError(f"precompute lost {split} examples: read {read:,}, wrote "
                             f"{written or 0:,}; WORK/cached is incomplete and its metadata.json "
                             "was not written")


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
    check_nothing_lost(result)
    metadata = {"max_seq_len": max_seq_len, "tower_dim": pretrained["tower_dim"],
                "item_dim": item_dim}
    write_json(layout.cached_metadata, metadata)
    return metadata
