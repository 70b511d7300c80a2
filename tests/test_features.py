"""The feature tables every stage shares: encoding, decoding, tf.io specs, the cold-start rule."""
import subprocess
import sys

import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features

MAX_SEQ_LEN = 4
PNG_LIKE = b"\x89PNG\r\n\x1a\n\x00\xff\xfe raw bytes, not UTF-8"


def example_record(**overrides):
    record = {
        "request_id": "r1", "user_id": "u1", "item_id": "i7", "category": "lamp", "brand": "",
        "ts": 1_742_600_000, "hist_item_ids": ["i3", "i2"], "hist_categories": ["sofa", "lamp"],
        "hist_ts": [1_742_500_000, 1_742_400_000], "hist_actions": [2, 2], "hist_len": 2,
        "click": 1, "order": 0,
        "is_cold_item": 1, "item_age_days": 2.5, "split": "train",
        "item_content": "brass\x1fcolour=red", "hist_content": ["oak", "brass"],
        "user_counts": [4.0, 2.0, 1.0, 1.0, 1.0, 0.0],
        "item_counts": [9.0, 3.0, 0.0, 2.0, 1.0, 0.0],
        "category_counts": [90.0, 20.0, 5.0, 10.0, 3.0, 1.0],
    }
    return {**record, **overrides}


def item_record(**overrides):
    record = {
        "item_id": "i7", "title": "Café lamp, brass", "image": PNG_LIKE, "has_image": 1,
        "category": "lamp", "brand": "kelta", "entities": ["brass", "round", "warm"],
        "launch_ts": 1_700_000_000, "attrs_json": features.attrs_to_json({"w": 3}),
    }
    return {**record, **overrides}


def query_record(**overrides):
    return {"query": "brass lamp", "item_id": "i7", "ts": 1_742_600_100, "split": "eval",
            **overrides}


def test_example_round_trip_pads_sequences_with_empty_ids_and_zeros():
    record = example_record()
    decoded = features.decode_example(
        features.encode_example(record, features.EXAMPLE_FEATURES, MAX_SEQ_LEN),
        features.EXAMPLE_FEATURES)
    assert decoded == {**record, "hist_item_ids": ["i3", "i2", "", ""],
                       "hist_categories": ["sofa", "lamp", "", ""],
                       "hist_content": ["oak", "brass", "", ""],
                       "hist_ts": [1_742_500_000, 1_742_400_000, 0, 0],
                       "hist_actions": [2, 2, 0, 0]}


def test_empty_history_is_all_padding():
    record = example_record(hist_item_ids=[], hist_categories=[], hist_content=[], hist_ts=[],
                            hist_actions=[], hist_len=0)
    decoded = features.decode_example(
        features.encode_example(record, features.EXAMPLE_FEATURES, MAX_SEQ_LEN),
        features.EXAMPLE_FEATURES)
    assert decoded["hist_item_ids"] == [features.PADDING_ID] * MAX_SEQ_LEN
    assert decoded["hist_ts"] == [0] * MAX_SEQ_LEN


def test_item_round_trip_keeps_image_bytes_unicode_titles_and_entity_lists():
    record = item_record()
    decoded = features.decode_example(features.encode_example(record, features.ITEM_FEATURES),
                                      features.ITEM_FEATURES)
    assert decoded == record
    assert isinstance(decoded["image"], bytes) and decoded["image"] == PNG_LIKE


def test_item_without_image_or_entities_round_trips():
    record = item_record(image=b"", has_image=0, entities=[])
    decoded = features.decode_example(features.encode_example(record, features.ITEM_FEATURES),
                                      features.ITEM_FEATURES)
    assert decoded == record


def test_query_round_trip():
    record = query_record()
    decoded = features.decode_example(features.encode_example(record, features.QUERY_FEATURES),
                                      features.QUERY_FEATURES)
    assert decoded == record


def test_a_record_encodes_to_the_same_bytes_in_every_process():
    """The written TFRecords are to be the same files on every run; protobuf's default
    serialisation orders a record's feature map differently from process to process."""
    script = ("import sys; sys.path[:0] = {path!r}\n"
              "from tests.test_features import example_record, MAX_SEQ_LEN\n"
              "from ppm_tf import features\n"
              "print(features.encode_example(example_record(), features.EXAMPLE_FEATURES, "
              "MAX_SEQ_LEN).hex())").format(path=sys.path)
    encoded = {subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              check=True).stdout.strip() for _ in range(2)}
    assert encoded == {features.encode_example(example_record(), features.EXAMPLE_FEATURES,
                                               MAX_SEQ_LEN).hex()}


def test_an_over_long_sequence_is_rejected_naming_the_feature():
    record = example_record(hist_ts=[1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="'hist_ts' has 5 values; max_seq_len is 4"):
        features.encode_example(record, features.EXAMPLE_FEATURES, MAX_SEQ_LEN)


def test_a_missing_feature_is_rejected_naming_it():
    record = example_record()
    del record["item_age_days"]
    with pytest.raises(KeyError, match="'item_age_days' is missing"):
        features.encode_example(record, features.EXAMPLE_FEATURES, MAX_SEQ_LEN)


def test_parse_spec_shapes_and_dtypes():
    spec = features.parse_spec(features.EXAMPLE_FEATURES, MAX_SEQ_LEN)
    assert list(spec) == [feature.name for feature in features.EXAMPLE_FEATURES]
    assert spec["hist_item_ids"] == tf.io.FixedLenFeature([MAX_SEQ_LEN], tf.string)
    assert spec["hist_ts"] == tf.io.FixedLenFeature([MAX_SEQ_LEN], tf.int64)
    assert spec["request_id"] == tf.io.FixedLenFeature([], tf.string)
    assert spec["click"] == tf.io.FixedLenFeature([], tf.int64)
    assert spec["item_age_days"] == tf.io.FixedLenFeature([], tf.float32)
    item_spec = features.parse_spec(features.ITEM_FEATURES)
    assert isinstance(item_spec["entities"], tf.io.RaggedFeature)
    assert item_spec["entities"].dtype == tf.string


def test_tf_parses_what_encode_example_writes():
    records = [example_record(),
               example_record(request_id="r2", hist_item_ids=["i9"], hist_categories=["rug"],
                              hist_ts=[5], hist_actions=[2], hist_len=1)]
    serialized = [features.encode_example(record, features.EXAMPLE_FEATURES, MAX_SEQ_LEN)
                  for record in records]
    parsed = tf.io.parse_example(serialized,
                                 features.parse_spec(features.EXAMPLE_FEATURES, MAX_SEQ_LEN))
    assert parsed["hist_item_ids"].shape == [2, MAX_SEQ_LEN]
    assert parsed["hist_item_ids"].numpy()[1].tolist() == [b"i9", b"", b"", b""]
    assert parsed["hist_ts"].numpy()[1].tolist() == [5, 0, 0, 0]
    assert parsed["item_age_days"].numpy().tolist() == [2.5, 2.5]
    items = tf.io.parse_example(
        [features.encode_example(item_record(), features.ITEM_FEATURES),
         features.encode_example(item_record(entities=[]), features.ITEM_FEATURES)],
        features.parse_spec(features.ITEM_FEATURES))
    assert isinstance(items["entities"], tf.RaggedTensor)
    assert items["entities"].to_list() == [[b"brass", b"round", b"warm"], []]
    assert items["image"].numpy()[0] == PNG_LIKE


def test_is_cold_item_boundary():
    train_start = 1_742_515_200
    assert features.is_cold_item(train_start, train_start)  # first shown as the window opens
    assert features.is_cold_item(train_start + 86_400, train_start)
    assert not features.is_cold_item(train_start - 1, train_start)


def test_feature_names_are_unique_within_each_table():
    for table in (features.EXAMPLE_FEATURES, features.ITEM_FEATURES, features.QUERY_FEATURES):
        names = [feature.name for feature in table]
        assert len(names) == len(set(names))


def test_a_string_where_a_list_belongs_is_rejected():
    with pytest.raises(TypeError, match="'entities' takes a list"):
        features.encode_example(item_record(entities="brass"), features.ITEM_FEATURES)


def test_a_fractional_value_for_an_int64_feature_is_rejected():
    with pytest.raises(ValueError, match="'has_image' is int64"):
        features.encode_example(item_record(has_image=0.9), features.ITEM_FEATURES)


def test_decoding_a_record_without_a_feature_names_it():
    serialized = features.encode_example(query_record(), features.QUERY_FEATURES)
    with pytest.raises(KeyError, match="'title' is missing"):
        features.decode_example(serialized, features.ITEM_FEATURES)


def test_counts_of_the_wrong_size_are_rejected_naming_the_feature():
    record = example_record(item_counts=[1.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="'item_counts' has 3 values; counts have 6"):
        features.encode_example(record, features.EXAMPLE_FEATURES, MAX_SEQ_LEN)


def test_content_tokens_hold_entities_and_categorical_attributes_only():
    tokens = features.content_tokens(["red", "oak", "red"],
                                     {"year": 1995, "tier": "premium", "weight": 0.5,
                                      "bad": "a\nb"})
    assert tokens == ["oak", "red", "tier=premium", "year=1995"]
    assert features.join_content(tokens).split(features.CONTENT_SEPARATOR) == tokens
