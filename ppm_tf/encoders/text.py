"""The text half of the ME layer: a BERT-style Transformer encoder over WordPiece ids.

The architecture is BERT's (word + position + segment embeddings, LayerNorm, post-LayerNorm
blocks of self-attention and a GELU feed-forward layer), so the encoder can start from a
pre-trained BERT-family checkpoint (``bert_checkpoint``), whose config sets the GELU form and
the LayerNorm epsilon. On top of BERT, the item vector is the **mean of the final hidden
states** (by default over the text's own tokens: ``[CLS]``, ``[SEP]`` and padding excluded,
so extra padding never changes it; see ``pooling_weights`` for the other modes), a linear
projection to ``output_dim`` (none when it is None) and L2 normalisation: cosine similarity is
then a dot product, which the contrastive losses and the downstream models use.

Shapes: token ids ``[batch, seq_len]`` (0 = padding) -> vectors ``[batch, vector_dim]``.
"""
from __future__ import annotations

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf.encoders.presets import (GELU_TANH, POOL_CLS, POOL_MEAN_TOKENS, POOL_TEXT_TOKENS,
                                     TextEncoderConfig)
from ppm_tf.encoders.tokenizer import PAD_ID
from ppm_tf.transformer import BidirectionalTransformerBlock


def _initializer() -> tf.keras.initializers.Initializer:
    return tf.keras.initializers.TruncatedNormal(stddev=0.02)  # BERT's


def pooling_mask(token_ids: tf.Tensor) -> tf.Tensor:
    """``[batch, seq_len]`` bool: the tokens a text's vector averages by default.

    The text's own WordPiece tokens, without the ``[CLS]`` before them and the ``[SEP]`` after
    them (``tokenizer.TextTokenizer`` always adds both): for one-word queries those two would
    otherwise be two thirds of the average, the same for every query, which stalls query
    matching at its start. A text without tokens (the empty string) averages its ``[CLS]``
    and ``[SEP]``; padding never counts.
    """
    real = tf.not_equal(token_ids, PAD_ID)
    lengths = tf.reduce_sum(tf.cast(real, tf.int32), axis=1, keepdims=True)
    positions = tf.range(tf.shape(token_ids)[1])[None, :]
    inner = tf.logical_and(real, tf.logical_and(positions > 0, positions < lengths - 1))
    return tf.where(lengths > 2, inner, real)


def pooling_weights(token_ids: tf.Tensor, pooling: str = POOL_TEXT_TOKENS) -> tf.Tensor:
    """``[batch, seq_len]`` bool: the states the text vector averages, by pooling mode.

    ``text_tokens``: ``pooling_mask``. ``mean_tokens``: every real token, ``[CLS]`` and
    ``[SEP]`` included (sentence-transformers' mean pooling, so a checkpoint trained with it
    gives its own vectors). ``cls``: the ``[CLS]`` state alone.
    """
    if pooling == POOL_TEXT_TOKENS:
        return pooling_mask(token_ids)
    real = tf.not_equal(token_ids, PAD_ID)
    if pooling == POOL_MEAN_TOKENS:
        return real
    if pooling == POOL_CLS:
        return tf.logical_and(real, tf.equal(tf.range(tf.shape(token_ids)[1]), 0)[None, :])
    raise ValueError(f"unknown pooling {pooling!r}")


class TextEncoder(tf.keras.layers.Layer):
    """WordPiece ids ``[batch, seq_len]`` -> L2-normalised vectors ``[batch, vector_dim]``
    (``output_dim``, or ``hidden_size`` when ``output_dim`` is None: no projection).

    ``seq_len`` may be anything up to ``max_positions``; id 0 is padding and is ignored.
    """

    def __init__(self, vocab_size: int, hidden_size: int, num_layers: int, num_heads: int,
                 intermediate_size: int, output_dim: int | None, max_positions: int = 512,
                 dropout: float = 0.1, type_vocab_size: int = 2, hidden_act: str = GELU_TANH,
                 layer_norm_epsilon: float = 1e-12, pooling: str = POOL_TEXT_TOKENS,
                 **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.intermediate_size = intermediate_size
        self.output_dim = output_dim
        self.max_positions = max_positions
        self.dropout = dropout
        self.type_vocab_size = type_vocab_size  # BERT's segment table (only segment 0 used)
        self.hidden_act = hidden_act
        self.layer_norm_epsilon = layer_norm_epsilon
        self.pooling = pooling
        self.vector_dim = output_dim or hidden_size
        self.word_embeddings = tf.keras.layers.Embedding(
            vocab_size, hidden_size, embeddings_initializer=_initializer(),
            name="word_embeddings")
        self.embedding_norm = tf.keras.layers.LayerNormalization(
            epsilon=layer_norm_epsilon, name="embedding_norm")
        self.embedding_dropout = tf.keras.layers.Dropout(dropout)
        self.blocks = [BidirectionalTransformerBlock(
            num_heads, intermediate_size, dropout, approximate_gelu=hidden_act == GELU_TANH,
            layer_norm_epsilon=layer_norm_epsilon, kernel_initializer=_initializer(),
            name=f"block_{index}") for index in range(num_layers)]
        self.projection = (tf.keras.layers.Dense(output_dim, kernel_initializer=_initializer(),
                                                 name="projection") if output_dim else None)

    @classmethod
    def from_config_preset(cls, config: TextEncoderConfig, vocab_size: int,
                           **kwargs) -> "TextEncoder":
        """The encoder a preset describes, for a vocabulary of ``vocab_size`` tokens."""
        return cls(vocab_size=vocab_size, hidden_size=config.hidden_size,
                   num_layers=config.num_layers, num_heads=config.num_heads,
                   intermediate_size=config.intermediate_size, output_dim=config.output_dim,
                   max_positions=config.max_positions, dropout=config.dropout,
                   hidden_act=config.hidden_act, layer_norm_epsilon=config.layer_norm_epsilon,
                   pooling=config.pooling, **kwargs)

    def build(self, input_shape):
        self.position_embeddings = self.add_weight(
            "position_embeddings", shape=[self.max_positions, self.hidden_size],
            initializer=_initializer())
        self.token_type_embeddings = self.add_weight(
            "token_type_embeddings", shape=[self.type_vocab_size, self.hidden_size],
            initializer=_initializer())
        super().build(input_shape)

    def hidden_states(self, token_ids: tf.Tensor, training=None) -> tf.Tensor:
        """The last block's states ``[batch, seq_len, hidden_size]`` (zero at padding)."""
        padding_mask = tf.not_equal(token_ids, PAD_ID)
        seq_len = tf.shape(token_ids)[1]
        x = (self.word_embeddings(token_ids)
             + self.position_embeddings[None, :seq_len]
             + self.token_type_embeddings[None, None, 0])
        x = self.embedding_dropout(self.embedding_norm(x), training=training)
        for block in self.blocks:
            x = block((x, padding_mask), training=training)
        return x

    def call(self, token_ids: tf.Tensor, training=None) -> tf.Tensor:
        token_ids = tf.convert_to_tensor(token_ids)
        states = self.hidden_states(token_ids, training=training)
        weights = tf.cast(pooling_weights(token_ids, self.pooling), states.dtype)[:, :, None]
        pooled = tf.reduce_sum(states * weights, axis=1) / tf.maximum(
            tf.reduce_sum(weights, axis=1), 1.0)
        if self.projection is not None:
            pooled = self.projection(pooled)
        return tf.math.l2_normalize(pooled, axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "vocab_size": self.vocab_size,
                "hidden_size": self.hidden_size, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "intermediate_size": self.intermediate_size,
                "output_dim": self.output_dim, "max_positions": self.max_positions,
                "dropout": self.dropout, "type_vocab_size": self.type_vocab_size,
                "hidden_act": self.hidden_act, "layer_norm_epsilon": self.layer_norm_epsilon,
                "pooling": self.pooling}
