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
    groups = np.zeros(labels.size, np.int64)
    _, aucs, _ = group_aucs(groups, labels, scores)
    return float(aucs[0]) if aucs.size else float("nan")


def group_aucs(groups: np.ndarray, labels: np.ndarray,
               scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The AUC within each group (user, request) that has both classes, in one vectorised
    pass: ``(group ids, AUCs, impressions per group)`` over those groups, ties counted half."""
    groups, labels, scores = (np.asarray(array).ravel() for array in (groups, labels, scores))
    if not groups.shape == labels.shape == scores.shape:
        raise ValueError(f"groups {groups.shape}, labels {labels.shape} and scores "
                         f"{scores.shape} differ in shape")
    names, group_index = np.unique(groups, return_inverse=True)
    labels = labels.astype(bool)
    scores = scores.astype(np.float64)
    order = np.lexsort((scores, group_index))
    sorted_groups, sorted_scores = group_index[order], scores[order]
    # Runs of equal (group, score) share their average rank within the group.
    new_run = np.ones(order.size, bool)
    new_run[1:] = (sorted_groups[1:] != sorted_groups[:-1]) | (sorted_scores[1:]
                                                                 != sorted_scores[:-1])
    run_starts = np.flatnonzero(new_run)
    run_ends = np.append(run_starts[1:], order.size)
    group_start = np.searchsorted(sorted_groups, sorted_groups[run_starts], side="left")
    average_rank = (run_starts + run_ends + 1) / 2.0 - group_start  # 1-based within the group
    ranks = np.repeat(average_rank, run_ends - run_starts)
    sizes = np.bincount(group_index, minlength=names.size)
    positives = np.bincount(group_index, weights=labels, minlength=names.size)
    rank_sums = np.bincount(sorted_groups, weights=ranks * labels[order], minlength=names.size)
    negatives = sizes - positives
    both = (positives > 0) & (negatives > 0)
    aucs = ((rank_sums[both] - positives[both] * (positives[both] + 1) / 2.0)
            / (positives[both] * negatives[both]))
    return names[both], aucs, sizes[both]


def grouped_auc(groups: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> float:
    """GAUC: per-group (user or request) AUC weighted by the group's impressions, over the
    groups that have both classes; NaN when none has."""
    _, aucs, sizes = group_aucs(groups, labels, scores)
    return float(np.sum(aucs * sizes) / np.sum(sizes)) if sizes.size else float("nan")


def log_loss(labels: np.ndarray, probabilities: np.ndarray, epsilon: float = 1e-7) -> float:
    """Mean binary cross-entropy of probabilities (clipped away from 0 and 1)."""
    return float(np.mean(row_log_losses(labels, probabilities, epsilon)))


def row_log_losses(labels: np.ndarray, probabilities: np.ndarray,
                   epsilon: float = 1e-7) -> np.ndarray:
    """Each row's binary cross-entropy (probabilities clipped away from 0 and 1)."""
    labels = np.asarray(labels, np.float64).ravel()
    probabilities = np.clip(np.asarray(probabilities, np.float64).ravel(), epsilon, 1 - epsilon)
    return -(labels * np.log(probabilities) + (1 - labels) * np.log(1 - probabilities))


def calibration(labels: np.ndarray, probabilities: np.ndarray) -> float:
    """Mean predicted probability over the observed rate: 1.0 is calibrated."""
    observed = float(np.mean(labels))
    return float(np.mean(probabilities)) / observed if observed else float("nan")
