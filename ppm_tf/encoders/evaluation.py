"""Held-out metrics of the two ME tasks, and the baselines they are read against (numpy).

Query matching: for each held-out query, every catalogue item is scored and the clicked
item's rank gives **Recall@k** (rank <= k) and **MRR** (mean 1/rank). Ties are broken at
random *in expectation*: with ``g`` items scored strictly higher and ``t`` others tied with the
clicked item, the rank is uniform on ``g+1 .. g+t+1``. This matters for the bag-of-words
**TF-IDF** baseline (many items share a score, often 0) and makes its figures exact expected
values rather than an artefact of sort order. **Random** ranking gives Recall@k = k/N and
MRR = H(N)/N over N items.

Entity neighbours (the text encoder's metric that needs no search log): for an item, its
``k`` nearest other items by cosine, and the mean **Jaccard overlap of their entity sets** with
its own (MovieLens: genres; synthetic: category, colour, pattern). It says whether the text
space puts items of the same kind together, which is what a CTR model needs from content for
an item it has never seen. Ties are broken at random in expectation, as above; **random**
neighbours score the item's mean overlap with every other item.

Entity prediction: micro F1 (all item x entity decisions pooled), macro F1 (mean over the
entities that occur in the held-out labels), both at a probability threshold, and ROC AUC,
micro (pooled) and macro (mean over entities with both classes). The trivial baseline scores
every item with the entities' training frequencies.
"""
from __future__ import annotations

import collections
import math
import re
from typing import Iterable, Sequence

import numpy as np

from ppm_tf.metrics import roc_auc

_WORD = re.compile(r"\w+", re.UNICODE)


def _harmonic(n: np.ndarray) -> np.ndarray:
    """H(n) = 1 + 1/2 + ... + 1/n (H(0) = 0), for integer arrays up to any size."""
    n = np.asarray(n, np.float64)
    small = n < 64
    exact = np.cumsum(np.concatenate([[0.0], 1.0 / np.arange(1, 64)]))
    euler = 0.5772156649015329
    safe = np.maximum(n, 1.0)
    asymptotic = np.log(safe) + euler + 1 / (2 * safe) - 1 / (12 * safe ** 2)
    return np.where(small, exact[np.minimum(n, 63).astype(np.int64)], asymptotic)


class RankingAccumulator:
    """Sums expected Recall@k and reciprocal ranks over batches of scored queries."""

    def __init__(self, k: int = 10):
        self.k = k
        self.count = 0
        self.recall_sum = 0.0
        self.reciprocal_rank_sum = 0.0

    def add(self, scores: np.ndarray, targets: np.ndarray) -> None:
        """``scores`` ``[queries, items]``; ``targets`` ``[queries]`` column of the clicked item."""
        scores = np.asarray(scores, np.float64)
        targets = np.asarray(targets, np.int64)
        target_scores = scores[np.arange(len(targets)), targets][:, None]
        higher = (scores > target_scores).sum(axis=1)
        ties = (scores == target_scores).sum(axis=1) - 1
        self.recall_sum += float(np.clip((self.k - higher) / (ties + 1), 0.0, 1.0).sum())
        # E[1/rank] with rank uniform on higher+1 .. higher+ties+1.
        self.reciprocal_rank_sum += float(
            ((_harmonic(higher + ties + 1) - _harmonic(higher)) / (ties + 1)).sum())
        self.count += len(targets)

    def result(self) -> dict:
        if not self.count:
            return {f"recall_at_{self.k}": float("nan"), "mrr": float("nan"), "queries": 0}
        return {f"recall_at_{self.k}": self.recall_sum / self.count,
                "mrr": self.reciprocal_rank_sum / self.count, "queries": self.count}


def random_ranking(num_items: int, k: int = 10) -> dict:
    """Expected Recall@k and MRR of a uniformly random ranking of ``num_items`` items."""
    return {f"recall_at_{k}": min(k / num_items, 1.0),
            "mrr": float(_harmonic(np.array([num_items]))[0]) / num_items}


def words(text: str | bytes) -> list[str]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    return _WORD.findall(text.lower())


class TfidfIndex:
    """Bag-of-words TF-IDF over the catalogue titles, scored by cosine similarity.

    Smoothed idf ``log((1 + N) / (1 + df)) + 1``; title and query vectors L2-normalised.
    Scoring goes through an inverted index, so memory is linear in the titles' length.
    """

    def __init__(self, titles: Sequence[str | bytes]):
        self.num_items = len(titles)
        documents = [collections.Counter(words(title)) for title in titles]
        frequency = collections.Counter(word for document in documents for word in document)
        self.idf = {word: math.log((1 + self.num_items) / (1 + count)) + 1.0
                    for word, count in frequency.items()}
        postings: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
        for item, document in enumerate(documents):
            weights = {word: count * self.idf[word] for word, count in document.items()}
            norm = math.sqrt(sum(weight * weight for weight in weights.values())) or 1.0
            for word, weight in weights.items():
                postings[word].append((item, weight / norm))
        self.postings = {word: (np.array([item for item, _ in entries], np.int64),
                                np.array([weight for _, weight in entries], np.float64))
                         for word, entries in postings.items()}

    def scores(self, queries: Iterable[str | bytes]) -> np.ndarray:
        """``[queries, items]`` cosine similarities (0 for queries with no known word)."""
        queries = list(queries)
        result = np.zeros((len(queries), self.num_items), np.float64)
        for row, query in enumerate(queries):
            counts = collections.Counter(word for word in words(query) if word in self.idf)
            weights = {word: count * self.idf[word] for word, count in counts.items()}
            norm = math.sqrt(sum(weight * weight for weight in weights.values())) or 1.0
            for word, weight in weights.items():
                items, title_weights = self.postings[word]
                result[row, items] += weight / norm * title_weights
        return result


def tfidf_ranking(titles: Sequence[str | bytes], queries: Sequence[str | bytes],
                  targets: Sequence[int], k: int = 10, chunk: int = 512) -> dict:
    """Recall@k and MRR of the TF-IDF baseline on the same queries and catalogue."""
    index = TfidfIndex(titles)
    accumulator = RankingAccumulator(k)
    targets = np.asarray(targets, np.int64)
    for start in range(0, len(queries), chunk):
        accumulator.add(index.scores(queries[start:start + chunk]),
                        targets[start:start + chunk])
    return accumulator.result()


def entity_jaccard(query_entities: Sequence[Sequence], item_entities: Sequence[Sequence]
                   ) -> np.ndarray:
    """``[queries, items]`` Jaccard overlap of entity sets (0 where both are empty)."""
    vocabulary = {entity: index for index, entity in enumerate(
        sorted({entity for entities in [*query_entities, *item_entities] for entity in entities}))}

    def multi_hot(rows):
        matrix = np.zeros((len(rows), max(len(vocabulary), 1)), np.float32)
        for row, entities in enumerate(rows):
            matrix[row, [vocabulary[entity] for entity in set(entities)]] = 1.0
        return matrix

    queries, items = multi_hot(query_entities), multi_hot(item_entities)
    overlap = queries @ items.T
    union = queries.sum(1)[:, None] + items.sum(1)[None, :] - overlap
    return np.divide(overlap, union, out=np.zeros_like(overlap), where=union > 0)


def expected_top_k_relevance(scores: np.ndarray, relevance: np.ndarray, k: int) -> np.ndarray:
    """``[queries]`` mean relevance of each row's ``k`` highest-scored columns, ties at the
    cut-off broken at random in expectation. Columns scored ``-inf`` are never chosen
    (need at least ``k`` finite scores per row)."""
    scores = np.asarray(scores, np.float64)
    threshold = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]
    above, tied = scores > threshold, scores == threshold
    slots = k - above.sum(axis=1)
    tied_mean = (relevance * tied).sum(axis=1) / tied.sum(axis=1)
    return ((relevance * above).sum(axis=1) + slots * tied_mean) / k


class NeighbourAccumulator:
    """Sums the entity overlap of each query item's ``k`` nearest other items."""

    def __init__(self, k: int = 10):
        self.k = k
        self.count = 0
        self.total = 0.0

    def add(self, scores: np.ndarray, relevance: np.ndarray, rows: np.ndarray) -> None:
        """``scores``/``relevance`` ``[queries, items]``; ``rows`` ``[queries]`` each query
        item's own column (excluded)."""
        scores = np.array(scores, np.float64)
        scores[np.arange(len(rows)), rows] = -np.inf
        self.total += float(expected_top_k_relevance(scores, relevance, self.k).sum())
        self.count += len(rows)

    def result(self) -> dict:
        value = self.total / self.count if self.count else float("nan")
        return {"entity_jaccard": value, "k": self.k, "items": self.count}


def random_neighbours(relevance: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``[queries]`` expected overlap of a random other item."""
    own = relevance[np.arange(len(rows)), rows]
    return (relevance.sum(axis=1) - own) / (relevance.shape[1] - 1)


def f1_scores(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Micro and macro F1 of multi-label decisions ``[items, entities]`` (0/1 each).

    Macro averages over entities with at least one positive label; an entity never
    predicted and never present does not count (its F1 is undefined).
    """
    labels = np.asarray(labels).astype(bool)
    predicted = np.asarray(predicted).astype(bool)
    if labels.shape != predicted.shape:
        raise ValueError(f"labels {labels.shape} and predictions {predicted.shape} differ")
    true_positive = (labels & predicted).sum(axis=0).astype(np.float64)
    false_positive = (~labels & predicted).sum(axis=0)
    false_negative = (labels & ~predicted).sum(axis=0)
    denominator = 2 * true_positive.sum() + false_positive.sum() + false_negative.sum()
    micro = 2 * true_positive.sum() / denominator if denominator else float("nan")
    present = labels.any(axis=0)
    per_entity = 2 * true_positive / np.maximum(
        2 * true_positive + false_positive + false_negative, 1)
    macro = float(per_entity[present].mean()) if present.any() else float("nan")
    return {"micro_f1": float(micro), "macro_f1": macro}


def auc_scores(labels: np.ndarray, scores: np.ndarray) -> dict:
    """Micro AUC (all item x entity pairs pooled) and macro AUC (mean over entities that
    have both classes among the items)."""
    labels = np.asarray(labels).astype(bool)
    scores = np.asarray(scores, np.float64)
    per_entity = [roc_auc(labels[:, column], scores[:, column])
                  for column in range(labels.shape[1])]
    defined = [value for value in per_entity if not math.isnan(value)]
    return {"micro_auc": roc_auc(labels.ravel(), scores.ravel()),
            "macro_auc": float(np.mean(defined)) if defined else float("nan")}


def entity_prediction_metrics(labels: np.ndarray, probabilities: np.ndarray,
                              threshold: float = 0.5) -> dict:
    """F1 at ``threshold`` and AUC of predicted probabilities ``[items, entities]``."""
    return {**f1_scores(labels, np.asarray(probabilities) >= threshold),
            **auc_scores(labels, probabilities), "items": int(np.asarray(labels).shape[0])}


def prior_baseline(train_labels: np.ndarray, heldout_labels: np.ndarray,
                   threshold: float = 0.5) -> dict:
    """EP metrics when every item gets the entities' training frequencies as probabilities."""
    prior = np.asarray(train_labels, np.float64).mean(axis=0)
    probabilities = np.broadcast_to(prior, np.asarray(heldout_labels).shape)
    return entity_prediction_metrics(heldout_labels, probabilities, threshold)
