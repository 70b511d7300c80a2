"""The one definition of every feature that crosses a stage boundary.

Beam writers encode ``tf.train.Example`` records with these tables, Keras readers parse them
with the same tables, and serving signatures name their inputs after them. Three record
kinds exist:

- **examples** (one per impression, in ``WORK/examples/<split>/``): ids, the candidate's
  content ids, the behaviour sequence (the user's last ``max_seq_len`` *clicked* items strictly
  before the impression and not from the same request, most recent first, padded with ``""``
  and 0; with ``ppm preprocess --history impressions`` their last impressions, clicked or
  not, each with its action type), labels, the split, the cold-start flag and the item's age;
- **items** (the catalogue, ``WORK/items/``): what the modal encoders read;
- **queries** (the search log, ``WORK/queries/``): what query matching trains on;
- **item vectors** (``WORK/item_vectors/``) and **cached examples** (``WORK/cached/<split>/``:
  examples plus PPM's cached tensors), written by the embed and precompute jobs.
"""
from __future__ import annotations

import dataclasses
import json
import re
from typing import Any, Collection, Iterable, Mapping

import tensorflow as tf

SCALAR, SEQUENCE, VARIABLE, VECTOR, COUNTS = "scalar", "sequence", "variable", "vector", "counts"
STRING, INT64, FLOAT32 = "string", "int64", "float32"
SPLITS = ("pretrain", "train", "valid", "eval")  # in time order; see preprocessing.splits
PADDING_ID = ""  # pads id sequences; vocab lookups treat it as the mask token


@dataclasses.dataclass(frozen=True)
class Feature:
    """A named feature: its dtype and whether it is a scalar, a behaviour sequence
    (``max_seq_len`` values), a variable-length list, a fixed-size vector whose size is
    known at parse time (embedding dimensions depend on the model preset), or as-of counts
    (``COUNT_SIZE`` values)."""

    name: str
    dtype: str
    shape: str = SCALAR

    @property
    def default(self) -> Any:
        return {STRING: b"", INT64: 0, FLOAT32: 0.0}[self.dtype]


# Example feature names, used across the code base.
REQUEST_ID, USER_ID, ITEM_ID = "request_id", "user_id", "item_id"
CATEGORY, BRAND, TS = "category", "brand", "ts"
ITEM_CONTENT = "item_content"  # the candidate's content tokens, joined (see content_tokens)
HIST_ITEM_IDS, HIST_CATEGORIES, HIST_CONTENT, HIST_TS, HIST_LEN = (
    "hist_item_ids", "hist_categories", "hist_content", "hist_ts", "hist_len")
# Each history field copies one field of the entry's own example.
HIST_FIELD_SOURCES = {HIST_ITEM_IDS: ITEM_ID, HIST_CATEGORIES: CATEGORY,
                      HIST_CONTENT: ITEM_CONTENT}
HIST_ACTIONS = "hist_actions"
CLICK, ORDER = "click", "order"
# The PPM user tower's inputs: what precompute feeds it and the served ``user_states`` takes.
USER_STATE_INPUTS = (HIST_ITEM_IDS, HIST_TS, HIST_ACTIONS, TS)
IS_COLD_ITEM, ITEM_AGE_DAYS, SPLIT = "is_cold_item", "item_age_days", "split"

# What a behaviour sequence holds (``ppm preprocess --history``): the user's clicks, or every
# impression, clicked or not, which also tells a model what the user passed over.
HISTORY_KINDS = ("clicks", "impressions")
# What the user did with each entry (``HIST_ACTIONS``; 0 pads): shown and not clicked (only
# in "impressions" sequences), clicked, clicked and ordered.
ACTION_PADDING, ACTION_SHOWN, ACTION_CLICKED, ACTION_ORDERED = range(4)
ACTION_TYPES = ACTION_ORDERED + 1  # rows of the tower's action embedding


def action_type(click: int, order: int) -> int:
    return ACTION_ORDERED if order else ACTION_CLICKED if click else ACTION_SHOWN


# As-of count features (preprocessing.counts): for an entity, each of COUNT_KINDS before the
# request over each of COUNT_WINDOWS, window-major: [all impressions, all clicks, all orders,
# recent impressions, recent clicks, recent orders]. "recent" is the last
# `count_lookback_days` (preprocess.json); models smooth them with `count_encoding`.
COUNT_KINDS = ("impressions", "clicks", "orders")
COUNT_WINDOWS = ("all", "recent")
COUNT_SIZE = len(COUNT_KINDS) * len(COUNT_WINDOWS)
USER_COUNTS, ITEM_COUNTS, CATEGORY_COUNTS = "user_counts", "item_counts", "category_counts"
COUNT_FEATURES = (USER_COUNTS, ITEM_COUNTS, CATEGORY_COUNTS)

EXAMPLE_FEATURES: tuple[Feature, ...] = (
    Feature(REQUEST_ID, STRING),
    Feature(USER_ID, STRING),
    Feature(ITEM_ID, STRING),
    Feature(CATEGORY, STRING),
    Feature(BRAND, STRING),  # "" when the item has no brand
    Feature(ITEM_CONTENT, STRING),
    Feature(TS, INT64),  # request time, seconds since the epoch
    Feature(HIST_ITEM_IDS, STRING, SEQUENCE),
    Feature(HIST_CATEGORIES, STRING, SEQUENCE),
    Feature(HIST_CONTENT, STRING, SEQUENCE),
    Feature(HIST_TS, INT64, SEQUENCE),
    Feature(HIST_ACTIONS, INT64, SEQUENCE),  # ACTION_SHOWN / _CLICKED / _ORDERED per entry
    Feature(HIST_LEN, INT64),  # number of real (unpadded) sequence entries
    Feature(CLICK, INT64),
    Feature(ORDER, INT64),
    Feature(IS_COLD_ITEM, INT64),
    Feature(ITEM_AGE_DAYS, FLOAT32),  # days since the item's launch_ts at request time
    Feature(SPLIT, STRING),
    Feature(USER_COUNTS, FLOAT32, COUNTS),  # the user's events before the request
    Feature(ITEM_COUNTS, FLOAT32, COUNTS),  # the item's, as of the request's UTC day
    Feature(CATEGORY_COUNTS, FLOAT32, COUNTS),  # its category's, as of that day
)

# The order records are written in (``preprocessing.shards``): the same on every run, a
# user's impressions together and by time, which the request-grouping readers rely on.
EXAMPLE_ORDER = (USER_ID, TS, REQUEST_ID, ITEM_ID)

# Catalogue feature names.
TITLE, IMAGE, HAS_IMAGE, ENTITIES, LAUNCH_TS, ATTRS_JSON = (
    "title", "image", "has_image", "entities", "launch_ts", "attrs_json")

ITEM_FEATURES: tuple[Feature, ...] = (
    Feature(ITEM_ID, STRING),
    Feature(TITLE, STRING),
    Feature(IMAGE, STRING),  # encoded image bytes; "" when the item has none
    Feature(HAS_IMAGE, INT64),
    Feature(CATEGORY, STRING),
    Feature(BRAND, STRING),
    Feature(ENTITIES, STRING, VARIABLE),
    Feature(LAUNCH_TS, INT64),
    Feature(ATTRS_JSON, STRING),
)

# Item vectors: the frozen modal encoders' outputs per item (WORK/item_vectors/).
TEXT_VEC, IMAGE_VEC, PPM_ITEM_VEC = "text_vec", "image_vec", "ppm_item_vec"
ITEM_VECTOR_FEATURES: tuple[Feature, ...] = (
    Feature(ITEM_ID, STRING),
    Feature(TEXT_VEC, FLOAT32, VECTOR),
    Feature(IMAGE_VEC, FLOAT32, VECTOR),  # the documented fallback when has_image is 0
    Feature(HAS_IMAGE, INT64),
    Feature(PPM_ITEM_VEC, FLOAT32, VECTOR),  # m_i = [text_vec ; image_vec]
)

# Cached PPM tensors joined into the train/eval examples by precompute (WORK/cached/<split>/):
# the frozen user tower's states H_u, flattened from [max_seq_len, tower_dim], their mask, and
# the candidate's ME vector.
PPM_USER_STATES, PPM_USER_MASK = "ppm_user_states", "ppm_user_mask"
CACHED_FEATURES: tuple[Feature, ...] = (
    Feature(PPM_USER_STATES, FLOAT32, VECTOR),
    Feature(PPM_USER_MASK, INT64, SEQUENCE),
    Feature(PPM_ITEM_VEC, FLOAT32, VECTOR),
)
CACHED_EXAMPLE_FEATURES = EXAMPLE_FEATURES + CACHED_FEATURES

QUERY = "query"
QUERY_FEATURES: tuple[Feature, ...] = (
    Feature(QUERY, STRING),
    Feature(ITEM_ID, STRING),
    Feature(TS, INT64),
    Feature(SPLIT, STRING),
)


ITEM_ORDER = (ITEM_ID,)  # catalogue and item vectors
QUERY_ORDER = (ITEM_ID, TS, QUERY)

CONTENT_SEPARATOR = "\x1f"  # joins content tokens; the raw contract keeps it out of tokens
CONTENT_VOCABULARY = "content"  # WORK/vocab/content.txt: the content tokens of the catalogue
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def content_tokens(entities: Iterable[str], attrs: Mapping[str, Any] | None) -> list[str]:
    """What IDRec knows of an item's content beyond its category: its entities and its
    declared attributes as ``name=value`` tokens (strings and integers: categorical, e.g. a
    colour or a year; floats are continuous and left out), sorted, without repeats. An
    attribute with a control character is left out: tokens become lines of a vocabulary."""
    tokens = set(entities)
    for name, value in (attrs or {}).items():
        if isinstance(value, (str, int)) and not isinstance(value, bool):
            token = f"{name}={value}"
            if not _CONTROL_CHARACTERS.search(token):
                tokens.add(token)
    return sorted(tokens)


def join_content(tokens: Iterable[str]) -> str:
    """The one-string form examples and serving tables carry (``ITEM_CONTENT``)."""
    return CONTENT_SEPARATOR.join(tokens)


def is_cold_item(first_impression_ts: int, train_start_ts: int) -> bool:
    """An item is cold when it had no impression before the recent (train) window starts.

    Defined on the logs, not on ``launch_ts``: an item launched long ago but never shown is as
    new to an ID model as one launched yesterday.
    """
    return first_impression_ts >= train_start_ts


def parse_spec(features: Iterable[Feature], max_seq_len: int = 0,
               vector_dims: Mapping[str, int] | None = None) -> dict[str, Any]:
    """``tf.io`` parsing spec of ``features``; sequences have ``max_seq_len`` entries and each
    vector feature the size ``vector_dims[name]``."""
    dtypes = {STRING: tf.string, INT64: tf.int64, FLOAT32: tf.float32}
    spec = {}
    for feature in features:
        dtype = dtypes[feature.dtype]
        if feature.shape == VARIABLE:
            spec[feature.name] = tf.io.RaggedFeature(dtype)
        elif feature.shape == SEQUENCE:
            spec[feature.name] = tf.io.FixedLenFeature([max_seq_len], dtype)
        elif feature.shape == COUNTS:
            spec[feature.name] = tf.io.FixedLenFeature([COUNT_SIZE], dtype)
        elif feature.shape == VECTOR:
            if not vector_dims or feature.name not in vector_dims:
                raise ValueError(f"vector feature {feature.name!r} needs its size in vector_dims")
            spec[feature.name] = tf.io.FixedLenFeature([vector_dims[feature.name]], dtype)
        else:
            spec[feature.name] = tf.io.FixedLenFeature([], dtype)
    return spec


def pad_sequence(feature: Feature, values: Iterable[Any], max_seq_len: int) -> list:
    """A behaviour sequence as every record stores it: ``max_seq_len`` values, padded with the
    feature's default (``""`` / 0). Serving requests are padded by the same function."""
    values = list(values)
    if len(values) > max_seq_len:
        raise ValueError(f"feature {feature.name!r} has {len(values)} values; "
                         f"max_seq_len is {max_seq_len}")
    return values + [feature.default] * (max_seq_len - len(values))


def encode_example(values: Mapping[str, Any], features: Iterable[Feature],
                   max_seq_len: int = 0) -> bytes:
    """Serialises one record as a ``tf.train.Example``; sequences are padded to
    ``max_seq_len``. A missing feature or an over-long sequence raises, naming the feature."""
    example = tf.train.Example()
    encoded = example.features.feature
    for feature in features:
        if feature.name not in values:
            raise KeyError(f"feature {feature.name!r} is missing from the record")
        value = values[feature.name]
        if feature.shape == SCALAR:
            value = [value]
        elif isinstance(value, (str, bytes)):
            raise TypeError(f"feature {feature.name!r} takes a list of values, "
                            f"got {type(value).__name__}")
        elif feature.shape == SEQUENCE:
            value = pad_sequence(feature, value, max_seq_len)
        elif feature.shape == COUNTS and len(value) != COUNT_SIZE:
            raise ValueError(f"feature {feature.name!r} has {len(value)} values; "
                             f"counts have {COUNT_SIZE}")
        _fill_tf_feature(encoded[feature.name], feature, value)
    # Map entries in key order: protobuf's default follows its hash table, which differs
    # between processes, and the written files are to be the same on every run.
    return example.SerializeToString(deterministic=True)


def _fill_tf_feature(proto: tf.train.Feature, feature: Feature, values) -> None:
    """Fills the record's ``tf.train.Feature`` in place (every example of a preprocessing
    run passes here, so no intermediate messages are built)."""
    if feature.dtype == STRING:
        proto.bytes_list.value.extend(
            [v.encode("utf-8") if isinstance(v, str) else bytes(v) for v in values])
    elif feature.dtype == INT64:
        try:
            proto.int64_list.value.extend(values)
        except TypeError:  # floats (1.0 is accepted as 1) or something that is no number
            values = list(values)
            if any(v != int(v) for v in values):
                raise ValueError(f"feature {feature.name!r} is int64; got non-integer {values}")
            proto.int64_list.value.extend(int(v) for v in values)
    else:
        proto.float_list.value.extend(values)


def decode_example(serialized: bytes, features: Iterable[Feature],
                   select: Collection[str] | None = None) -> dict[str, Any]:
    """Plain-Python view of one serialised record (for tests, tools and Beam joins). Every
    feature of ``features`` must be present; ``select`` names the ones to return (default:
    all of them), so a job that passes the record on as bytes reads only what it needs."""
    example = tf.train.Example.FromString(serialized)
    decoded = {}
    for feature in features:
        if feature.name not in example.features.feature:
            raise KeyError(f"feature {feature.name!r} is missing from the record")
        if select is not None and feature.name not in select:
            continue
        proto = example.features.feature[feature.name]
        if feature.dtype == STRING:
            values = [value.decode("utf-8") if feature.name != IMAGE else value
                      for value in proto.bytes_list.value]
        elif feature.dtype == INT64:
            values = list(proto.int64_list.value)
        else:
            values = list(proto.float_list.value)
        decoded[feature.name] = values if feature.shape != SCALAR else values[0]
    return decoded


def attrs_to_json(attrs: Mapping[str, Any] | None) -> str:
    return json.dumps(attrs or {}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
