"""Cache level 1: the frozen encoders run over the catalogue, one ME vector per item (Beam).

    WORK/items/*.tfrecord.gz --ReadItems--> (item_id, title, image, has_image)
      --RunInference(text)-->  (item_id, text_vec)         \\
      --RunInference(image)--> (item_id, image_vec, has)    >-- CoGroupByKey --> item vectors
    items without an image skip the image model: fallback  /

Both models run through Beam's ``RunInference`` with a ``TFModelHandlerTensor`` keyed by
``item_id`` (``caching.inference``: plain SavedModels called through their signature; the
text model's tokeniser ops come from tensorflow-text). Each inference function stacks the
raw bytes of a batch into one ``tf.string`` tensor. An item an encoder fails on, after its
batch is retried one item at a time, goes to WORK/item_vectors/dead_letter/ with the
reason, counted by ``embed_items/dead_lettered``, and gets no vector (models treat it as
an unknown item: the zero vector).

Bad images never fail the job: an item whose image does not decode gets the documented
fallback (zero vector, ``has_image`` 0), counted by ``embed_items/image_fallbacks``.

``run_embed_items`` is the job (``beam_jobs.embed_items`` parses its flags): it checks its
inputs, clears an earlier run's shards, runs on whatever runner the options name, and writes
WORK/item_vectors/metadata.json last.
"""
from __future__ import annotations

import dataclasses
import json
import logging
from typing import Any, Iterable, Sequence

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.ml.inference.base import PredictionResult
from apache_beam.options.pipeline_options import PipelineOptions

from ppm_tf import features
from ppm_tf.caching.inference import InferenceWithDeadLetters, SavedModelHandler
from ppm_tf.filesystem import delete_tree
from ppm_tf.preprocessing.outputs import WriteRecords
from ppm_tf.work_layout import IMAGE_ENCODER, TEXT_ENCODER, WorkLayout, read_json

logger = logging.getLogger(__name__)
SERVING = "serving_default"
TEXT_INPUT, IMAGE_INPUT = "titles", "images"
COUNTERS = "embed_items"


def _run_signature(model, batch: Sequence[bytes], input_name: str) -> dict[str, np.ndarray]:
    import tensorflow as tf

    outputs = model.signatures[SERVING](**{input_name: tf.constant(list(batch), tf.string)})
    return {name: value.numpy() for name, value in outputs.items()}


def text_inference_fn(model, batch: Sequence[bytes], inference_args: dict[str, Any],
                      model_id: str | None = None) -> Iterable[PredictionResult]:
    """Titles (bytes) -> ``PredictionResult(title, text_vec [d_t])`` per item."""
    outputs = _run_signature(model, batch, TEXT_INPUT)
    return [PredictionResult(title, vector, model_id)
            for title, vector in zip(batch, outputs[features.TEXT_VEC])]


def image_inference_fn(model, batch: Sequence[bytes], inference_args: dict[str, Any],
                       model_id: str | None = None) -> Iterable[PredictionResult]:
    """Encoded images -> ``PredictionResult(image, (image_vec [d_i], has_image))`` per item.

    Bytes with a JPEG/PNG header that fail to decode abort the whole batch in TensorFlow;
    the batch is then retried item by item and the failing items get the fallback.
    """
    import tensorflow as tf

    try:
        outputs = _run_signature(model, batch, IMAGE_INPUT)
        return [PredictionResult(image, (vector, int(has_image)), model_id)
                for image, vector, has_image in zip(batch, outputs[features.IMAGE_VEC],
                                                    outputs[features.HAS_IMAGE])]
    except tf.errors.InvalidArgumentError:
        if len(batch) == 1:
            dim = model.signatures[SERVING].structured_outputs[features.IMAGE_VEC].shape[-1]
            beam.metrics.Metrics.counter(COUNTERS, "image_decode_errors").inc()
            logger.warning("an image (%d bytes) failed to decode; using the fallback vector",
                           len(batch[0]))
            return [PredictionResult(batch[0], (np.zeros([dim], np.float32), 0), model_id)]
        return [result for image in batch
                for result in image_inference_fn(model, [image], inference_args, model_id)]


def parse_item(serialized: bytes) -> dict[str, Any]:
    """The fields the encoders need, as raw bytes (titles are not decoded: a non-UTF-8 one
    reaches the tokeniser, which defines its encoding)."""
    import tensorflow as tf

    example = tf.train.Example.FromString(serialized).features.feature
    return {features.ITEM_ID: example[features.ITEM_ID].bytes_list.value[0].decode("utf-8"),
            features.TITLE: bytes(example[features.TITLE].bytes_list.value[0]),
            features.IMAGE: bytes(example[features.IMAGE].bytes_list.value[0]),
            features.HAS_IMAGE: int(example[features.HAS_IMAGE].int64_list.value[0])}


def _join(element, image_dim: int) -> Iterable[dict[str, Any]]:
    """(item_id, {"text": [vec], "image": [(vec, has_image)], "failed": [...]}) -> one
    item-vector record, none for an item an encoder dead-lettered."""
    item_id, grouped = element
    if grouped["failed"] or not grouped["text"]:
        return
    if len(grouped["text"]) != 1:
        beam.metrics.Metrics.counter(COUNTERS, "duplicate_item_ids").inc()
    text_vec = np.asarray(grouped["text"][0], np.float32)
    if grouped["image"]:
        image_vec, has_image = grouped["image"][0]
        if not has_image:  # the catalogue had an image, the encoder could not read it
            beam.metrics.Metrics.counter(COUNTERS, "image_fallbacks").inc()
    else:
        image_vec, has_image = np.zeros([image_dim], np.float32), 0
    image_vec = np.asarray(image_vec, np.float32)
    yield {features.ITEM_ID: item_id, features.TEXT_VEC: text_vec,
           features.IMAGE_VEC: image_vec, features.HAS_IMAGE: int(has_image),
           features.PPM_ITEM_VEC: np.concatenate([text_vec, image_vec])}


def _count_catalogue_image(item: dict[str, Any]) -> dict[str, Any]:
    if item[features.HAS_IMAGE]:
        beam.metrics.Metrics.counter(COUNTERS, "catalogue_items_with_image").inc()
    return item


def _encoder_handler(model: str, inference_fn, custom_ops: tuple[str, ...] = ()):
    """``batch_size`` -> an encoder's model handler."""
    def make(batch_size: int) -> SavedModelHandler:
        return SavedModelHandler(model, inference_fn, batch_size=batch_size,
                                 custom_ops=custom_ops, element_bytes=len)
    return make


def _describe_item(encoder: str):
    return lambda item_id: [{"encoder": encoder, features.ITEM_ID: item_id}]


class EmbedItems(beam.PTransform):
    """Serialized catalogue records -> ``(item-vector dicts, dead letters)``: an item an
    encoder fails on (after its batch is retried one by one) is dead-lettered with the
    reason and left out of the vectors."""

    def __init__(self, text_model: str, image_model: str, image_dim: int,
                 batch_size: int = 256):
        super().__init__()
        # tensorflow_text registers the text model's tokeniser ops on the worker.
        self.text_encoder = InferenceWithDeadLetters(
            _encoder_handler(text_model, text_inference_fn, ("tensorflow_text",)),
            batch_size, (COUNTERS, "dead_lettered"), _describe_item(TEXT_ENCODER))
        self.image_encoder = InferenceWithDeadLetters(
            _encoder_handler(image_model, image_inference_fn), batch_size,
            (COUNTERS, "dead_lettered"), _describe_item(IMAGE_ENCODER))
        self.image_dim = image_dim

    def expand(self, serialized):
        items = (serialized
                 | "Parse" >> beam.Map(parse_item)
                 | "CountImages" >> beam.Map(_count_catalogue_image))
        text, text_failed = (
            items
            | "KeyTitles" >> beam.Map(lambda item: (item[features.ITEM_ID],
                                                    item[features.TITLE]))
            | "TextEncoder" >> self.text_encoder)
        image, image_failed = (
            items
            | "WithImage" >> beam.Filter(lambda item: item[features.HAS_IMAGE] > 0)
            | "KeyImages" >> beam.Map(lambda item: (item[features.ITEM_ID],
                                                    item[features.IMAGE]))
            | "ImageEncoder" >> self.image_encoder)
        dead_letters = (text_failed, image_failed) | "DeadLetters" >> beam.Flatten()
        failed = dead_letters | "FailedItems" >> beam.Map(
            lambda record: (record[features.ITEM_ID], record["encoder"]))
        vectors = ({"text": text | "TextVectors" >> beam.MapTuple(_inference),
                    "image": image | "ImageVectors" >> beam.MapTuple(_inference),
                    "failed": failed}
                   | "JoinByItem" >> beam.CoGroupByKey()
                   | "ItemVectors" >> beam.FlatMap(_join, image_dim=self.image_dim))
        return vectors, dead_letters


def _inference(key, result: PredictionResult):
    return key, result.inference


def _sum_rows(rows: Iterable[np.ndarray]) -> np.ndarray:
    total = np.zeros(2, np.int64)
    for row in rows:
        total += row
    return total


def _summary_counts(vectors) -> Any:
    """A one-element PCollection: ``[items, items with has_image 1]``."""
    return (vectors
            | "CountFields" >> beam.Map(
                lambda record: np.array([1, record[features.HAS_IMAGE]], np.int64))
            | "SumCounts" >> beam.CombineGlobally(_sum_rows))


class WriteItemVectors(beam.PTransform):
    """Item-vector dicts -> ``prefix-*.tfrecord.gz`` + ``metadata_path`` (JSON), whose
    ``items`` and ``items_with_image`` count what was written."""

    def __init__(self, prefix: str, metadata_path: str, metadata: dict[str, Any]):
        super().__init__()
        self.prefix = prefix
        self.metadata_path = metadata_path
        self.metadata = metadata

    def expand(self, vectors):
        _ = vectors | "Write" >> WriteRecords(features.ITEM_VECTOR_FEATURES, self.prefix,
                                              features.ITEM_ORDER)
        return (_summary_counts(vectors)
                | "WriteMetadata" >> beam.Map(_write_metadata, path=self.metadata_path,
                                              metadata=self.metadata))


def _write_metadata(counts, path: str, metadata: dict[str, Any]) -> dict[str, Any]:
    content = {**metadata, "items": int(counts[0]), "items_with_image": int(counts[1])}
    with FileSystems.create(path) as handle:
        handle.write((json.dumps(content, indent=2, sort_keys=True) + "\n").encode("utf-8"))
    return content


@dataclasses.dataclass(frozen=True)
class EmbedItemsSettings:
    """What ``ppm embed-items`` was asked to do."""

    work: str
    batch_size: int = 256  # items per encoder call (a shorter last batch is padded)

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {self.batch_size}")


def encoder_descriptions(layout: WorkLayout) -> dict[str, dict[str, Any]]:
    """The ``encoder.json`` of both exports (their presence means complete exports)."""
    return {kind: read_json(layout.encoder_description(kind), "ppm train-encoders --work WORK")
            for kind in (TEXT_ENCODER, IMAGE_ENCODER)}


def clear_outputs(layout: WorkLayout) -> None:
    """Removes an earlier run's shards (readers glob them, so stale ones would be read),
    its dead letters and the table files made from them."""
    delete_tree(layout.item_table_dir + "/")
    delete_tree(layout.path("item_vectors", "dead_letter") + "/")
    stale = [metadata.path
             for result in FileSystems.match([layout.item_vectors_pattern,
                                              layout.item_vectors_metadata])
             for metadata in result.metadata_list]
    if stale:
        FileSystems.delete(stale)


def run_embed_items(settings: EmbedItemsSettings, options: PipelineOptions) -> dict[str, Any]:
    """Runs the job and returns metadata.json's content."""
    layout = WorkLayout(settings.work)
    layout.require_stages("catalogue", "train-encoders")
    descriptions = encoder_descriptions(layout)
    text_dim = descriptions[TEXT_ENCODER]["output_dim"]
    image_dim = descriptions[IMAGE_ENCODER]["output_dim"]
    metadata = {"text_dim": text_dim, "image_dim": image_dim, "item_dim": text_dim + image_dim,
                "image_fallback": "zeros with has_image 0 (no image, or one that does not "
                                  "decode)",
                "encoders": descriptions}
    clear_outputs(layout)
    with beam.Pipeline(options=options) as pipeline:
        vectors, dead_letters = (
            pipeline
            | "ReadItems" >> beam.io.ReadFromTFRecord(
                layout.items_pattern, compression_type=CompressionTypes.GZIP)
            | "EmbedItems" >> EmbedItems(
                layout.encoder_dir(TEXT_ENCODER), layout.encoder_dir(IMAGE_ENCODER), image_dim,
                settings.batch_size))
        _ = vectors | "WriteItemVectors" >> WriteItemVectors(
            layout.item_vectors_prefix, layout.item_vectors_metadata, metadata)
        _ = (dead_letters
             | "DeadLetterJson" >> beam.Map(json.dumps, sort_keys=True)
             | "WriteDeadLetters" >> beam.io.WriteToText(
                 layout.path("item_vectors", "dead_letter", "items"),
                 file_name_suffix=".jsonl"))
    return read_json(layout.item_vectors_metadata, "ppm embed-items --work WORK")
