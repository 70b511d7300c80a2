"""Preprocessed TFRecords -> ``tf.data`` pipelines: how the package reads a work dir's records.

``ppm preprocess`` writes GZIP TFRecord shards into a work directory (see ``work_layout``);
these readers parse them with the tables in ``ppm_tf.features``, so a feature added there is
read here without changes. Every reader returns a dataset of dicts of batched tensors:
scalars are ``[batch]``, behaviour sequences ``[batch, max_seq_len]`` and variable-length
lists (the catalogue's ``entities``) ``tf.RaggedTensor`` of shape ``[batch, None]``.

Records are batched before they are parsed: ``tf.io.parse_example`` on a batch is far faster
than one parse per record. Paths go through ``tf.io.gfile``, so ``gs://`` work dirs work.
"""
from __future__ import annotations

import random
from typing import Any, Iterable, Sequence

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf import features as feature_tables
from ppm_tf.work_layout import WorkLayout, read_json

_RUN_PREPROCESS_FIRST = "run `ppm preprocess --data RAW --out WORK` first"


def load_preprocess_metadata(work: str) -> dict[str, Any]:
    """WORK/preprocess.json: ``max_seq_len``, ``oov_buckets``, ``split_bounds``, ``settings``.

    The preprocess job writes this file last, so its presence also means the run finished.
    """
    layout = WorkLayout(work)
    return read_json(layout.preprocess_json, layout.command("preprocess"))


def read_split(work: str, split: str | Sequence[str], batch_size: int, *, shuffle: bool = False,
               shuffle_buffer: int = 10_000, repeat: bool = False, deterministic: bool = False,
               seed: int | None = None, features: Sequence[str] | None = None,
               drop_remainder: bool = False, group_requests: bool = False,
               max_group: int | None = None) -> tf.data.Dataset:
    """Impressions of one time split (``features.SPLITS``), or several (e.g. ("pretrain",
    "train") for the long span), as batches of ``features.EXAMPLE_FEATURES``; sequences have
    preprocess.json's ``max_seq_len``.

    Args:
        shuffle: shuffle records through a ``shuffle_buffer``-sized buffer (and the shard
            order), reshuffled each epoch; ``seed`` makes it reproducible.
        repeat: repeat forever (for ``steps_per_epoch`` training loops).
        deterministic: keep a fixed record order (given ``seed`` when shuffling); off by
            default because parallel reads that may reorder records are faster.
        features: names to parse (default all); selecting fewer saves parsing time.
        drop_remainder: drop a last, smaller batch (for static batch shapes, e.g. TPUs).
        group_requests: keep each request's impressions next to each other, so that they
            share a batch (for in-request ranking losses): records are gathered in windows of
            ``shuffle_buffer`` records and regrouped by ``request_id`` inside each window; when
            shuffling, whole requests are shuffled within the window instead of records.
        max_group: with ``group_requests``, a request's records in a window come in groups
            of at most this many, each group shuffled as a unit (None: whole requests), so a
            request of a thousand impressions does not fill a batch on its own.
    """
    patterns = [WorkLayout(work).examples_pattern(name) for name in _split_names(split)]
    max_seq_len = load_preprocess_metadata(work)["max_seq_len"]
    return _read_records(
        patterns, feature_tables.EXAMPLE_FEATURES, max_seq_len,
        batch_size, shuffle=shuffle, shuffle_buffer=shuffle_buffer, repeat=repeat,
        deterministic=deterministic, seed=seed, features=features, drop_remainder=drop_remainder,
        group_requests=group_requests, max_group=max_group)


def read_cached(work: str, split: str | Sequence[str], batch_size: int, *, shuffle: bool = False,
                shuffle_buffer: int = 10_000, repeat: bool = False, deterministic: bool = False,
                seed: int | None = None, features: Sequence[str] | None = None,
                drop_remainder: bool = False, group_requests: bool = False,
                max_group: int | None = None) -> tf.data.Dataset:
    """Like ``read_split``, for the examples with PPM's cached tensors (``ppm precompute``):
    adds ``ppm_user_states [batch, L, d]``, ``ppm_user_mask [batch, L]`` and
    ``ppm_item_vec [batch, item_dim]``."""
    metadata = load_cached_metadata(work)
    max_seq_len = metadata["max_seq_len"]
    dims = {feature_tables.PPM_USER_STATES: max_seq_len * metadata["tower_dim"],
            feature_tables.PPM_ITEM_VEC: metadata["item_dim"]}
    layout = WorkLayout(work)
    patterns = [layout.cached_pattern(name) for name in _split_names(split)]
    dataset = _read_records(
        patterns, feature_tables.CACHED_EXAMPLE_FEATURES, max_seq_len, batch_size,
        shuffle=shuffle, shuffle_buffer=shuffle_buffer, repeat=repeat,
        deterministic=deterministic, seed=seed, features=features,
        drop_remainder=drop_remainder, group_requests=group_requests, max_group=max_group,
        vector_dims=dims)

    def unflatten_states(batch):
        if feature_tables.PPM_USER_STATES in batch:
            batch = dict(batch)
            batch[feature_tables.PPM_USER_STATES] = tf.reshape(
                batch[feature_tables.PPM_USER_STATES], [-1, max_seq_len, metadata["tower_dim"]])
        return batch

    return dataset.map(unflatten_states)


def load_cached_metadata(work: str) -> dict[str, Any]:
    """WORK/cached/metadata.json: ``max_seq_len``, ``tower_dim``, ``item_dim``."""
    layout = WorkLayout(work)
    return read_json(layout.cached_metadata, layout.command("precompute"))


def serialized_examples(work: str, split: str, limit: int, *, cached: bool = False
                        ) -> list[bytes]:
    """The first ``limit`` records of a split as serialized ``tf.train.Example``s, in shard
    order (what a ``predict_examples`` signature takes); ``cached``: precompute's examples.
    Empty when the split has no shard."""
    layout = WorkLayout(work)
    (name,) = _split_names(split)
    files = sorted(tf.io.gfile.glob(layout.cached_pattern(name) if cached
                                    else layout.examples_pattern(name)))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").take(limit)
    return [record.numpy() for record in records]


def _split_names(split: str | Sequence[str]) -> tuple[str, ...]:
    names = (split,) if isinstance(split, str) else tuple(split)
    if not names:
        raise ValueError(f"no split given; valid splits: {list(feature_tables.SPLITS)}")
    for name in names:
        if name not in feature_tables.SPLITS:
            raise ValueError(f"unknown split {name!r}; valid splits: {list(feature_tables.SPLITS)}")
    return names


def read_items(work: str, batch_size: int, *, shuffle: bool = False, shuffle_buffer: int = 10_000,
               repeat: bool = False, deterministic: bool = False, seed: int | None = None,
               features: Sequence[str] | None = None,
               drop_remainder: bool = False) -> tf.data.Dataset:
    """The valid catalogue as batches of ``features.ITEM_FEATURES`` (what the modal encoders
    read); ``image`` holds the encoded image bytes as supplied (PNG for synthetic worlds; decode
    with ``tf.io.decode_image``), ``""`` where ``has_image`` is 0. Arguments as in
    ``read_split``."""
    WorkLayout(work).require_stages("catalogue")  # fails clearly on an unfinished run
    return _read_records(
        WorkLayout(work).items_pattern, feature_tables.ITEM_FEATURES, 0, batch_size,
        shuffle=shuffle, shuffle_buffer=shuffle_buffer, repeat=repeat,
        deterministic=deterministic, seed=seed, features=features, drop_remainder=drop_remainder)


def read_queries(work: str, batch_size: int, *, shuffle: bool = False,
                 shuffle_buffer: int = 10_000, repeat: bool = False, deterministic: bool = False,
                 seed: int | None = None, features: Sequence[str] | None = None,
                 drop_remainder: bool = False) -> tf.data.Dataset:
    """The valid search log as batches of ``features.QUERY_FEATURES`` (what query matching
    trains on). Arguments as in ``read_split``."""
    WorkLayout(work).require_stages("catalogue")
    return _read_records(
        WorkLayout(work).queries_pattern, feature_tables.QUERY_FEATURES, 0, batch_size,
        shuffle=shuffle, shuffle_buffer=shuffle_buffer, repeat=repeat,
        deterministic=deterministic, seed=seed, features=features, drop_remainder=drop_remainder)


def _select(table: Sequence[feature_tables.Feature],
            names: Iterable[str] | None) -> tuple[feature_tables.Feature, ...]:
    if names is None:
        return tuple(table)
    if isinstance(names, str):  # a lone name would otherwise be read letter by letter
        raise TypeError(f"features= takes a sequence of names, got the string {names!r}")
    by_name = {feature.name: feature for feature in table}
    names = tuple(names)
    unknown = [name for name in names if name not in by_name]
    if unknown:
        raise ValueError(f"unknown feature(s) {unknown}; valid names: {list(by_name)}")
    if not names:
        raise ValueError("features= selects no feature; pass None to read them all")
    return tuple(by_name[name] for name in names)


def _read_records(pattern: str | list[str], table: Sequence[feature_tables.Feature],
                  max_seq_len: int, batch_size: int, *, shuffle: bool, shuffle_buffer: int,
                  repeat: bool, deterministic: bool, seed: int | None,
                  features: Sequence[str] | None, drop_remainder: bool,
                  group_requests: bool = False, max_group: int | None = None,
                  vector_dims: dict[str, int] | None = None) -> tf.data.Dataset:
    spec = feature_tables.parse_spec(_select(table, features), max_seq_len, vector_dims)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    for one_pattern in [pattern] if isinstance(pattern, str) else pattern:
        if not tf.io.gfile.glob(one_pattern):
            raise FileNotFoundError(
                f"no TFRecord shard matches {one_pattern}: {_RUN_PREPROCESS_FIRST}")

    # Shard order is shuffled whenever order does not have to be kept, and when shuffling:
    # a record buffer smaller than a shard mixes little across shards on its own.
    files = tf.data.Dataset.list_files(pattern, shuffle=shuffle or not deterministic, seed=seed)
    dataset = files.interleave(
        lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
        cycle_length=tf.data.AUTOTUNE, num_parallel_calls=tf.data.AUTOTUNE,
        deterministic=deterministic)
    if group_requests:
        dataset = _requests_together(dataset, shuffle_buffer, shuffle=shuffle, seed=seed,
                                     repeat=repeat, max_group=max_group)
    else:
        if shuffle:
            dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
    dataset = dataset.map(lambda serialized: tf.io.parse_example(serialized, spec),
                          num_parallel_calls=tf.data.AUTOTUNE, deterministic=deterministic)
    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(options)


def _requests_together(records: tf.data.Dataset, window: int, *, shuffle: bool,
                       seed: int | None, repeat: bool,
                       max_group: int | None = None) -> tf.data.Dataset:
    """Serialized records, regrouped so that the records of one request that fall in the
    same window of ``window`` records follow one another (in their first record's order, or a
    seeded random order of the window's requests when ``shuffle``); every record is kept once.
    With ``max_group``, each request's records are cut into consecutive groups of at most that
    many, and the groups take the requests' place.

    A window, not the whole split: nothing holds more than ``window`` records, and the
    preprocessed splits already keep a user's records, hence a request's, close together.
    """
    request_id = {feature_tables.REQUEST_ID: tf.io.FixedLenFeature([], tf.string)}
    shuffle_seed = tf.constant(random.randrange(2**31) if seed is None else seed, tf.int64)

    def regroup(window_index, serialized):
        _, request_index = tf.unique(tf.io.parse_example(serialized, request_id)[
            feature_tables.REQUEST_ID])
        if max_group is not None:
            request_index = _groups_of_at_most(request_index, max_group)
        requests = tf.reduce_max(request_index) + 1
        if shuffle:  # a fresh order per window, and per repetition under ``repeat``
            keys = tf.random.stateless_uniform([requests], seed=tf.stack([shuffle_seed,
                                                                         window_index]))
            request_index = tf.gather(tf.argsort(tf.argsort(keys)), request_index)
        order = tf.argsort(request_index, stable=True)
        return tf.data.Dataset.from_tensor_slices(tf.RaggedTensor.from_value_rowids(
            tf.gather(serialized, order), tf.gather(request_index, order), nrows=requests))

    if max_group is not None and max_group < 1:
        raise ValueError(f"max_group must be at least 1, got {max_group}")
    windows = records.batch(window)
    if repeat:
        windows = windows.repeat()
    return windows.enumerate().flat_map(regroup).unbatch()


def _groups_of_at_most(request_index: tf.Tensor, size: int) -> tf.Tensor:
    """``request_index`` ([n], 0-based, in first-record order) with each request's records,
    in their order, cut into groups of at most ``size``: the groups' indices, also 0-based in
    first-record order."""
    positions = tf.range(tf.size(request_index))
    order = tf.argsort(request_index, stable=True)
    sorted_requests = tf.gather(request_index, order)
    starts = tf.math.unsorted_segment_min(positions, sorted_requests,
                                          tf.reduce_max(request_index) + 1)
    rank_sorted = positions - tf.gather(starts, sorted_requests)  # place in its request
    rank = tf.scatter_nd(order[:, tf.newaxis], rank_sorted, tf.shape(request_index))
    group_keys = (tf.cast(request_index, tf.int64) * tf.cast(tf.size(request_index), tf.int64)
                  + tf.cast(rank // size, tf.int64))
    return tf.unique(group_keys)[1]
