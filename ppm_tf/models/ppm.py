"""PPM: the ID-free, pre-trained CTR model over item content and the behaviour sequence.

Two parts with a clean boundary (DESIGN.md §3):

- ``PPMUserTower`` (cached): the behaviour items' vectors m (``BehaviourEntries``; as an
  option with each item's as-of counts), projected, plus position and time-interval
  encodings (and, as an option, each entry's action type: shown, clicked, ordered), through
  bidirectional Transformer blocks -> user states ``H_u [batch, L, d]``. It depends only on
  the user's history, never on the candidate, so it is computed once per request (or per new
  click) and cached.
- ``PlugInHead`` (trained and served): the candidate's projection, target attention over
  ``H_u``, the as-of counts of the user, the candidate and its category (long-span, ID-free
  statistics: what the long span knows of how often each is shown and clicked), an MLP -> a
  PPM representation and click/order logits (with ``head_count_offset``, added to the count
  baseline's: the head then learns what the counts miss).

``PPM`` joins them with the item-vector table for pre-training on the long span;
``PPMOnCachedStates`` is the head alone on cached states (the ``ppm`` ablation row).
No user or item id is an input of either: only content vectors, timestamps and counts.
"""
from __future__ import annotations

import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.config import ModelConfig
from ppm_tf.models.count_rates import count_baseline_logits, prior_logits
from ppm_tf.models.history_counts import HistoryItemCounts
from ppm_tf.models.item_table import ItemVectorTable
from ppm_tf.models.layers import (MLP, BidirectionalTransformerBlock, CountEncoding,
                                  DotProductTargetAttention, PositionEmbedding,
                                  TimeIntervalEncoding)
from ppm_tf.models.tasks import RankingModel

PPM_USER_STATES, PPM_USER_MASK = features.PPM_USER_STATES, features.PPM_USER_MASK


class BehaviourEntries(tf.keras.layers.Layer):
    """``(hist_item_ids [batch, L], ts [batch])`` -> what the tower reads of each entry: its
    item's vector from the frozen table, followed, when ``history_counts`` is given (the
    config's ``tower_item_counts``), by its item's as-of counts at the request, encoded as
    the head encodes the candidate's (``CountEncoding``)."""

    def __init__(self, item_table: ItemVectorTable, history_counts: HistoryItemCounts | None,
                 count_priors: dict[str, float], **kwargs):
        super().__init__(**kwargs)
        self.item_table = item_table
        self.history_counts = history_counts
        self.count_encoding = (CountEncoding(count_priors["click_rate"],
                                             count_priors["order_rate"], name="count_encoding")
                               if history_counts is not None else None)

    def call(self, inputs):
        hist_item_ids, ts = inputs
        vectors = self.item_table(hist_item_ids)
        if self.history_counts is None:
            return vectors
        counts = self.history_counts((self.item_table.row_indices(hist_item_ids), ts))
        return tf.concat([vectors, self.count_encoding(counts)], -1)


class PPMUserTower(tf.keras.layers.Layer):
    """``(m_seq [batch, L, entry_dim], hist_ts [batch, L], hist_actions [batch, L], ts [batch],
    mask [batch, L])`` -> ``H_u [batch, L, d]`` (zero at padded positions). The actions are
    read only with the config's ``history_actions``: a sequence of impressions then tells
    the tower which items the user passed over."""

    def __init__(self, config: ModelConfig, max_seq_len: int, **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.max_seq_len = max_seq_len
        self.projection = tf.keras.layers.Dense(config.tower_dim, name="item_projection")
        self.actions = (tf.keras.layers.Embedding(features.ACTION_TYPES, config.tower_dim,
                                                  name="actions")
                        if config.history_actions else None)
        self.positions = PositionEmbedding(max_seq_len, name="positions")
        self.intervals = TimeIntervalEncoding(config.time_buckets, config.tower_dim,
                                              name="time_intervals")
        self.input_norm = tf.keras.layers.LayerNormalization(epsilon=1e-6)
        self.blocks = [BidirectionalTransformerBlock(config.tower_heads, config.tower_ff_dim,
                                                     config.dropout, name=f"block_{index}")
                       for index in range(config.tower_blocks)]

    def call(self, inputs, training=None):
        item_vectors, hist_ts, hist_actions, ts, mask = inputs
        states = self.projection(item_vectors)
        if self.actions is not None:
            states += self.actions(hist_actions)
        states = self.positions(states)
        states = self.input_norm(states + self.intervals((ts, hist_ts)))
        for block in self.blocks:
            states = block((states, mask), training=training)
        return states


class PlugInHead(tf.keras.layers.Layer):
    """``(H_u [batch, L, d], mask [batch, L], candidate m [batch, item_dim], counts)`` ->
    ``(representation [batch, r], click_logit [batch], order_logit [batch])``; ``counts``
    maps ``features.COUNT_FEATURES`` to their ``[batch, COUNT_SIZE]`` values (read only when
    the config's ``ppm_counts`` is on).

    Its target attention is a scaled dot product, not DIN's MLP scorer: ``H_u`` is already
    contextualised by the tower, and the head runs in every URM step and request beside
    IDRec, so its cost is what URM adds to IDRec's (``benchmarks/train_throughput.py``).
    """

    def __init__(self, config: ModelConfig, count_priors: dict[str, float], **kwargs):
        super().__init__(**kwargs)
        self.config = config
        self.counts = (CountEncoding(count_priors["click_rate"], count_priors["order_rate"],
                                     name="count_encoding")
                       if config.ppm_counts or config.head_count_offset else None)
        self.candidate_projection = tf.keras.layers.Dense(config.tower_dim,
                                                          name="candidate_projection")
        self.attention = DotProductTargetAttention(name="target_attention")
        self.mlp = MLP(list(config.head_units), dropout=config.dropout,
                       output_activation="relu", name="mlp")
        # With the count offset the logits start at the count baseline's, as IDRec's do with
        # ``count_offset``: the output layers start at zero and learn what the counts miss.
        self.offset_prior_logits = (prior_logits(count_priors) if config.head_count_offset
                                    else None)
        output_initializer = "zeros" if config.head_count_offset else "glorot_uniform"
        self.click_logit = tf.keras.layers.Dense(1, kernel_initializer=output_initializer,
                                                 name="click_logit")
        self.order_logit = tf.keras.layers.Dense(1, kernel_initializer=output_initializer,
                                                 name="order_logit")

    def call(self, inputs, training=None):
        states, mask, candidate_vectors, counts = inputs
        candidate = self.candidate_projection(candidate_vectors)
        interest = self.attention((candidate, states, mask))
        parts = [candidate, interest, candidate * interest]
        encoded = ({name: self.counts(counts[name]) for name in features.COUNT_FEATURES}
                   if self.counts is not None else {})
        if self.config.ppm_counts:
            parts += list(encoded.values())
        representation = self.mlp(tf.concat(parts, -1), training=training)
        click = tf.squeeze(self.click_logit(representation), -1)
        order = tf.squeeze(self.order_logit(representation), -1)
        if self.offset_prior_logits is not None:
            offset_click, offset_order = count_baseline_logits(
                encoded[features.USER_COUNTS], encoded[features.ITEM_COUNTS],
                self.offset_prior_logits)
            click, order = click + offset_click, order + offset_order
        return representation, click, order


def head_counts(batch_features) -> dict:
    """The head's ``counts`` input from a batch (every example carries them)."""
    return {name: batch_features[name] for name in features.COUNT_FEATURES}


def history_mask(batch_features) -> tf.Tensor:
    return tf.not_equal(batch_features[features.HIST_ITEM_IDS], features.PADDING_ID)


class PPM(RankingModel):
    """Pre-training model: item-vector table + user tower + plug-in head, on raw examples."""

    def __init__(self, item_table: ItemVectorTable, config: ModelConfig, max_seq_len: int,
                 count_priors: dict[str, float],
                 history_counts: HistoryItemCounts | None = None, **kwargs):
        super().__init__(config, **kwargs)
        if (history_counts is not None) != config.tower_item_counts:
            raise ValueError("history_counts must be given exactly when the config's "
                             f"tower_item_counts is on (it is {config.tower_item_counts})")
        self.item_table = item_table
        self.entries = BehaviourEntries(item_table, history_counts, count_priors,
                                        name="behaviour_entries")
        self.user_tower = PPMUserTower(config, max_seq_len, name="user_tower")
        self.head = PlugInHead(config, count_priors, name="plug_in_head")
        self.starts_at_baseline = config.head_count_offset

    def user_states(self, batch_features, training=None):
        """What precompute caches: ``{ppm_user_states [batch, L, d], ppm_user_mask [batch, L]}``."""
        mask = history_mask(batch_features)
        states = self.user_tower((self.entries((batch_features[features.HIST_ITEM_IDS],
                                                batch_features[features.TS])),
                                  batch_features[features.HIST_TS],
                                  batch_features[features.HIST_ACTIONS],
                                  batch_features[features.TS], mask), training=training)
        return {PPM_USER_STATES: states, PPM_USER_MASK: tf.cast(mask, tf.int64)}

    def call(self, batch_features, training=None):
        # The tower runs once per distinct history of the batch: a request's impressions
        # share theirs, and pre-training on grouped requests (``pretrain_request_group``)
        # puts several of them in one batch.
        first, back = self.distinct_histories(batch_features)
        distinct = self.user_states({name: tf.gather(batch_features[name], first)
                                     for name in features.USER_STATE_INPUTS},
                                    training=training)
        cached = {name: tf.gather(value, back) for name, value in distinct.items()}
        _, click, order = self.head((cached[PPM_USER_STATES], cached[PPM_USER_MASK],
                                     self.item_table(batch_features[features.ITEM_ID]),
                                     head_counts(batch_features)), training=training)
        return {"click": click, "order": order}

    def distinct_histories(self, batch_features) -> tuple[tf.Tensor, tf.Tensor]:
        """``(first, back)``: the batch positions of the first example of each distinct tower
        input (the rows of the item table the history reads, its mask, times and actions,
        and the request time: what ``user_states`` sees, the as-of counts included), and each
        example's index into them. Exact: rows are compared whole, not hashed."""
        rows = tf.concat([self.item_table.row_indices(batch_features[features.HIST_ITEM_IDS]),
                          tf.cast(history_mask(batch_features), tf.int64),
                          batch_features[features.HIST_TS],
                          batch_features[features.HIST_ACTIONS],
                          batch_features[features.TS][:, tf.newaxis]], axis=1)
        distinct, back = tf.raw_ops.UniqueV2(x=rows, axis=tf.constant([0], tf.int64))
        first = tf.math.unsorted_segment_min(tf.range(tf.shape(back)[0]), back,
                                             tf.shape(distinct)[0])
        return first, back


class PPMOnCachedStates(RankingModel):
    """The plug-in head alone, fed by cached states: PPM fine-tuned on the recent window."""

    def __init__(self, config: ModelConfig, count_priors: dict[str, float], **kwargs):
        super().__init__(config, **kwargs)
        self.head = PlugInHead(config, count_priors, name="plug_in_head")
        # Its start is the pre-trained head: with the count offset, kept when no epoch of
        # fine-tuning beats it on ``valid``, as IDRec's count offset is.
        self.starts_at_baseline = config.head_count_offset

    def call(self, batch_features, training=None):
        _, click, order = self.head(cached_head_inputs(batch_features), training=training)
        return {"click": click, "order": order}


def cached_head_inputs(batch_features) -> tuple:
    """The plug-in head's inputs from a batch of cached examples (``ppm precompute``)."""
    return (batch_features[PPM_USER_STATES], batch_features[PPM_USER_MASK],
            batch_features[features.PPM_ITEM_VEC], head_counts(batch_features))
