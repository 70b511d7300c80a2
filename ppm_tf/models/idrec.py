"""IDRec: the ID-based CTR model the paper starts from ("Base").

Id embeddings (user, item, category, brand; vocabulary + hashed out-of-vocabulary buckets), a
bag of the item's content tokens (all its entities and declared attributes; off with
``content_tokens=false``, to measure what they give a new item), DIN attention
of the candidate over the behaviour sequence's clicks, the as-of counts of the user, the item
and its category (smoothed towards ``count_priors``: what the logs plainly say about
how often each clicks or is clicked, known for users and items no id embedding has seen),
``tfrs.layers.dcn.Cross`` layers and an MLP, click and order heads; with ``count_offset`` the
heads learn a residual on the count baseline's logits, and with ``user_id_dropout`` /
``item_id_dropout`` training shows some examples' user (candidate) as an unseen id.
``IDRecBackbone`` takes extra dense inputs so the ablations can add content: ``qm_ep`` adds
the frozen ME item vector, URM adds PPM's representation (``unified.py``).
"""
from __future__ import annotations

import tensorflow as tf
import tensorflow_recommenders as tfrs

from ppm_tf import features
from ppm_tf.models.config import ModelConfig
from ppm_tf.models.count_rates import count_baseline_logits, prior_logits
from ppm_tf.models.layers import MLP, CountEncoding, TargetAttention
from ppm_tf.models.tasks import RankingModel


@tf.keras.utils.register_keras_serializable(package="ppm_tf")
class UnseenRowsAtZero(tf.keras.initializers.Initializer):
    """``initializer`` for an id table's rows, except rows ``first .. first + count - 1``
    (the out-of-vocabulary buckets), which start at zero.

    Training never reaches a bucket unless id dropout sends it there, so a bucket keeps its
    first value; drawn at random, every new user (item) would get its own random offset,
    which on MovieLens, where 91% of eval impressions come from users first seen there, cost
    base_long 0.025 click AUC (README, *Unseen ids start at zero*). At zero, all unseen ids
    embed alike.
    """

    def __init__(self, initializer, first: int, count: int):
        self.initializer = tf.keras.initializers.get(initializer)
        self.first = first
        self.count = count

    def __call__(self, shape, dtype=None, **kwargs):
        values = self.initializer(shape, dtype=dtype, **kwargs)
        # A table sharded over parameter servers is drawn shard by shard.
        first_row = kwargs.get("partition_offset", (0,))[0]
        rows = first_row + tf.range(tf.shape(values)[0])[:, tf.newaxis]
        unseen = (rows >= self.first) & (rows < self.first + self.count)
        return tf.where(unseen, tf.zeros_like(values), values)

    def get_config(self):
        return {"initializer": tf.keras.initializers.serialize(self.initializer),
                "first": self.first, "count": self.count}


class IdEmbedding(tf.keras.layers.Layer):
    """Strings -> embeddings via a vocabulary file; tokens not in it share ``oov_buckets``
    hashed rows, which start at zero (``UnseenRowsAtZero``), and the padding id "" maps to
    row 0.

    An empty vocabulary file (a field the data never fills, e.g. MovieLens brands) hashes
    every token (``StringLookup`` cannot be built on an empty vocabulary), so all its rows
    train and start as ``initializer`` says. With ``dropout``, training replaces that share of
    the ids by the out-of-vocabulary bucket an unseen id would get, so those buckets learn
    what an unknown id looks like (as at serving, for every new user or item) instead of
    staying at zero.
    """

    def __init__(self, vocabulary_file: str, oov_buckets: int, dim: int, l2: float = 0.0,
                 initializer: str = "uniform", dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_file = vocabulary_file
        self.oov_buckets = oov_buckets
        self.dim = dim
        self.l2 = l2
        self.initializer = initializer
        self.dropout = dropout
        if tf.io.gfile.stat(vocabulary_file).length == 0:
            self.lookup = tf.keras.layers.Hashing(num_bins=oov_buckets + 1,
                                                  mask_value=features.PADDING_ID)
            rows = oov_buckets + 1
        else:
            self.lookup = tf.keras.layers.StringLookup(
                vocabulary=vocabulary_file, num_oov_indices=oov_buckets,
                mask_token=features.PADDING_ID)
            rows = self.lookup.vocabulary_size()
            initializer = UnseenRowsAtZero(initializer, first=1, count=oov_buckets)
        self.embedding = tf.keras.layers.Embedding(rows, dim, embeddings_initializer=initializer)

    def call(self, ids, training=None):
        indices = self.lookup(ids)
        if training and self.dropout and isinstance(self.lookup, tf.keras.layers.StringLookup):
            indices = self._drop_ids(ids, indices)
        embedded = self.embedding(indices)
        if self.l2:
            # On the rows a batch uses, not the whole table: ids seen rarely stay near zero
            # while frequent ids are penalised in proportion to how often they appear.
            self.add_loss(self.l2 * tf.reduce_sum(tf.reduce_mean(tf.square(embedded), 0)))
        return embedded

    def _drop_ids(self, ids, indices):
        """``indices`` with a ``dropout`` share of the non-padding ids moved to their
        out-of-vocabulary bucket (rows 1..oov_buckets, after the padding row, as
        ``StringLookup`` hashes an unseen id)."""
        oov = 1 + tf.strings.to_hash_bucket_fast(ids, self.oov_buckets)
        dropped = tf.logical_and(tf.random.uniform(tf.shape(ids)) < self.dropout,
                                 tf.not_equal(ids, features.PADDING_ID))
        return tf.where(dropped, oov, indices)

    def get_config(self):
        return {**super().get_config(), "vocabulary_file": self.vocabulary_file,
                "oov_buckets": self.oov_buckets, "dim": self.dim, "l2": self.l2,
                "initializer": self.initializer, "dropout": self.dropout}


class ContentBag(tf.keras.layers.Layer):
    """Joined content tokens (``features.ITEM_CONTENT``, ``HIST_CONTENT``) -> the mean of
    their embeddings: an embedding bag, so an item with five genres is not reduced to its
    first. Input ``[batch]`` or ``[batch, L]`` strings; output ``[..., dim]``; an item with no
    token (or a padded position) gives zeros."""

    def __init__(self, vocabulary_file: str, oov_buckets: int, dim: int, l2: float = 0.0,
                 initializer: str = "uniform", **kwargs):
        super().__init__(**kwargs)
        self.tokens = IdEmbedding(vocabulary_file, oov_buckets, dim, l2, initializer,
                                  name="tokens")

    def call(self, joined):
        tokens = tf.strings.split(tf.reshape(joined, [-1]), features.CONTENT_SEPARATOR)
        tokens = tf.ragged.boolean_mask(tokens, tf.not_equal(tokens, ""))  # [items, None]
        summed = tf.math.unsorted_segment_sum(
            self.tokens(tokens.flat_values), tokens.value_rowids(), tokens.nrows())
        counts = tf.cast(tokens.row_lengths(), tf.float32)[:, tf.newaxis]
        mean = summed / tf.maximum(counts, 1.0)
        return tf.reshape(mean, tf.concat([tf.shape(joined), [self.tokens.dim]], 0))

    def get_config(self):
        config = self.tokens.get_config()
        return {**super().get_config(), **{key: config[key] for key in (
            "vocabulary_file", "oov_buckets", "dim", "l2", "initializer")}}


def clicked_history(batch_features) -> tf.Tensor:
    """``[batch, L]`` True where the behaviour entry was clicked: the id models pool the
    user's clicks only, also in a sequence of impressions (``ppm preprocess --history``)."""
    return tf.greater_equal(batch_features[features.HIST_ACTIONS], features.ACTION_CLICKED)


class IDRecBackbone(tf.keras.layers.Layer):
    """``(features, extra [batch, n] or None)`` -> ``(click_logit, order_logit)`` [batch]."""

    def __init__(self, vocabularies: dict[str, str], oov_buckets: int, config: ModelConfig,
                 count_priors: dict[str, float], starts_at_zero: bool = False, **kwargs):
        """``starts_at_zero``: the output layers start at zero (as with ``count_offset``), so
        a model that adds this backbone's logits to a baseline's starts at the baseline."""
        super().__init__(**kwargs)
        dim = config.id_embedding_dim
        self.counts = CountEncoding(count_priors["click_rate"], count_priors["order_rate"],
                                    name="count_encoding")
        self.count_volumes = config.count_volumes
        l2 = config.embedding_l2
        self.user = IdEmbedding(vocabularies[features.USER_ID], oov_buckets, dim, l2,
                                dropout=config.user_id_dropout, name="user")
        # The same rows embed the candidate and the behaviour items; only the candidate's id
        # is dropped (the history is what a new item's users have).
        self.item = IdEmbedding(vocabularies[features.ITEM_ID], oov_buckets, dim, l2,
                                dropout=config.item_id_dropout, name="item")
        self.category = IdEmbedding(vocabularies[features.CATEGORY], oov_buckets, dim, l2,
                                    name="category")
        self.brand = IdEmbedding(vocabularies[features.BRAND], oov_buckets, dim, l2,
                                 name="brand")
        self.content = (ContentBag(vocabularies[features.CONTENT_VOCABULARY], oov_buckets, dim,
                                   l2, name="content") if config.content_tokens else None)
        self.interest = TargetAttention(list(config.attention_units), name="din_attention")
        self.cross = [tfrs.layers.dcn.Cross(name=f"cross_{index}")
                      for index in range(config.cross_layers)]
        self.mlp = MLP(list(config.mlp_units), dropout=config.dropout, output_activation="relu",
                       name="mlp")
        # With the count offset, the logits start at the count baseline's and the network
        # learns what the counts miss: its output layers start at zero.
        self.offset_prior_logits = prior_logits(count_priors) if config.count_offset else None
        output_initializer = ("zeros" if config.count_offset or starts_at_zero
                              else "glorot_uniform")
        self.click_logit = tf.keras.layers.Dense(1, kernel_initializer=output_initializer,
                                                 name="click_logit")
        self.order_logit = tf.keras.layers.Dense(1, kernel_initializer=output_initializer,
                                                 name="order_logit")

    def call(self, inputs, training=None):
        batch_features, extra = inputs
        candidate = self._item_embedding(batch_features, features.ITEM_ID, features.CATEGORY,
                                         features.ITEM_CONTENT, training)
        history = self._item_embedding(batch_features, features.HIST_ITEM_IDS,
                                       features.HIST_CATEGORIES, features.HIST_CONTENT, False)
        interest = self.interest((candidate, history, clicked_history(batch_features)))
        encoded = {name: self.counts(batch_features[name]) for name in features.COUNT_FEATURES}
        counts = tf.concat([CountEncoding.model_inputs(value, self.count_volumes)
                            for value in encoded.values()], -1)
        parts = [self.user(batch_features[features.USER_ID], training=training), candidate,
                 self.brand(batch_features[features.BRAND]), interest, counts]
        if extra is not None:
            parts.append(extra)
        crossed = x0 = tf.concat(parts, -1)
        for layer in self.cross:
            crossed = layer(x0, crossed)
        hidden = self.mlp(crossed, training=training)
        click = tf.squeeze(self.click_logit(hidden), -1)
        order = tf.squeeze(self.order_logit(hidden), -1)
        if self.offset_prior_logits is None:
            return click, order
        offset_click, offset_order = count_baseline_logits(
            encoded[features.USER_COUNTS], encoded[features.ITEM_COUNTS],
            self.offset_prior_logits)
        return click + offset_click, order + offset_order

    def _item_embedding(self, batch_features, ids, categories, content, training):
        """An item's (or each behaviour entry's) id, category and, with ``content_tokens``,
        content-token embeddings, side by side."""
        parts = [self.item(batch_features[ids], training=training),
                 self.category(batch_features[categories])]
        if self.content is not None:
            parts.append(self.content(batch_features[content]))
        return tf.concat(parts, -1)


class IDRec(RankingModel):
    """``base`` (no extra input) or ``qm_ep`` (``extra_feature`` = the candidate's frozen
    ME vector, ``ppm_item_vec``)."""

    def __init__(self, vocabularies: dict[str, str], oov_buckets: int, config: ModelConfig,
                 count_priors: dict[str, float], extra_feature: str | None = None, **kwargs):
        super().__init__(config, **kwargs)
        self.extra_feature = extra_feature
        self.extra_norm = (tf.keras.layers.LayerNormalization(name="content_norm")
                           if extra_feature and config.content_norm else None)
        self.backbone = IDRecBackbone(vocabularies, oov_buckets, config, count_priors,
                                      name="idrec")
        self.starts_at_baseline = config.count_offset

    def call(self, batch_features, training=None):
        extra = batch_features[self.extra_feature] if self.extra_feature else None
        if self.extra_norm is not None:
            extra = self.extra_norm(extra)
        click, order = self.backbone((batch_features, extra), training=training)
        return {"click": click, "order": order}
