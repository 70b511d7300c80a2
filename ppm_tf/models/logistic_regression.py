"""Logistic regression: the floor every CTR model here must clear (the ``lr`` row).

One linear layer per task over what the example holds: each id (user, item, category, brand)
one-hot, i.e. one learned weight per id (vocabulary + hashed out-of-vocabulary buckets, as
IDRec looks them up), the candidate's content tokens as a bag, the behaviour sequence's clicked
items, categories and content as a normalised bag of ids, the as-of counts as IDRec encodes them
(``CountEncoding``), and every numeric scalar of the example (log-scaled). A weight per user and per item is a
smoothed click rate learned by gradient descent, so a model that loses to this row has not
learned what the logs plainly contain.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.config import ModelConfig
from ppm_tf.models.idrec import ContentBag, IdEmbedding, clicked_history
from ppm_tf.models.layers import CountEncoding
from ppm_tf.models.tasks import RankingModel

TASKS = 2  # click and order: one weight per input and task
# Numeric example features that are not inputs: labels, the request time, evaluation flags.
NOT_INPUTS = (features.CLICK, features.ORDER, features.TS, features.IS_COLD_ITEM)


def numeric_inputs() -> tuple[str, ...]:
    """Every numeric scalar feature of the examples that a model may read."""
    return tuple(feature.name for feature in features.EXAMPLE_FEATURES
                 if feature.shape == features.SCALAR and feature.dtype != features.STRING
                 and feature.name not in NOT_INPUTS)


def symmetric_log(values: tf.Tensor) -> tf.Tensor:
    """``sign(x) * log(1 + |x|)``: counts and ages over orders of magnitude on one scale."""
    values = tf.cast(values, tf.float32)
    return tf.sign(values) * tf.math.log1p(tf.abs(values))


class LogisticRegression(RankingModel):
    """``features -> {"click": [batch], "order": [batch]}`` logits, linear in the inputs."""

    def __init__(self, vocabularies: dict[str, str], oov_buckets: int, config: ModelConfig,
                 count_priors: dict[str, float], **kwargs):
        """``count_priors``: the click and order rates of the training splits, where the
        intercepts start (a logistic regression's intercept alone fits them); from zero, a
        short budget spends its steps moving the intercept and pushes every frequent id's
        weight down with it. The count encoding smooths towards the same rates."""
        super().__init__(config, **kwargs)
        # Weights start at 0, as logistic regression's do: an id nothing was learned about
        # adds nothing.
        def weights(vocabulary: str, name: str) -> IdEmbedding:
            return IdEmbedding(vocabularies[vocabulary], oov_buckets, TASKS,
                               initializer="zeros", name=name)

        self.ids = {name: weights(name, name) for name in (
            features.USER_ID, features.ITEM_ID, features.CATEGORY, features.BRAND)}
        self.behaviour = {
            features.HIST_ITEM_IDS: weights(features.ITEM_ID, "history_items"),
            features.HIST_CATEGORIES: weights(features.CATEGORY, "history_categories")}
        self.content = ContentBag(vocabularies[features.CONTENT_VOCABULARY], oov_buckets, TASKS,
                                  initializer="zeros", name="content")
        self.counts = CountEncoding(count_priors["click_rate"], count_priors["order_rate"],
                                    name="count_encoding")
        self.count_volumes = config.count_volumes
        self.numeric = numeric_inputs()
        rates = np.clip([count_priors["click_rate"], count_priors["order_rate"]], 1e-6, 1 - 1e-6)
        self.linear = tf.keras.layers.Dense(
            TASKS, kernel_initializer="zeros", name="numeric",
            bias_initializer=tf.keras.initializers.Constant(np.log(rates / (1 - rates))))

    def call(self, batch_features, training=None):
        logits = self.linear(tf.concat(
            [tf.stack([symmetric_log(batch_features[name]) for name in self.numeric], -1),
             *(CountEncoding.model_inputs(self.counts(batch_features[name]), self.count_volumes)
               for name in features.COUNT_FEATURES)], -1))
        for name, embedding in self.ids.items():
            logits += embedding(batch_features[name])
        logits += self.content(batch_features[features.ITEM_CONTENT])
        mask = tf.cast(clicked_history(batch_features), tf.float32)[..., tf.newaxis]
        length = tf.maximum(tf.reduce_sum(mask, 1), 1.0)
        for name, embedding in self.behaviour.items():
            logits += tf.reduce_sum(embedding(batch_features[name]) * mask, 1) / length
        logits += tf.reduce_sum(self.content(batch_features[features.HIST_CONTENT]) * mask,
                                1) / length
        return {"click": logits[:, 0], "order": logits[:, 1]}
