"""IDRec: the ID-based CTR model the paper starts from ("Base").

Id embeddings (user, item, category, brand; vocabulary + hashed out-of-vocabulary buckets),
DIN attention of the candidate over the id behaviour sequence, ``tfrs.layers.dcn.Cross``
layers and an MLP, click and order heads. ``IDRecBackbone`` takes extra dense inputs so the
ablations can add content: ``qm_ep`` adds the frozen ME item vector, URM adds PPM's
representation (``unified.py``).
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ppm_tf import features
from ppm_tf.models.config import ModelConfig
from ppm_tf.models.layers import MLP, TargetAttention
from ppm_tf.models.tasks import RankingModel


class IdEmbedding(tf.keras.layers.Layer):
    """Strings -> embeddings via a vocabulary file; tokens not in it share ``oov_buckets``
    hashed rows, and the padding id "" maps to row 0.

    An empty vocabulary file (a field the data never fills, e.g. MovieLens brands) hashes
    every token: ``StringLookup`` cannot be built on an empty vocabulary.
    """

    def __init__(self, vocabulary_file: str, oov_buckets: int, dim: int,
                 initializer: str = "uniform", **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_file = vocabulary_file
        self.oov_buckets = oov_buckets
        self.dim = dim
        self.initializer = initializer
        if tf.io.gfile.stat(vocabulary_file).length == 0:
            self.lookup = tf.keras.layers.Hashing(num_bins=oov_buckets + 1,
                                                  mask_value=features.PADDING_ID)
            rows = oov_buckets + 1
        else:
            self.lookup = tf.keras.layers.StringLookup(
                vocabulary=vocabulary_file, num_oov_indices=oov_buckets,
                mask_token=features.PADDING_ID)
            rows = self.lookup.vocabulary_size()
        self.embedding = tf.keras.layers.Embedding(rows, dim, embeddings_initializer=initializer)

    def call(self, ids):
        return self.embedding(self.lookup(ids))

    def get_config(self):
        return {**super().get_config(), "vocabulary_file": self.vocabulary_file,
                "oov_buckets": self.oov_buckets, "dim": self.dim,
                "initializer": self.initializer}


class IDRecBackbone(tf.keras.layers.Layer):
    """``(features, extra [batch, n] or None)`` -> ``(click_logit, order_logit)`` [batch]."""

    def __init__(self, vocabularies: dict[str, str], oov_buckets: int, config: ModelConfig,
                 **kwargs):
        super().__init__(**kwargs)
        dim = config.id_embedding_dim
        self.user = IdEmbedding(vocabularies[features.USER_ID], oov_buckets, dim, name="user")
        self.item = IdEmbedding(vocabularies[features.ITEM_ID], oov_buckets, dim, name="item")
        self.category = IdEmbedding(vocabularies[features.CATEGORY], oov_buckets, dim,
                                    name="category")
        self.brand = IdEmbedding(vocabularies[features.BRAND], oov_buckets, dim, name="brand")
        self.interest = TargetAttention(list(config.attention_units), name="din_attention")
        self.cross = [tfrs.layers.dcn.Cross(name=f"cross_{index}")
                      for index in range(config.cross_layers)]
        self.mlp = MLP(list(config.mlp_units), dropout=config.dropout, output_activation="relu",
                       name="mlp")
        self.click_logit = tf.keras.layers.Dense(1, name="click_logit")
        self.order_logit = tf.keras.layers.Dense(1, name="order_logit")

    def call(self, inputs, training=None):
        batch_features, extra = inputs
        candidate = tf.concat([self.item(batch_features[features.ITEM_ID]),
                               self.category(batch_features[features.CATEGORY])], -1)
        history = tf.concat([self.item(batch_features[features.HIST_ITEM_IDS]),
                             self.category(batch_features[features.HIST_CATEGORIES])], -1)
        mask = tf.not_equal(batch_features[features.HIST_ITEM_IDS], features.PADDING_ID)
        interest = self.interest((candidate, history, mask))
        parts = [self.user(batch_features[features.USER_ID]), candidate,
                 self.brand(batch_features[features.BRAND]), interest]
        if extra is not None:
            parts.append(extra)
        crossed = x0 = tf.concat(parts, -1)
        for layer in self.cross:
            crossed = layer(x0, crossed)
        hidden = self.mlp(crossed, training=training)
        return (tf.squeeze(self.click_logit(hidden), -1),
                tf.squeeze(self.order_logit(hidden), -1))


class IDRec(RankingModel):
    """``base`` (no extra input) or ``qm_ep`` (``extra_feature`` = the candidate's frozen
    ME vector, ``ppm_item_vec``)."""

    def __init__(self, vocabularies: dict[str, str], oov_buckets: int, config: ModelConfig,
                 extra_feature: str | None = None, **kwargs):
        super().__init__(config.order_loss_weight, **kwargs)
        self.extra_feature = extra_feature
        self.backbone = IDRecBackbone(vocabularies, oov_buckets, config, name="idrec")

    def call(self, batch_features, training=None):
        extra = batch_features[self.extra_feature] if self.extra_feature else None
        click, order = self.backbone((batch_features, extra), training=training)
        return {"click": click, "order": order}
