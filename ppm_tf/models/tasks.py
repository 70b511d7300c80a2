"""The two CTR tasks of the paper, click and order, each a ``tfrs.tasks.Ranking``.

Order labels are ``P(order)`` over all impressions (an order implies a click), so both
heads score every impression. The loss is click BCE + ``order_weight`` x order BCE, on logits.
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ppm_tf import features
from ppm_tf.distribute import global_loss


def _ranking_task(name: str) -> tfrs.tasks.Ranking:
    # Per-example losses: ClickOrderTask averages them over the global batch, which is what
    # tf.distribute needs (each replica's gradients are summed across replicas).
    return tfrs.tasks.Ranking(
        loss=tf.keras.losses.BinaryCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
        metrics=[tf.keras.metrics.AUC(name=f"{name}_auc", from_logits=True)],
        name=f"{name}_task")


class ClickOrderTask(tf.keras.layers.Layer):
    """Loss and AUC metrics of both heads. ``logits``: {"click": [batch], "order": [batch]}."""

    def __init__(self, order_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.order_weight = order_weight
        self.click = _ranking_task("click")
        self.order = _ranking_task("order")

    def call(self, batch_features, logits, training=False):
        click_loss = self.click(
            labels=tf.cast(batch_features[features.CLICK], tf.float32)[:, tf.newaxis],
            predictions=logits["click"][:, tf.newaxis], training=training)
        order_loss = self.order(
            labels=tf.cast(batch_features[features.ORDER], tf.float32)[:, tf.newaxis],
            predictions=logits["order"][:, tf.newaxis], training=training)
        return tf.nn.compute_average_loss(click_loss + self.order_weight * order_loss)

    def get_config(self):
        return {**super().get_config(), "order_weight": self.order_weight}


class RankingModel(tfrs.Model):
    """A click/order ranking model: subclasses define ``call(features) -> logits dict``."""

    def __init__(self, order_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.task = ClickOrderTask(order_weight, name="click_order")

    def compute_loss(self, batch_features, training=False):
        return self.task(batch_features, self(batch_features, training=training),
                         training=training)

    def train_step(self, inputs):
        return global_loss(super().train_step(inputs))

    def test_step(self, inputs):
        return global_loss(super().test_step(inputs))

    def predict_probabilities(self, batch_features):
        logits = self(batch_features, training=False)
        return {"click_prob": tf.sigmoid(logits["click"]),
                "order_prob": tf.sigmoid(logits["order"])}
