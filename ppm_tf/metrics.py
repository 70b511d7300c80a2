"""Ranking metrics in numpy (AUC, GAUC, log loss, calibration), shared by data summaries,
the evaluation and export checks; no TensorFlow needed."""
from __future__ import annotations

import numpy as np


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties counted half); NaN without both classes."""
    labels = np.asarray(labels).astype(bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise ValueError(f"labels {labels.shape} and scores {scores.shape} differ in shape")
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = scores[order]
    ranks = np.empty(scores.size, np.float64)
    # Average rank within each run of tied scores.
    boundaries = np.flatnonzero(np.diff(sorted_scores)) + 1
    starts = np.concatenate([[0], boundaries])
    ends = np.concatenate([boundaries, [scores.size]])
    average_rank = (starts + ends + 1) / 2.0
    ranks[order] = np.repeat(average_rank, ends - starts)
    rank_sum = ranks[labels].sum()
    return float((rank_sum - positives * (positives + 1) / 2.0) / (positives * negatives))


def grouped_auc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """GAUC: per-group (user) AUC weighted by the group's impressions, over the groups that
    have both classes; NaN when none has."""
    groups, labels, scores = (np.asarray(array).ravel() for array in (groups, labels, scores))
    order = np.argsort(groups, kind="mergesort")
    groups, labels, scores = groups[order], labels[order], scores[order]
    boundaries = np.flatnonzero(groups[1:] != groups[:-1]) + 1
    total_weight = weighted_sum = 0.0
    for group_labels, group_scores in zip(np.split(labels, boundaries),
                                          np.split(scores, boundaries)):
        positives = group_labels.sum()
        if 0 < positives < group_labels.size:
            weighted_sum += group_labels.size * roc_auc(group_labels, group_scores)
            total_weight += group_labels.size
    return weighted_sum / total_weight if total_weight else float("nan")


def log_loss(labels: np.ndarray, probabilities: np.ndarray, epsilon: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1)."""
    labels = np.asarray(labels, np.float64).ravel()
    probabilities = np.clip(np.asarray(probabilities, np.float64).ravel(), epsilon, 1 - epsilon)
    return float(-np.mean(labels * np.log(probabilities)
                          + (1 - labels) * np.log(1 - probabilities)))


def calibration(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean predicted probability over the observed rate: 1.0 is calibrated."""
    observed = float(np.mean(labels))
    return float(np.mean(probabilities)) / observed if observed else float("nan")
