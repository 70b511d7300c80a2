"""In-request ranking losses: the click head also learns to order one request's impressions.

The pointwise BCE learns calibrated probabilities but spends its capacity on what differs
between requests (this user clicks a lot, that day had few clicks); a ranking loss compares
only impressions shown together, which is what per-request GAUC and a served ranking measure.
Both are added to the BCE, never replace it, so probabilities stay calibrated.

Each loss is returned per example, ``[batch]``, and is non-zero only on a positive that shares
its request with at least one negative: the caller averages it over the global batch like the
BCE (``tf.nn.compute_average_loss``), so the ``tf.distribute`` contract holds unchanged.
Impressions pair only within one batch (the reader keeps a request's impressions together:
``read_split(..., group_requests=True)``) and only within one request.
"""
from __future__ import annotations

import tensorflow as tf

from ppm_tf.models.config import RANKING_LOSSES

NONE, PAIRWISE, LISTWISE = RANKING_LOSSES


def pairwise_loss(labels, logits, request_ids):
    """RankNet's logistic pair loss, per positive the mean over its request's negatives:
    ``loss_i = mean_{j in neg(r_i)} log(1 + exp(s_j - s_i))``. Shapes ``[batch]``."""
    pairs = _positive_negative_pairs(labels, request_ids)
    margins = logits[tf.newaxis, :] - logits[:, tf.newaxis]  # [i, j] = s_j - s_i
    pair_losses = tf.where(pairs, tf.nn.softplus(margins), 0.0)
    negatives = tf.reduce_sum(tf.cast(pairs, logits.dtype), axis=1)
    return tf.math.divide_no_nan(tf.reduce_sum(pair_losses, axis=1), negatives)


def listwise_loss(labels, logits, request_ids):
    """Softmax cross-entropy of each positive against its request's negatives:
    ``loss_i = log(exp(s_i) + sum_{j in neg(r_i)} exp(s_j)) - s_i``. Shapes ``[batch]``."""
    pairs = _positive_negative_pairs(labels, request_ids)
    contenders = tf.logical_or(pairs, tf.eye(tf.size(logits), dtype=tf.bool))
    rows = tf.broadcast_to(logits[tf.newaxis, :], tf.shape(contenders))
    log_normaliser = tf.reduce_logsumexp(
        tf.where(contenders, rows, tf.constant(-float("inf"), logits.dtype)), axis=1)
    has_negative = tf.reduce_any(pairs, axis=1)
    return tf.where(has_negative, log_normaliser - logits, 0.0)


def ranking_loss(kind: str, labels, logits, request_ids):
    """The ``kind`` loss (``RANKING_LOSSES``) per example; zeros for ``"none"``."""
    if kind == PAIRWISE:
        return pairwise_loss(labels, logits, request_ids)
    if kind == LISTWISE:
        return listwise_loss(labels, logits, request_ids)
    if kind == NONE:
        return tf.zeros_like(logits)
    raise ValueError(f"ranking_loss must be one of {RANKING_LOSSES}, got {kind!r}")


def _positive_negative_pairs(labels, request_ids):
    """``[batch, batch]`` bools: ``[i, j]`` when i is a positive, j a negative, same request."""
    _, request_index = tf.unique(request_ids)  # exact: no hash can merge two requests
    same_request = tf.equal(request_index[:, tf.newaxis], request_index[tf.newaxis, :])
    positive = labels > 0.5
    return same_request & positive[:, tf.newaxis] & tf.logical_not(positive)[tf.newaxis, :]
