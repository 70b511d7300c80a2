"""Building blocks of PPM and IDRec: sequence encodings, attention, MLP, count encoding; the
Transformer block, shared with the text encoder, is ``ppm_tf.transformer``'s.

Every layer is serialisable (``get_config``) and mask-aware: padded behaviour positions
(mask 0) never change a real position's output or the attention result.
"""
from __future__ import annotations

import math

import tensorflow as tf

from ppm_tf import features
from ppm_tf.transformer import BidirectionalTransformerBlock  # noqa: F401  (PPM's user tower)

SECONDS_PER_MINUTE = 60.0
MASKED_LOGIT = -1e9


class PositionEmbedding(tf.keras.layers.Layer):
    """Learned embedding of the position in the behaviour sequence (0 = most recent).

    Input ``[batch, seq_len, dim]``; output the same shape: input + position embedding.
    """

    def __init__(self, max_length: int, **kwargs):
        super().__init__(**kwargs)
        self.max_length = max_length

    def build(self, input_shape):
        self.embeddings = self.add_weight(
            name="embeddings", shape=(self.max_length, int(input_shape[-1])),
            initializer=tf.keras.initializers.TruncatedNormal(stddev=0.02))
        super().build(input_shape)

    def call(self, inputs):
        length = tf.shape(inputs)[1]
        return inputs + self.embeddings[tf.newaxis, :length, :]

    def get_config(self):
        return {**super().get_config(), "max_length": self.max_length}


class TimeIntervalEncoding(tf.keras.layers.Layer):
    """Learned embedding of how long ago each behaviour happened, in log-scale buckets.

    Bucket = floor(log2(1 + minutes between the request and the behaviour)), capped at
    ``num_buckets - 1``: one minute and one month apart get distinct but few buckets.
    Inputs ``(request_ts [batch], behaviour_ts [batch, seq_len])`` in seconds; output
    ``[batch, seq_len, dim]``.
    """

    def __init__(self, num_buckets: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.num_buckets = num_buckets
        self.dim = dim
        self.embedding = tf.keras.layers.Embedding(num_buckets, dim, name="bucket_embedding")

    def buckets(self, request_ts, behaviour_ts):
        minutes = tf.maximum(tf.cast(request_ts[:, tf.newaxis] - behaviour_ts, tf.float32), 0.0)
        minutes /= SECONDS_PER_MINUTE
        bucket = tf.floor(tf.math.log(1.0 + minutes) / math.log(2.0))
        return tf.cast(tf.minimum(bucket, self.num_buckets - 1), tf.int32)

    def call(self, inputs):
        request_ts, behaviour_ts = inputs
        return self.embedding(self.buckets(request_ts, behaviour_ts))

    def get_config(self):
        return {**super().get_config(), "num_buckets": self.num_buckets, "dim": self.dim}


class MLP(tf.keras.layers.Layer):
    """Dense layers with an activation (and optional dropout) between them; the last layer
    has ``output_activation``."""

    def __init__(self, units: list[int], activation: str = "relu",
                 output_activation: str | None = None, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.units = list(units)
        self.activation = activation
        self.output_activation = output_activation
        self.dropout = dropout
        self.dense_layers = [
            tf.keras.layers.Dense(size, activation=(
                activation if index < len(units) - 1 else output_activation))
            for index, size in enumerate(units)]
        self.dropout_layer = tf.keras.layers.Dropout(dropout)

    def call(self, inputs, training=None):
        outputs = inputs
        for index, layer in enumerate(self.dense_layers):
            outputs = layer(outputs)
            if index < len(self.dense_layers) - 1:
                outputs = self.dropout_layer(outputs, training=training)
        return outputs

    def get_config(self):
        return {**super().get_config(), "units": self.units, "activation": self.activation,
                "output_activation": self.output_activation, "dropout": self.dropout}


class TargetAttention(tf.keras.layers.Layer):
    """DIN-style attention of the candidate over the behaviour sequence.

    A small MLP scores each behaviour from ``[query, key, query - key, query * key]``;
    a softmax over real positions weighs the values. An all-padding sequence gives a zero
    vector. Inputs ``(query [batch, dim], keys [batch, seq_len, dim], mask [batch, seq_len])``;
    output ``[batch, dim]``.
    """

    def __init__(self, hidden_units: list[int], **kwargs):
        super().__init__(**kwargs)
        self.hidden_units = list(hidden_units)
        self.scorer = MLP(self.hidden_units + [1], activation="sigmoid", name="scorer")

    def call(self, inputs):
        query, keys, mask = inputs
        mask = tf.cast(mask, keys.dtype)
        queries = tf.broadcast_to(query[:, tf.newaxis, :], tf.shape(keys))
        scores = tf.squeeze(self.scorer(tf.concat(
            [queries, keys, queries - keys, queries * keys], axis=-1)), axis=-1)
        return _weighted_by_masked_softmax(scores, keys, mask)

    def get_config(self):
        return {**super().get_config(), "hidden_units": self.hidden_units}


class DotProductTargetAttention(tf.keras.layers.Layer):
    """Scaled dot-product attention of the candidate over the behaviour states.

    Score of a behaviour = ``(W q) . k / sqrt(dim)``: the key projection is folded into the
    query's, so the cost per behaviour is one dot product instead of DIN's MLP. The plug-in
    head uses it because its keys are already contextualised Transformer states, and it runs
    in every training step and request beside IDRec. Same inputs, output and masking as
    ``TargetAttention``.
    """

    def build(self, input_shape):
        dim = int(input_shape[1][-1])
        self.query_projection = tf.keras.layers.Dense(dim, use_bias=False,
                                                      name="query_projection")
        self.scale = 1.0 / math.sqrt(dim)
        super().build(input_shape)

    def call(self, inputs):
        query, keys, mask = inputs
        mask = tf.cast(mask, keys.dtype)
        scores = tf.einsum("bd,bld->bl", self.query_projection(query), keys) * self.scale
        return _weighted_by_masked_softmax(scores, keys, mask)


def _weighted_by_masked_softmax(scores, keys, mask):
    """Sum of ``keys`` weighted by the softmax of ``scores`` over real positions; zero where
    every position is padding."""
    scores = scores + (1.0 - mask) * MASKED_LOGIT
    weights = tf.nn.softmax(scores, axis=-1) * mask
    return tf.einsum("bl,bld->bd", weights, keys)


class CountEncoding(tf.keras.layers.Layer):
    """As-of counts (``features.COUNT_FEATURES``) -> what a model can use of them.

    Input ``[..., COUNT_SIZE]`` raw counts; output ``[..., 3 * len(COUNT_WINDOWS)]``: per
    window, ``log1p(impressions)`` and the click and order rates smoothed towards the data
    set's prior rates (``prior_strength`` pseudo-impressions), as logits relative to the
    prior's. An entity never seen has rate logits 0: exactly the prior. Negative counts (a
    malformed request) are read as 0.
    """

    # What each window encodes to, in order.
    ENCODED = ("log1p_impressions", "click_rate_logit", "order_rate_logit")

    def __init__(self, click_prior: float, order_prior: float, prior_strength: float = 10.0,
                 **kwargs):
        super().__init__(**kwargs)
        for name, prior in (("click_prior", click_prior), ("order_prior", order_prior)):
            if not 0.0 < prior < 1.0:
                raise ValueError(f"{name} must be a rate in (0, 1), got {prior}")
        self.click_prior = click_prior
        self.order_prior = order_prior
        self.prior_strength = prior_strength

    def _rate_logit(self, events, impressions, prior):
        rate = (events + self.prior_strength * prior) / (impressions + self.prior_strength)
        return tf.math.log(rate / (1.0 - rate)) - math.log(prior / (1.0 - prior))

    def call(self, counts):
        counts = tf.maximum(tf.cast(counts, tf.float32), 0.0)
        kinds = len(features.COUNT_KINDS)
        encoded = []
        for window in range(len(features.COUNT_WINDOWS)):
            impressions, clicks, orders = (counts[..., window * kinds + kind]
                                           for kind in range(kinds))
            # Clicks and orders never exceed impressions in a log; a request may claim so.
            clicks = tf.minimum(clicks, impressions)
            orders = tf.minimum(orders, impressions)
            encoded += [tf.math.log1p(impressions),  # in ENCODED's order
                        self._rate_logit(clicks, impressions, self.click_prior),
                        self._rate_logit(orders, impressions, self.order_prior)]
        return tf.stack(encoded, axis=-1)

    @classmethod
    def model_inputs(cls, encoded: tf.Tensor, volumes: bool) -> tf.Tensor:
        """What a model reads of an encoding (``ModelConfig.count_volumes``): all of it, or
        without the ``log1p(impressions)`` columns, the rate logits only: volumes grow with
        the log, so their relation to a click on training days need not hold later."""
        if volumes:
            return encoded
        rates = [window * len(cls.ENCODED) + position
                 for window in range(len(features.COUNT_WINDOWS))
                 for position, name in enumerate(cls.ENCODED) if name != "log1p_impressions"]
        return tf.gather(encoded, rates, axis=-1)

    def get_config(self):
        return {**super().get_config(), "click_prior": self.click_prior,
                "order_prior": self.order_prior, "prior_strength": self.prior_strength}
