"""Precompute's record handling without a pipeline: a record is read for its key and tower
inputs only, and leaves as its own bytes with the cached tensors appended; parsed, it is the
record with every cached feature, as if it had been encoded whole."""
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.ml.inference.base import PredictionResult

from ppm_tf import features
from ppm_tf.caching import user_states

MAX_SEQ_LEN, TOWER_DIM, ITEM_DIM = 3, 2, 4


def example(item_id: str, request_id: str = "r1") -> dict:
    values = {feature.name: ([] if feature.shape in (features.SEQUENCE, features.VARIABLE)
                             else [0.0] * features.COUNT_SIZE
                             if feature.shape == features.COUNTS else feature.default)
              for feature in features.EXAMPLE_FEATURES}
    return {**values, features.USER_ID: "u1", features.REQUEST_ID: request_id,
            features.ITEM_ID: item_id, features.TS: 100,
            features.HIST_ITEM_IDS: ["a", "b"], features.HIST_TS: [90, 80],
            features.HIST_ACTIONS: [features.ACTION_CLICKED] * 2}


def test_a_record_is_keyed_by_request_with_its_tower_inputs_and_kept_as_bytes():
    serialized = features.encode_example(example("i1"), features.EXAMPLE_FEATURES, MAX_SEQ_LEN)
    key, (history, item_id, order, kept) = user_states._impression(serialized, "eval")
    assert key == ("u1", "r1") and item_id == "i1" and kept == serialized
    assert order == ("u1", 100, "r1", "i1")  # features.EXAMPLE_ORDER, as preprocessing writes
    # padded as every record stores it
    assert history == (("a", "b", ""), (90, 80, 0), (2, 2, 0), 100)


def test_a_record_without_an_example_feature_raises_for_the_dead_letter_output():
    record = example("i1")
    del record[features.BRAND]
    serialized = features.encode_example(record, [feature for feature in
                                                  features.EXAMPLE_FEATURES
                                                  if feature.name != features.BRAND],
                                         MAX_SEQ_LEN)
    with pytest.raises(KeyError, match="brand"):
        user_states._impression(serialized, "eval")


def test_cached_tensors_appended_to_the_bytes_parse_as_the_whole_cached_record():
    records = {item: example(item) for item in ("i1", "i2")}
    impressions = tuple((item, ("u1", 100, "r1", item),
                         features.encode_example(record, features.EXAMPLE_FEATURES, MAX_SEQ_LEN))
                        for item, record in records.items())
    states = np.arange(MAX_SEQ_LEN * TOWER_DIM, dtype=np.float32).reshape(MAX_SEQ_LEN, TOWER_DIM)
    mask = np.array([1, 1, 0], np.int64)
    result = PredictionResult(None, {features.PPM_USER_STATES: states,
                                     features.PPM_USER_MASK: mask})
    vectors = {"i1": np.full([ITEM_DIM], 0.5, np.float32)}  # i2: never embedded
    keyed = list(user_states._attach_cached_tensors(
        (("u1", "r1", impressions), result), vectors, ITEM_DIM, MAX_SEQ_LEN, "eval"))
    assert [order for order, _ in keyed] == [order for _, order, _ in impressions]
    written = [serialized for _, serialized in keyed]
    spec = features.parse_spec(features.CACHED_EXAMPLE_FEATURES, MAX_SEQ_LEN, {
        features.PPM_USER_STATES: MAX_SEQ_LEN * TOWER_DIM, features.PPM_ITEM_VEC: ITEM_DIM})
    for (item, record), serialized in zip(records.items(), written):
        whole = features.encode_example(
            {**record, features.PPM_USER_STATES: states.ravel(), features.PPM_USER_MASK: mask,
             features.PPM_ITEM_VEC: vectors.get(item, np.zeros([ITEM_DIM], np.float32))},
            features.CACHED_EXAMPLE_FEATURES, MAX_SEQ_LEN)
        assert tf.train.Example.FromString(serialized) == tf.train.Example.FromString(whole)
        parsed = tf.io.parse_single_example(serialized, spec)
        expected = tf.io.parse_single_example(whole, spec)
        for name in expected:
            np.testing.assert_array_equal(parsed[name].numpy(), expected[name].numpy(), name)
    assert tf.train.Example.FromString(written[1]).features.feature[
        features.PPM_ITEM_VEC].float_list.value == [0.0] * ITEM_DIM
