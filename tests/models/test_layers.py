"""The building blocks of PPM and IDRec: config round trips, shapes, and masking (a padded
behaviour position never changes a real position's output or the attention result)."""
import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf.models import layers

from masked_sequences import BATCH, DIM, MASK, SEQ_LEN, random_states, with_padding_replaced

REQUEST_TS = 1_742_600_000


@pytest.fixture(autouse=True)
def seeded():
    tf.keras.utils.set_random_seed(7)


def rebuilt_from_config(layer: tf.keras.layers.Layer, inputs) -> tf.keras.layers.Layer:
    """A new layer made from ``layer.get_config()``, built on ``inputs``, with its weights."""
    clone = type(layer).from_config(layer.get_config())
    clone(inputs)
    clone.set_weights(layer.get_weights())
    return clone


# Config round trips: the clone has the same settings and, with the same weights, the same
# outputs.

def position_inputs():
    return tf.constant(random_states())


def count_inputs():
    return tf.constant(np.random.default_rng(0).integers(0, 50, size=(BATCH, 6)), tf.float32)


def interval_inputs():
    return (tf.constant([REQUEST_TS] * BATCH, tf.int64),
            tf.constant(REQUEST_TS - np.arange(BATCH * SEQ_LEN).reshape(BATCH, SEQ_LEN) * 600,
                        tf.int64))


def attention_inputs():
    return (tf.constant(random_states(1, (BATCH, DIM))), tf.constant(random_states()),
            tf.constant(MASK))


@pytest.mark.parametrize("make_layer, make_inputs", [
    (lambda: layers.PositionEmbedding(SEQ_LEN + 3, name="positions"), position_inputs),
    (lambda: layers.TimeIntervalEncoding(24, DIM, name="intervals"), interval_inputs),
    (lambda: layers.TargetAttention([16, 4], name="attention"), attention_inputs),
    (lambda: layers.DotProductTargetAttention(name="dot_attention"), attention_inputs),
    (lambda: layers.MLP([16, 4], activation="gelu", output_activation="relu", dropout=0.25,
                        name="mlp"), position_inputs),
    (lambda: layers.CountEncoding(0.1, 0.02, name="counts"), count_inputs),
], ids=["position", "time_interval", "target_attention",
        "dot_product_target_attention", "mlp", "count_encoding"])
def test_every_layer_round_trips_through_its_config(make_layer, make_inputs):
    layer = make_layer()
    inputs = make_inputs()
    expected = layer(inputs)
    clone = rebuilt_from_config(layer, inputs)
    assert clone.get_config() == layer.get_config()
    assert clone.name == layer.name
    np.testing.assert_allclose(clone(inputs).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_count_encoding_smooths_towards_the_prior_and_ignores_impossible_counts():
    encoding = layers.CountEncoding(click_prior=0.2, order_prior=0.05, prior_strength=10.0)
    counts = tf.constant([
        [0, 0, 0, 0, 0, 0],  # never seen: exactly the prior
        [10, 2, 0, 10, 2, 0],  # 10 shown, 2 clicked: (2 + 2) / 20 = the prior again
        [90, 90, 0, 0, 0, 0],  # always clicked: far above the prior
        [-5, 7, 9, 0, 0, 0],  # a malformed request: negatives read as 0, clicks capped
    ], tf.float32)
    encoded = encoding(counts).numpy()
    assert encoded.shape == (4, 6)
    np.testing.assert_allclose(encoded[0], 0.0, atol=1e-6)
    np.testing.assert_allclose(encoded[1, [1, 4]], 0.0, atol=1e-6)
    np.testing.assert_allclose(encoded[1, [0, 3]], np.log1p(10.0), rtol=1e-6)
    rate = (90 + 10 * 0.2) / 100
    np.testing.assert_allclose(encoded[2, 1], np.log(rate / (1 - rate)) - np.log(0.2 / 0.8),
                               rtol=1e-5)
    np.testing.assert_allclose(encoded[3], 0.0, atol=1e-6)


def test_count_encoding_refuses_a_prior_outside_zero_one():
    with pytest.raises(ValueError, match="click_prior must be a rate in \\(0, 1\\), got 0.0"):
        layers.CountEncoding(0.0, 0.1)


def test_layer_configs_hold_their_settings():
    assert layers.PositionEmbedding(9).get_config()["max_length"] == 9
    interval = layers.TimeIntervalEncoding(12, 3).get_config()
    assert (interval["num_buckets"], interval["dim"]) == (12, 3)
    assert layers.TargetAttention([8, 2]).get_config()["hidden_units"] == [8, 2]
    mlp = layers.MLP([8, 2], output_activation="relu", dropout=0.5).get_config()
    assert (mlp["units"], mlp["activation"], mlp["output_activation"], mlp["dropout"]) == (
        [8, 2], "relu", "relu", 0.5)


# PositionEmbedding.

def test_position_embedding_adds_one_learned_vector_per_position():
    layer = layers.PositionEmbedding(SEQ_LEN + 3)
    inputs = random_states()
    outputs = layer(tf.constant(inputs)).numpy()
    assert outputs.shape == inputs.shape
    added = outputs - inputs
    table = layer.embeddings.numpy()
    assert table.shape == (SEQ_LEN + 3, DIM)
    # The same vector at a position for every sequence, a different one per position.
    np.testing.assert_allclose(added, np.broadcast_to(table[:SEQ_LEN], added.shape), atol=1e-6)
    assert not np.allclose(added[0, 0], added[0, 1])
    # A shorter sequence uses the first rows of the table.
    shorter = layer(tf.constant(inputs[:, :2])).numpy() - inputs[:, :2]
    np.testing.assert_allclose(shorter, np.broadcast_to(table[:2], shorter.shape), atol=1e-6)


# TimeIntervalEncoding.

@pytest.mark.parametrize("seconds_ago, bucket", [
    (0, 0),  # the same second
    (30, 0),  # under a minute
    (60, 1),  # log2(1 + 1) = 1
    (3 * 60, 2),  # log2(1 + 3) = 2
    (3600, 5),  # log2(1 + 60) = 5.93
    (86_400, 10),  # log2(1 + 1440) = 10.49
    (10 ** 9, 23),  # ~30 years: capped at num_buckets - 1
    (-3600, 0),  # a behaviour "after" the request (clock skew): no negative bucket
])
def test_time_interval_buckets_are_log2_minutes_capped(seconds_ago, bucket):
    layer = layers.TimeIntervalEncoding(24, 4)
    buckets = layer.buckets(tf.constant([REQUEST_TS], tf.int64),
                            tf.constant([[REQUEST_TS - seconds_ago]], tf.int64))
    assert buckets.dtype == tf.int32
    assert int(buckets[0, 0]) == bucket


def test_padded_timestamps_fall_in_the_last_bucket_not_out_of_range():
    # Padding has hist_ts 0: about 55 years before the request.
    layer = layers.TimeIntervalEncoding(24, 4)
    buckets = layer.buckets(tf.constant([REQUEST_TS], tf.int64), tf.constant([[0]], tf.int64))
    assert int(buckets[0, 0]) == 23


def test_time_interval_encoding_looks_up_the_bucket_embedding():
    layer = layers.TimeIntervalEncoding(24, DIM)
    request_ts, behaviour_ts = interval_inputs()
    outputs = layer((request_ts, behaviour_ts)).numpy()
    assert outputs.shape == (BATCH, SEQ_LEN, DIM)
    table = layer.embedding.embeddings.numpy()
    expected = table[layer.buckets(request_ts, behaviour_ts).numpy()]
    np.testing.assert_array_equal(outputs, expected)


# TargetAttention (DIN's MLP scorer) and DotProductTargetAttention: same contract.

TARGET_ATTENTIONS = pytest.mark.parametrize("make_attention", [
    lambda: layers.TargetAttention([16]), layers.DotProductTargetAttention], ids=["din", "dot"])


@TARGET_ATTENTIONS
def test_target_attention_output_shape(make_attention):
    attention = make_attention()
    assert attention(attention_inputs()).shape == (BATCH, DIM)


@TARGET_ATTENTIONS
def test_target_attention_ignores_values_at_padded_positions(make_attention):
    attention = make_attention()
    query, keys, mask = attention_inputs()
    outputs = attention((query, keys, mask)).numpy()
    changed = attention((query, tf.constant(with_padding_replaced(keys.numpy(), MASK, seed=9)),
                         mask)).numpy()
    np.testing.assert_allclose(changed, outputs, rtol=1e-6, atol=1e-6)
    # Not vacuous: unmasked, the same values do change the result.
    unmasked = tf.ones_like(mask)
    assert not np.allclose(
        attention((query, tf.constant(with_padding_replaced(keys.numpy(), MASK, seed=9)),
                   unmasked)).numpy()[0],
        attention((query, keys, unmasked)).numpy()[0], atol=1e-3)


@TARGET_ATTENTIONS
def test_target_attention_is_a_convex_mix_of_the_real_keys(make_attention):
    attention = make_attention()
    query, keys, _ = attention_inputs()
    one_real = tf.constant([[0, 0, 1, 0, 0], [1, 0, 0, 0, 0]], tf.int64)
    outputs = attention((query, keys, one_real)).numpy()
    # A single real behaviour gets all the weight.
    np.testing.assert_allclose(outputs[0], keys.numpy()[0, 2], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(outputs[1], keys.numpy()[1, 0], rtol=1e-6, atol=1e-6)
    # With several, the result lies within the range of the real keys.
    mixed = attention((query, keys, tf.constant(MASK))).numpy()
    real_keys = keys.numpy()[0, :3]
    assert np.all(mixed[0] >= real_keys.min(0) - 1e-6)
    assert np.all(mixed[0] <= real_keys.max(0) + 1e-6)


@TARGET_ATTENTIONS
def test_target_attention_over_an_all_padding_sequence_gives_zeros_not_nan(make_attention):
    attention = make_attention()
    query, keys, _ = attention_inputs()
    mask = tf.zeros([BATCH, SEQ_LEN], tf.int64)
    outputs = attention((query, keys, mask)).numpy()
    assert np.all(np.isfinite(outputs))
    np.testing.assert_array_equal(outputs, 0.0)


@TARGET_ATTENTIONS
def test_target_attention_depends_on_the_query(make_attention):
    attention = make_attention()
    query, keys, mask = attention_inputs()
    outputs = attention((query, keys, mask)).numpy()
    other = attention((query * -3.0, keys, mask)).numpy()
    assert not np.allclose(outputs, other, atol=1e-5)


# MLP.

def test_mlp_shapes_output_activation_and_training_only_dropout():
    mlp = layers.MLP([32, 4], output_activation="relu", dropout=0.5)
    inputs = tf.constant(random_states(3, (16, DIM)))
    outputs = mlp(inputs).numpy()
    assert outputs.shape == (16, 4)
    assert np.all(outputs >= 0.0)
    np.testing.assert_array_equal(mlp(inputs, training=False).numpy(), outputs)
    assert not np.allclose(mlp(inputs, training=True).numpy(), outputs)


def test_mlp_without_output_activation_is_linear_at_the_end():
    mlp = layers.MLP([8, 3])
    outputs = mlp(tf.constant(random_states(4, (64, DIM)))).numpy()
    assert outputs.shape == (64, 3)
    assert np.any(outputs < 0.0)
