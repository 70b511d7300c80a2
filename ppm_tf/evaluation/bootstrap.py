"""Intervals that can carry a claim: the bootstrap over users.

Eval impressions are not independent: one user's impressions share that user's click habit,
and a ranking metric counts them together. So each resample draws *users* with replacement
(all of a drawn user's impressions come along, as often as the user is drawn) and recomputes
the metric; the 2.5th and 97.5th percentiles of the resampled values make the 95% interval.
Every model is scored on the *same* resamples, so the difference between two models is
resampled in pairs and its interval is narrower than either model's alone.

Everything is vectorised over the resamples: a resample is a vector of counts per user, each
impression weighs its user's count, and

- AUC is the weighted Mann-Whitney statistic: negatives sorted once by score, their weights
  summed cumulatively per resample, read off at each positive's rank (ties count half);
- GAUC is a weighted mean of the fixed per-group AUCs (a group — user or request — lies
  within one user, so resampling never changes a group's own AUC, only its weight);
- log loss and calibration are weighted sums.
"""
from __future__ import annotations

import dataclasses
import functools

import numpy as np

from ppm_tf.metrics import group_aucs

DEFAULT_RESAMPLES = 500
INTERVAL_LEVEL = 0.95
_CHUNK_CELLS = 4_000_000  # resamples x impressions held at once (about 32 MB of int64)


@dataclasses.dataclass(frozen=True)
class UserResamples:
    """``counts[b, u]``: how often resample ``b`` drew user ``u``; ``user_index[row]``: the
    user of each eval row (rows in the evaluation's one row order)."""

    counts: np.ndarray  # [resamples, users] int32
    user_index: np.ndarray  # [rows] int64

    @classmethod
    def draw(cls, user_ids: np.ndarray, resamples: int = DEFAULT_RESAMPLES,
             seed: int = 0) -> "UserResamples":
        """``resamples`` draws of as many users as there are, with replacement; seeded."""
        if resamples < 2:
            raise ValueError(f"bootstrap resamples must be at least 2, got {resamples}")
        users, user_index = np.unique(np.asarray(user_ids).ravel(), return_inverse=True)
        if users.size == 0:
            raise ValueError("no eval rows to resample")
        drawn = np.random.default_rng(seed).integers(0, users.size, (resamples, users.size))
        offsets = np.arange(resamples)[:, np.newaxis] * users.size
        counts = np.bincount((drawn + offsets).ravel(), minlength=resamples * users.size)
        return cls(counts.reshape(resamples, users.size).astype(np.int32),
                   user_index.astype(np.int64))

    @classmethod
    def identity(cls, user_ids: np.ndarray) -> "UserResamples":
        """One "resample" that draws every user once: its values are the plain metrics."""
        users, user_index = np.unique(np.asarray(user_ids).ravel(), return_inverse=True)
        return cls(np.ones((1, users.size), np.int32), user_index.astype(np.int64))

    @property
    def resamples(self) -> int:
        return self.counts.shape[0]

    @functools.cached_property
    def weights(self) -> np.ndarray:
        """``counts`` as floats (exact: small integers), for sums over the drawn users."""
        return self.counts.astype(np.float32)

    def ratio(self, numerator_per_user: np.ndarray,
              denominator_per_user: np.ndarray) -> np.ndarray:
        """Per-user sums summed over each resample's drawn users, one over the other:
        [resamples] (NaN where the denominator is 0). One pass over ``weights``."""
        totals = self.weights @ np.stack([numerator_per_user, denominator_per_user],
                                         1).astype(np.float32)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(totals[:, 1] > 0, totals[:, 0].astype(np.float64) / totals[:, 1],
                            np.nan)

    def chunks(self, cells_per_resample: int):
        """Blocks of resamples small enough that ``block x cells`` stays bounded."""
        step = max(1, _CHUNK_CELLS // max(cells_per_resample, 1))
        for start in range(0, self.resamples, step):
            yield self.counts[start:start + step]

    def per_user(self, values: np.ndarray, where: np.ndarray) -> np.ndarray:
        """``values`` summed per user over the rows ``where`` selects: [users]."""
        return np.bincount(self.user_index[where], weights=values[where],
                           minlength=self.counts.shape[1])


def auc_replicates(resamples: UserResamples, labels: np.ndarray, scores: np.ndarray,
                   where: np.ndarray) -> np.ndarray:
    """AUC of the rows ``where`` selects, on every resample: [resamples] (NaN where a
    resample holds only one class)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    where = np.asarray(where, bool)
    negative, positive = where & ~labels, where & labels
    order = np.argsort(scores[negative], kind="stable")
    negative_scores = scores[negative][order]
    negative_users = resamples.user_index[negative][order]
    positive_users = resamples.user_index[positive]
    # Negatives strictly below each positive, and up to its score (the difference: ties).
    below = np.searchsorted(negative_scores, scores[positive], side="left")
    up_to = np.searchsorted(negative_scores, scores[positive], side="right")
    # Cumulative weights fit int32 unless every negative could weigh the largest count.
    heaviest = int(resamples.counts.max(initial=0))
    accumulator = np.int32 if heaviest * negative_users.size < 2**31 else np.int64
    values = []
    for counts in resamples.chunks(negative_users.size + 1):
        cumulative = np.zeros((counts.shape[0], negative_users.size + 1), accumulator)
        # np.take: several times faster than fancy indexing for these gathers.
        np.cumsum(np.take(counts, negative_users, axis=1), axis=1, out=cumulative[:, 1:])
        positive_weights = np.take(counts, positive_users, axis=1).astype(np.int64)
        twice_wins = np.sum(positive_weights * (np.take(cumulative, below, axis=1)
                                                + np.take(cumulative, up_to, axis=1)), axis=1)
        pairs = positive_weights.sum(axis=1) * cumulative[:, -1]
        with np.errstate(invalid="ignore", divide="ignore"):
            values.append(np.where(pairs > 0, twice_wins / (2.0 * pairs), np.nan))
    return np.concatenate(values)


def grouped_auc_replicates(resamples: UserResamples, groups: np.ndarray, labels: np.ndarray,
                           scores: np.ndarray, where: np.ndarray) -> np.ndarray:
    """GAUC over ``groups`` (each within one user: the user itself, or a request) of the rows
    ``where`` selects, on every resample: [resamples]."""
    where = np.asarray(where, bool)
    groups = np.asarray(groups)[where]
    names, aucs, sizes = group_aucs(groups, np.asarray(labels)[where],
                                    np.asarray(scores)[where])
    row_users = resamples.user_index[where]
    names_all, first_row, group_of_row = np.unique(groups, return_index=True,
                                                   return_inverse=True)
    group_user = row_users[first_row]
    if not np.array_equal(group_user[group_of_row], row_users):
        raise ValueError("a GAUC group holds rows of several users: the bootstrap over users "
                         "needs groups within one user (users or requests)")
    users_of_groups = group_user[np.searchsorted(names_all, names)]
    users = resamples.counts.shape[1]
    weighted_auc = np.bincount(users_of_groups, weights=aucs * sizes, minlength=users)
    weight = np.bincount(users_of_groups, weights=sizes, minlength=users)
    return resamples.ratio(weighted_auc, weight)


def mean_replicates(resamples: UserResamples, values: np.ndarray,
                    where: np.ndarray) -> np.ndarray:
    """The mean of per-row ``values`` over the rows ``where`` selects: [resamples]."""
    where = np.asarray(where, bool)
    return ratio_replicates(resamples, values, np.ones(where.shape), where)


def ratio_replicates(resamples: UserResamples, numerator: np.ndarray, denominator: np.ndarray,
                     where: np.ndarray) -> np.ndarray:
    """``sum(numerator) / sum(denominator)`` over the rows ``where`` selects: [resamples]."""
    where = np.asarray(where, bool)
    return resamples.ratio(resamples.per_user(np.asarray(numerator, np.float64), where),
                           resamples.per_user(np.asarray(denominator, np.float64), where))


def percentile_interval(replicates: np.ndarray,
                        level: float = INTERVAL_LEVEL) -> list[float] | None:
    """The central ``level`` interval of the resampled values; None when the metric is
    undefined on more than half the resamples (a slice too small to hold both classes)."""
    replicates = np.asarray(replicates, np.float64)
    finite = replicates[np.isfinite(replicates)]
    if finite.size * 2 <= replicates.size:
        return None
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return [float(low), float(high)]
