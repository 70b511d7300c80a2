"""Inputs of the two ME tasks, read from a preprocessed work directory with tf.data.

- Query matching trains on (query, clicked item's title) pairs of the ``pretrain`` and
  ``train`` splits; the ``valid`` split's queries choose settings and the ``eval`` split's
  (later in time) report, each ranked against the whole catalogue. The title is looked up
  in-graph from the catalogue.
- SimCSE (no search log) trains on the catalogue's distinct titles, each the positive of
  itself (``simcse_batches``).
- The text encoder's entity-neighbour metric uses two disjoint seeded shares of the items:
  ``eval`` items (the same ones entity prediction holds out) and ``valid`` items.
- Entity prediction trains on the items that have an image, except a held-out share chosen
  by a seeded hash of ``item_id`` (stable across runs and machines), on which it is evaluated.
  Labels are multi-hot over WORK/vocab/entity.txt; entities outside it are ignored.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data.tfrecords import read_items, read_queries
from ppm_tf.encoders.image import decode_image
from ppm_tf.encoders.query_matching import ITEM_ID, QUERY_IDS, TITLE_IDS
from ppm_tf.encoders.tokenizer import TextTokenizer
from ppm_tf.work_layout import WorkLayout

TRAIN_QUERY_SPLITS = ("pretrain", "train")
VALID_QUERY_SPLITS = ("valid",)
EVAL_QUERY_SPLITS = ("eval",)
_HASH_BUCKETS = 10_000
_READ_BATCH = 1024


def catalogue_titles(work: str) -> tuple[np.ndarray, np.ndarray]:
    """``(item_ids, titles)``: two aligned ``[num_items]`` arrays of bytes, catalogue order."""
    ids, titles = [], []
    for batch in read_items(work, _READ_BATCH, deterministic=True,
                            features=[features.ITEM_ID, features.TITLE]):
        ids.append(batch[features.ITEM_ID].numpy())
        titles.append(batch[features.TITLE].numpy())
    if not ids:
        raise ValueError(f"the catalogue in {WorkLayout(work).items_pattern} is empty")
    return np.concatenate(ids), np.concatenate(titles)


def catalogue_entities(work: str) -> list[list[bytes]]:
    """Each item's entities, in ``catalogue_titles``' order."""
    entities = []
    for batch in read_items(work, _READ_BATCH, deterministic=True,
                            features=[features.ENTITIES]):
        entities.extend(batch[features.ENTITIES].to_list())
    return entities


def queries(work: str, splits: Sequence[str]) -> tf.data.Dataset:
    """Unbatched ``{"query", "item_id"}`` records of the given splits, in file order."""
    wanted = tf.constant(list(splits))
    return (read_queries(work, _READ_BATCH, deterministic=True,
                         features=[features.QUERY, features.ITEM_ID, features.SPLIT])
            .unbatch()
            .filter(lambda record: tf.reduce_any(tf.equal(record[features.SPLIT], wanted)))
            .map(lambda record: {features.QUERY: record[features.QUERY],
                                 features.ITEM_ID: record[features.ITEM_ID]}))


def query_arrays(work: str, splits: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, item_ids)`` of the given splits: two aligned arrays of bytes, file order.
    Whole batches, filtered in NumPy: record by record, the evaluation's reads of the demo's
    60,000 queries took about 10 s."""
    wanted = [split.encode("utf-8") for split in splits]
    texts, item_ids = [np.zeros(0, object)], [np.zeros(0, object)]
    for batch in read_queries(work, _READ_BATCH, deterministic=True,
                              features=[features.QUERY, features.ITEM_ID, features.SPLIT]):
        keep = np.isin(batch[features.SPLIT].numpy(), wanted)
        texts.append(batch[features.QUERY].numpy()[keep])
        item_ids.append(batch[features.ITEM_ID].numpy()[keep])
    return np.concatenate(texts), np.concatenate(item_ids)


def vocabulary_texts(work: str) -> tf.data.Dataset:
    """Batches of strings to learn WordPiece from: all titles, then the training queries
    (never the held-out queries)."""
    titles = read_items(work, _READ_BATCH, deterministic=True,
                        features=[features.TITLE]).map(lambda batch: batch[features.TITLE])
    training_queries = queries(work, TRAIN_QUERY_SPLITS).map(
        lambda record: record[features.QUERY]).batch(_READ_BATCH)
    return titles.concatenate(training_queries)


def title_table(item_ids: np.ndarray, titles: np.ndarray) -> tf.lookup.StaticHashTable:
    return tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(item_ids), tf.constant(titles)),
        default_value="")


def _catalogued(records: tf.data.Dataset,
                titles: tf.lookup.StaticHashTable) -> tf.data.Dataset:
    return records.filter(lambda record: titles.lookup(record[features.ITEM_ID]) != "")


def count_query_matching_pairs(work: str, titles: tf.lookup.StaticHashTable) -> int:
    """Training pairs ``query_matching_pairs`` draws from (before batching)."""
    return int(_catalogued(queries(work, TRAIN_QUERY_SPLITS), titles).reduce(
        0, lambda count, _: count + 1))


def query_matching_pairs(work: str, tokenizer: TextTokenizer,
                         titles: tf.lookup.StaticHashTable, batch_size: int, *,
                         shuffle: bool = True, seed: int = 0) -> tf.data.Dataset:
    """Training batches ``{"query_ids": [B, Lq], "title_ids": [B, Lt], "item_id": [B]}``.

    Pairs whose item is not in the catalogue (none after preprocessing) are dropped. The last
    batch is dropped too: in-batch negatives want full batches.
    """
    pairs = _catalogued(queries(work, TRAIN_QUERY_SPLITS), titles)
    if shuffle:
        pairs = pairs.shuffle(100_000, seed=seed, reshuffle_each_iteration=True)

    def tokenize(batch):
        return {QUERY_IDS: tokenizer(batch[features.QUERY]),
                TITLE_IDS: tokenizer(titles.lookup(batch[features.ITEM_ID])),
                ITEM_ID: batch[features.ITEM_ID]}

    return (pairs.batch(batch_size, drop_remainder=True)
            .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def simcse_batches(titles: np.ndarray, tokenizer: TextTokenizer, batch_size: int, *,
                   seed: int = 0) -> tf.data.Dataset:
    """SimCSE's training batches in query matching's form: ``{"query_ids": [B, L],
    "title_ids": [B, L], "item_id": [B]}`` where both ids are the same title's (the encoder's
    dropout, drawn anew on each side, is the augmentation).

    ``titles`` are deduplicated and empty ones dropped; the title itself is the ``item_id``,
    so two items with one title are never each other's negatives. The last batch is dropped.
    """
    distinct = distinct_titles(titles)

    def tokenize(batch):
        ids = tokenizer(batch)
        return {QUERY_IDS: ids, TITLE_IDS: ids, ITEM_ID: batch}

    return (tf.data.Dataset.from_tensor_slices(distinct)
            .shuffle(len(distinct), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size, drop_remainder=True)
            .map(tokenize, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def distinct_titles(titles: np.ndarray) -> np.ndarray:
    """The non-empty titles, each once (sorted: the order does not depend on the files')."""
    return np.asarray(sorted({title for title in titles.tolist() if title}), dtype=object)


def _hash_buckets(item_ids: tf.Tensor, seed: int) -> tf.Tensor:
    return tf.strings.to_hash_bucket_strong(item_ids, _HASH_BUCKETS, key=[seed, 0x5eed])


def is_heldout_item(item_ids: tf.Tensor, fraction: float, seed: int) -> tf.Tensor:
    """``[batch]`` bool: whether each item is held out from EP training (seeded id hash)."""
    return _hash_buckets(item_ids, seed) < int(round(fraction * _HASH_BUCKETS))


def is_validation_item(item_ids: tf.Tensor, fraction: float, seed: int) -> tf.Tensor:
    """``[batch]`` bool: the next ``fraction`` of the hash buckets after the held-out share
    (disjoint from it), for choosing settings without looking at the held-out items."""
    buckets = _hash_buckets(item_ids, seed)
    share = int(round(fraction * _HASH_BUCKETS))
    return tf.logical_and(buckets >= share, buckets < 2 * share)


def read_entity_vocabulary(work: str) -> list[str]:
    path = WorkLayout(work).vocab("entity")
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: run `ppm preprocess` first")
    with tf.io.gfile.GFile(path, "r") as handle:
        entities = [line.rstrip("\n") for line in handle if line.strip()]
    if not entities:
        raise ValueError(f"{path} is empty: entity prediction needs item entities")
    return entities


def entity_examples(work: str, entities: Sequence[str], image_size: int, *, heldout: bool,
                    holdout_fraction: float, seed: int) -> tf.data.Dataset:
    """Unbatched ``(pixels [size, size, 3] float32, labels [num_entities] float32)`` of the
    items with a decodable image, either the held-out share or the rest.

    Images that do not decode despite a JPEG/PNG header are skipped with a warning.
    """
    lookup = tf.keras.layers.StringLookup(vocabulary=list(entities), num_oov_indices=1,
                                          output_mode="multi_hot")

    def chosen(record):
        held = is_heldout_item(record[features.ITEM_ID][None], holdout_fraction, seed)[0]
        return tf.logical_and(record[features.HAS_IMAGE] > 0, tf.equal(held, heldout))

    def example(record):
        pixels, has_image = decode_image(record[features.IMAGE], image_size)
        labels = lookup(record[features.ENTITIES])[1:]  # column 0 counts unknown entities
        return pixels, labels, has_image

    items = read_items(work, _READ_BATCH, deterministic=True,
                       features=[features.ITEM_ID, features.IMAGE, features.HAS_IMAGE,
                                 features.ENTITIES])
    return (items.unbatch().filter(chosen)
            .map(example, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
            .ignore_errors(log_warning=True)
            .filter(lambda pixels, labels, has_image: has_image > 0)
            .map(lambda pixels, labels, has_image: (pixels, labels)))
