"""The paper's query-matching (QM) task that fine-tunes the text encoder.

A search query and the title of the item clicked for it should be close; the titles of the
other items in the batch serve as negatives (SimCSE-style in-batch InfoNCE). One shared
encoder embeds both sides, so queries and titles live in one space and the title vector the
ME layer caches is the one queries were matched against. For a batch of B pairs with
L2-normalised vectors q_i, t_j and temperature τ:

    loss = mean_i -log( exp(q_i·t_i / τ) / sum_j exp(q_i·t_j / τ) )

computed by ``tfrs.tasks.Retrieval``. When the same item is clicked for two queries of one
batch, its second copy is not a negative for the first ("accidental hit", removed by id).

Unsupervised SimCSE, the text objective without a search log, is this model fed a title as its
own query (``data.simcse_batches``): the two encoder passes draw different dropout masks.
"""
from __future__ import annotations

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf
import tensorflow_recommenders as tfrs

from ppm_tf.distribute import global_loss
from ppm_tf.encoders.text import TextEncoder

QUERY_IDS, TITLE_IDS, ITEM_ID = "query_ids", "title_ids", "item_id"


def in_batch_retrieval_task(temperature: float) -> tfrs.tasks.Retrieval:
    """InfoNCE over in-batch negatives, per query (``QueryMatchingModel`` averages them
    over the global batch, as ``tf.distribute`` needs; tfrs sums by default)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return tfrs.tasks.Retrieval(
        loss=tf.keras.losses.CategoricalCrossentropy(
            from_logits=True, reduction=tf.keras.losses.Reduction.NONE),
        temperature=temperature, remove_accidental_hits=True, name="query_matching")


class QueryMatchingModel(tfrs.models.Model):
    """Batches ``{"query_ids": [B, Lq], "title_ids": [B, Lt], "item_id": [B]}`` -> QM loss."""

    def __init__(self, encoder: TextEncoder, temperature: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        self.encoder = encoder
        self.temperature = temperature
        self.task = in_batch_retrieval_task(temperature)

    def call(self, features, training=None):
        """``(query vectors [B, d], title vectors [B, d])``."""
        return (self.encoder(features[QUERY_IDS], training=training),
                self.encoder(features[TITLE_IDS], training=training))

    def compute_loss(self, features, training=False) -> tf.Tensor:
        queries, titles = self(features, training=training)
        return tf.nn.compute_average_loss(self.task(
            queries, titles, candidate_ids=features[ITEM_ID], compute_metrics=False))

    def train_step(self, inputs):
        return global_loss(super().train_step(inputs))

    def test_step(self, inputs):
        return global_loss(super().test_step(inputs))

    def get_config(self) -> dict:
        return {"encoder": tf.keras.layers.serialize(self.encoder),
                "temperature": self.temperature}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "QueryMatchingModel":
        encoder = tf.keras.layers.deserialize(
            config["encoder"], {"TextEncoder": TextEncoder, **(custom_objects or {})})
        return cls(encoder=encoder, temperature=config["temperature"])
