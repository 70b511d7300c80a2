"""The one Transformer block (PPM's user tower and the text encoder): config round trips,
shapes, masking (a padded position never changes a real one), bidirectional attention."""
import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf.transformer import BidirectionalTransformerBlock

from masked_sequences import BATCH, DIM, MASK, SEQ_LEN, random_states, with_padding_replaced


@pytest.fixture(autouse=True)
def seeded():
    tf.keras.utils.set_random_seed(7)


def block_inputs():
    return tf.constant(random_states()), tf.constant(MASK)


@pytest.mark.parametrize("make_block", [
    lambda: BidirectionalTransformerBlock(2, 16, dropout=0.0, name="block"),
    # The text encoder's BERT settings.
    lambda: BidirectionalTransformerBlock(
        2, 64, 0.0, approximate_gelu=True, layer_norm_epsilon=1e-12,
        kernel_initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02), name="bert"),
], ids=["ppm", "bert"])
def test_the_block_round_trips_through_its_config(make_block):
    block = make_block()
    inputs = block_inputs()
    expected = block(inputs)
    clone = BidirectionalTransformerBlock.from_config(block.get_config())
    clone(inputs)
    clone.set_weights(block.get_weights())
    assert clone.get_config() == block.get_config()
    assert clone.name == block.name
    np.testing.assert_allclose(clone(inputs).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


def test_the_config_holds_its_settings():
    block = BidirectionalTransformerBlock(4, 32, dropout=0.2).get_config()
    assert (block["num_heads"], block["ff_dim"], block["dropout"]) == (4, 32, 0.2)


def test_transformer_block_keeps_the_shape_and_zeroes_padded_positions():
    block = BidirectionalTransformerBlock(2, 16, dropout=0.0)
    outputs = block(block_inputs()).numpy()
    assert outputs.shape == (BATCH, SEQ_LEN, DIM)
    assert np.all(outputs[0, 3:] == 0.0)
    assert np.all(np.abs(outputs[0, :3]).sum(-1) > 0)
    assert np.all(np.abs(outputs[1]).sum(-1) > 0)


@pytest.mark.parametrize("training", [False, True])
def test_transformer_block_ignores_values_at_padded_positions(training):
    block = BidirectionalTransformerBlock(2, 16, dropout=0.0)
    states = random_states()
    outputs = block((tf.constant(states), tf.constant(MASK)), training=training).numpy()
    changed = block((tf.constant(with_padding_replaced(states, MASK, seed=5)), tf.constant(MASK)),
                    training=training).numpy()
    real = MASK.astype(bool)
    np.testing.assert_allclose(changed[real], outputs[real], rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(changed[~real], 0.0)
    # Not vacuous: unmasked, the same values do reach the real positions.
    unmasked = tf.ones_like(MASK)
    assert not np.allclose(
        block((tf.constant(with_padding_replaced(states, MASK, seed=5)), unmasked)).numpy()[0, 0],
        block((tf.constant(states), unmasked)).numpy()[0, 0], atol=1e-3)


def test_transformer_block_is_bidirectional_not_causal():
    block = BidirectionalTransformerBlock(2, 16, dropout=0.0)
    states = random_states()
    outputs = block((tf.constant(states), tf.constant(MASK))).numpy()
    later = states.copy()
    later[0, 2] += 1.0  # the last real position of sequence 0
    changed = block((tf.constant(later), tf.constant(MASK))).numpy()
    # Position 0 attends to position 2 although it comes first in the sequence.
    assert not np.allclose(changed[0, 0], outputs[0, 0], atol=1e-4)
    np.testing.assert_allclose(changed[1], outputs[1], atol=1e-6)  # the other sequence


def test_transformer_block_on_an_all_padding_sequence_gives_zeros_not_nan():
    block = BidirectionalTransformerBlock(2, 16, dropout=0.0)
    mask = np.array([[0] * SEQ_LEN, [1] * SEQ_LEN], np.int64)
    outputs = block((tf.constant(random_states()), tf.constant(mask))).numpy()
    assert np.all(np.isfinite(outputs))
    np.testing.assert_array_equal(outputs[0], 0.0)


def test_transformer_block_accepts_a_boolean_mask():
    block = BidirectionalTransformerBlock(2, 16, dropout=0.0)
    states = tf.constant(random_states())
    np.testing.assert_allclose(block((states, tf.constant(MASK.astype(bool)))).numpy(),
                               block((states, tf.constant(MASK))).numpy(), atol=1e-6)
