"""The two CTR tasks of the paper, click and order, each a ``tfrs.tasks.Ranking``.

Order labels are ``P(order)`` over all impressions (an order implies a click), so both
heads score every impression. The loss is click BCE + ``order_weight`` x order BCE, on logits,
plus, as an option, ``ranking_loss_weight`` x an in-request ranking loss of the click logits
(``request_losses``).
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ppm_tf import features
from ppm_tf.distribute import global_loss
from ppm_tf.models.config import ModelConfig
from ppm_tf.models import request_losses


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

    def __init__(self, order_weight: float = 1.0, ranking_loss: str = request_losses.NONE,
                 ranking_loss_weight: float = 1.0, **kwargs):
        super().__init__(**kwargs)
        self.order_weight = order_weight
        self.ranking_loss = ranking_loss
        self.ranking_loss_weight = ranking_loss_weight
        self.click = _ranking_task("click")
        self.order = _ranking_task("order")

    def call(self, batch_features, logits, training=False):
        clicks = tf.cast(batch_features[features.CLICK], tf.float32)
        click_loss = self.click(labels=clicks[:, tf.newaxis],
                                predictions=logits["click"][:, tf.newaxis], training=training)
        order_loss = self.order(
            labels=tf.cast(batch_features[features.ORDER], tf.float32)[:, tf.newaxis],
            predictions=logits["order"][:, tf.newaxis], training=training)
        per_example = click_loss + self.order_weight * order_loss
        if self.ranking_loss != request_losses.NONE:
            per_example += self.ranking_loss_weight * request_losses.ranking_loss(
                self.ranking_loss, clicks, logits["click"], batch_features[features.REQUEST_ID])
        return tf.nn.compute_average_loss(per_example)

    def get_config(self):
        return {**super().get_config(), "order_weight": self.order_weight,
                "ranking_loss": self.ranking_loss,
                "ranking_loss_weight": self.ranking_loss_weight}


class RankingModel(tfrs.Model):
    """A click/order ranking model: subclasses define ``call(features) -> logits dict``;
    ``config`` sets the task's loss weights and ranking loss (default: BCE only).

    A pre-trained part (``slow_part``, e.g. URM's plug-in head) can train with its own
    optimizer (``slow_optimizer``, e.g. a lower learning rate), so fine-tuning on a short
    window does not wash out what pre-training on the long span taught it.
    """

    def __init__(self, config: ModelConfig | None = None, **kwargs):
        super().__init__(**kwargs)
        self.task = ClickOrderTask(name="click_order") if config is None else ClickOrderTask(
            config.order_loss_weight, config.ranking_loss, config.ranking_loss_weight,
            name="click_order")
        self.slow_part: tf.keras.layers.Layer | None = None
        self.slow_optimizer: tf.keras.optimizers.Optimizer | None = None
        # True for a model whose untrained logits are a baseline's (IDRec's count offset):
        # early stopping then keeps its starting weights when no epoch beats them.
        self.starts_at_baseline = False

    def train_slowly(self, part: tf.keras.layers.Layer,
                     optimizer: tf.keras.optimizers.Optimizer) -> None:
        """``part``'s variables train with ``optimizer``, the others with the compiled one."""
        self.slow_part, self.slow_optimizer = part, optimizer

    def compute_loss(self, batch_features, training=False):
        return self.task(batch_features, self(batch_features, training=training),
                         training=training)

    def train_step(self, inputs):
        if self.slow_part is None:
            return global_loss(super().train_step(inputs))
        with tf.GradientTape() as tape:  # tfrs.Model.train_step, with two optimizers
            loss = self.compute_loss(inputs, training=True)
            regularization_loss = tf.reduce_sum([tf.reduce_sum(part) for part in self.losses])
            total_loss = loss + regularization_loss
        slow = self.slow_part.trainable_variables
        slow_ids = {id(variable) for variable in slow}
        fast = [variable for variable in self.trainable_variables if id(variable) not in slow_ids]
        gradients = tape.gradient(total_loss, fast + slow)
        self.optimizer.apply_gradients(zip(gradients[:len(fast)], fast))
        self.slow_optimizer.apply_gradients(zip(gradients[len(fast):], slow))
        metrics = {metric.name: metric.result() for metric in self.metrics}
        return global_loss({**metrics, "loss": loss, "regularization_loss": regularization_loss,
                            "total_loss": total_loss})

    def test_step(self, inputs):
        return global_loss(super().test_step(inputs))

    def predict_probabilities(self, batch_features):
        logits = self(batch_features, training=False)
        return {"click_prob": tf.sigmoid(logits["click"]),
                "order_prob": tf.sigmoid(logits["order"])}
