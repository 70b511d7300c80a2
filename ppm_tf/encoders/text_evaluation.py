"""The text encoder's held-out metrics, whatever objective trained it (``evaluation`` defines
them and their baselines):

- **query -> item** (when the search log has held-out queries): every query of a split is
  scored against the whole catalogue's titles; Recall@10 and MRR of the clicked item, next to
  TF-IDF, random ranking and popularity (items ranked by their clicks in the training queries).
  The ``valid`` split's queries choose settings; the ``eval`` split's report.
- **entity neighbours** (always; the metric that needs no search log): the entity overlap of
  each item's 10 nearest other items, next to TF-IDF and random neighbours, for the ``valid``
  and the ``eval`` share of the items (``data.is_validation_item``, ``data.is_heldout_item``).
  No objective trains on entities, so the metric is held out for all of them.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.encoders import data, evaluation
from ppm_tf.encoders.text import TextEncoder
from ppm_tf.encoders.tokenizer import TextTokenizer

RECALL_K = 10
NEIGHBOURS_K = 10
MAX_NEIGHBOUR_QUERIES = 2000  # items per share that query for neighbours (a seeded sample)


def embed_texts(tokenizer: TextTokenizer, encoder: TextEncoder, texts: Sequence[bytes],
                batch_size: int) -> np.ndarray:
    """``[len(texts), vector_dim]`` float32 vectors, in order."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
    def encode(batch):
        return encoder(tokenizer(batch), training=False)

    vectors = [encode(tf.constant(texts[start:start + batch_size], tf.string)).numpy()
               for start in range(0, len(texts), batch_size)]
    return (np.concatenate(vectors) if vectors
            else np.zeros((0, encoder.vector_dim), np.float32))


def _item_rows(item_ids: np.ndarray, item_index: dict[bytes, int]) -> np.ndarray:
    """Each id's catalogue row, -1 for an id outside the catalogue."""
    return np.fromiter((item_index.get(item_id, -1) for item_id in item_ids), np.int64,
                       count=len(item_ids))


def split_queries(work: str, splits: Sequence[str],
                  item_index: dict[bytes, int]) -> tuple[list[bytes], np.ndarray]:
    """The queries of ``splits`` whose clicked item is in the catalogue, and that item's row."""
    texts, item_ids = data.query_arrays(work, splits)
    rows = _item_rows(item_ids, item_index)
    return list(texts[rows >= 0]), rows[rows >= 0]


def training_click_counts(work: str, item_index: dict[bytes, int]) -> np.ndarray:
    """``[num_items]`` clicks per item in the training queries (the popularity baseline)."""
    rows = _item_rows(data.query_arrays(work, data.TRAIN_QUERY_SPLITS)[1], item_index)
    return np.bincount(rows[rows >= 0], minlength=len(item_index)).astype(np.float64)


def query_matching_metrics(item_vectors: np.ndarray, query_vectors: np.ndarray,
                           titles: Sequence[bytes], queries: Sequence[bytes],
                           targets: np.ndarray, batch_size: int,
                           popularity: np.ndarray | None = None) -> dict[str, Any]:
    """Recall@10 and MRR on ``queries`` of the model and the baselines."""
    model = evaluation.RankingAccumulator(RECALL_K)
    popular = evaluation.RankingAccumulator(RECALL_K)
    for start in range(0, len(queries), batch_size):
        chunk = targets[start:start + batch_size]
        model.add(query_vectors[start:start + batch_size] @ item_vectors.T, chunk)
        if popularity is not None:
            popular.add(np.broadcast_to(popularity, (len(chunk), len(popularity))), chunk)
    metrics = {"model": model.result(),
               "tfidf": evaluation.tfidf_ranking(list(titles), list(queries), targets,
                                                 RECALL_K),
               "random": evaluation.random_ranking(len(titles), RECALL_K),
               "num_items": len(titles)}
    if popularity is not None:
        metrics["popularity"] = popular.result()
    return metrics


def entity_neighbour_metrics(item_vectors: np.ndarray, titles: Sequence[bytes],
                             entities: Sequence[Sequence[bytes]], rows: np.ndarray,
                             batch_size: int) -> dict[str, Any]:
    """Entity overlap of the 10 nearest other items (all of them in a catalogue of 10 or
    fewer) of each item in ``rows``, by the model's vectors, by TF-IDF over the titles, and at
    random. Items without entities do not query; a catalogue of one item has no neighbours."""
    rows = np.asarray([row for row in rows if len(entities[row])], np.int64)
    if len(titles) < 2:
        rows = rows[:0]
    k = min(NEIGHBOURS_K, max(len(titles) - 1, 1))
    model, tfidf = (evaluation.NeighbourAccumulator(k) for _ in range(2))
    random_total = 0.0
    index = evaluation.TfidfIndex(list(titles))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        relevance = evaluation.entity_jaccard([entities[row] for row in chunk], entities)
        model.add(item_vectors[chunk] @ item_vectors.T, relevance, chunk)
        tfidf.add(index.scores([titles[row] for row in chunk]), relevance, chunk)
        random_total += float(evaluation.random_neighbours(relevance, chunk).sum())
    return {"model": model.result(), "tfidf": tfidf.result(),
            "random": {"entity_jaccard": random_total / len(rows) if len(rows) else float("nan"),
                       "k": k, "items": len(rows)}}


def _sample(rows: np.ndarray, seed: int) -> np.ndarray:
    if len(rows) <= MAX_NEIGHBOUR_QUERIES:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, MAX_NEIGHBOUR_QUERIES,
                                                      replace=False))


def evaluate_text_encoder(work: str, tokenizer: TextTokenizer, encoder: TextEncoder,
                          item_ids: np.ndarray, titles: np.ndarray, batch_size: int,
                          holdout_fraction: float, seed: int) -> dict[str, Any]:
    """Every held-out text metric this data allows (see the module docstring).

    Returns ``{"model", "tfidf", "popularity", "random", "num_items"}`` for the ``eval``
    queries when there are any, ``"valid_queries"`` for the ``valid`` ones, and
    ``"entity_neighbours": {"valid": ..., "eval": ...}``.
    """
    item_vectors = embed_texts(tokenizer, encoder, list(titles), batch_size)
    item_index = {item_id: row for row, item_id in enumerate(item_ids)}
    popularity = training_click_counts(work, item_index)
    metrics: dict[str, Any] = {}
    for name, splits in (("valid", data.VALID_QUERY_SPLITS), ("eval", data.EVAL_QUERY_SPLITS)):
        queries, targets = split_queries(work, splits, item_index)
        if not queries:
            continue
        result = query_matching_metrics(
            item_vectors, embed_texts(tokenizer, encoder, queries, batch_size), titles,
            queries, targets, batch_size, popularity)
        if name == "eval":
            metrics.update(result)
        else:
            metrics["valid_queries"] = result
    entities = data.catalogue_entities(work)
    ids = tf.constant(item_ids)
    shares = {"valid": data.is_validation_item(ids, holdout_fraction, seed).numpy(),
              "eval": data.is_heldout_item(ids, holdout_fraction, seed).numpy()}
    metrics["entity_neighbours"] = {
        name: entity_neighbour_metrics(item_vectors, titles, entities,
                                       _sample(np.flatnonzero(share), seed), batch_size)
        for name, share in shares.items()}
    return metrics
