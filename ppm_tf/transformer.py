"""The package's one Transformer block: BERT's post-LayerNorm block, bidirectional, masked.

Self-attention over the whole sequence (no causal mask: every position sees every other real
one), add and LayerNorm, a GELU feed-forward layer, add and LayerNorm. Two stages use it, which
is why it lives on the ground floor: the text encoder (``encoders.text``, where a BERT-family
checkpoint sets the GELU form, the LayerNorm epsilon and BERT's initialiser) and PPM's user
tower (``models.ppm``, over the behaviour sequence).
"""
from __future__ import annotations

import tensorflow as tf


class BidirectionalTransformerBlock(tf.keras.layers.Layer):
    """``(states [batch, seq_len, dim], mask [batch, seq_len])`` -> ``[batch, seq_len, dim]``.

    ``mask`` is True (or 1) at real positions. Padded keys are masked, so values at padded
    positions never reach a real one; padded positions come out as zeros.

    Args:
        approximate_gelu: the tanh form of GELU (Google's BERT code) instead of the exact,
            erf form (Hugging Face's ``gelu``).
        kernel_initializer: of the attention and feed-forward kernels (BERT: a truncated
            normal with stddev 0.02).
    """

    def __init__(self, num_heads: int, ff_dim: int, dropout: float = 0.1,
                 approximate_gelu: bool = False, layer_norm_epsilon: float = 1e-6,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.ff_dim = ff_dim
        self.dropout = dropout
        self.approximate_gelu = approximate_gelu
        self.layer_norm_epsilon = layer_norm_epsilon
        self.kernel_initializer = tf.keras.initializers.serialize(
            tf.keras.initializers.get(kernel_initializer))

    def _initializer(self) -> tf.keras.initializers.Initializer:
        """A fresh instance per sub-layer: one unseeded instance would repeat its values."""
        return tf.keras.initializers.get(self.kernel_initializer)

    def _gelu(self, x: tf.Tensor) -> tf.Tensor:
        return tf.nn.gelu(x, approximate=self.approximate_gelu)

    def build(self, input_shape):
        dim = int(input_shape[0][-1])
        self.attention = tf.keras.layers.MultiHeadAttention(
            self.num_heads, key_dim=max(dim // self.num_heads, 1), dropout=self.dropout,
            kernel_initializer=self._initializer(), name="attention")
        self.attention_dropout = tf.keras.layers.Dropout(self.dropout)
        self.attention_norm = tf.keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="attention_norm")
        self.intermediate = tf.keras.layers.Dense(
            self.ff_dim, activation=self._gelu, kernel_initializer=self._initializer(),
            name="intermediate")
        self.output_dense = tf.keras.layers.Dense(
            dim, kernel_initializer=self._initializer(), name="output_dense")
        self.output_dropout = tf.keras.layers.Dropout(self.dropout)
        self.output_norm = tf.keras.layers.LayerNormalization(
            epsilon=self.layer_norm_epsilon, name="output_norm")
        super().build(input_shape)

    def call(self, inputs, training=None):
        states, mask = inputs
        mask = tf.cast(mask, tf.bool)
        # Keys are masked; a padded query row still gets a (discarded) output.
        attention_mask = mask[:, tf.newaxis, :] & tf.ones_like(mask)[:, :, tf.newaxis]
        attended = self.attention(states, states, attention_mask=attention_mask,
                                  training=training)
        states = self.attention_norm(states + self.attention_dropout(attended, training=training))
        transformed = self.output_dense(self.intermediate(states))
        states = self.output_norm(states + self.output_dropout(transformed, training=training))
        return states * tf.cast(mask, states.dtype)[..., tf.newaxis]

    def get_config(self):
        return {**super().get_config(), "num_heads": self.num_heads, "ff_dim": self.ff_dim,
                "dropout": self.dropout, "approximate_gelu": self.approximate_gelu,
                "layer_norm_epsilon": self.layer_norm_epsilon,
                "kernel_initializer": self.kernel_initializer}
