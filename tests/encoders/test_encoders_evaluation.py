"""Held-out metrics of the ME tasks, on hand-made inputs: ranking with ties, TF-IDF and random
baselines, multi-label F1 and AUC."""
import math

import numpy as np
import pytest

from ppm_tf.encoders import evaluation


def test_ranks_without_ties_give_recall_and_reciprocal_rank():
    accumulator = evaluation.RankingAccumulator(k=2)
    scores = np.array([[0.9, 0.1, 0.5, 0.2],    # target 0: rank 1
                       [0.9, 0.1, 0.5, 0.2],    # target 2: rank 2
                       [0.9, 0.1, 0.5, 0.2]])   # target 1: rank 4
    accumulator.add(scores, np.array([0, 2, 1]))
    result = accumulator.result()
    assert result["recall_at_2"] == pytest.approx(2 / 3)
    assert result["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 4) / 3)
    assert result["queries"] == 3


def test_ties_count_as_a_random_order_in_expectation():
    accumulator = evaluation.RankingAccumulator(k=2)
    # The target ties with 3 others, 1 item is higher: rank uniform on 2..5.
    accumulator.add(np.array([[0.0, 1.0, 0.5, 0.5, 0.5, 0.5]]), np.array([2]))
    result = accumulator.result()
    assert result["recall_at_2"] == pytest.approx(1 / 4)
    assert result["mrr"] == pytest.approx(np.mean([1 / 2, 1 / 3, 1 / 4, 1 / 5]))


def test_random_ranking_baseline():
    result = evaluation.random_ranking(1000, k=10)
    assert result["recall_at_10"] == pytest.approx(0.01)
    assert result["mrr"] == pytest.approx(sum(1 / n for n in range(1, 1001)) / 1000)
    harmonic = evaluation._harmonic(np.array([0, 1, 63, 64, 10_000]))
    exact = [0.0, 1.0] + [sum(1 / k for k in range(1, n + 1)) for n in (63, 64, 10_000)]
    np.testing.assert_allclose(harmonic, exact, rtol=1e-9)


def test_tfidf_scores_cosine_of_idf_weighted_words():
    index = evaluation.TfidfIndex(["red mug", "blue mug", "red lamp"])
    scores = index.scores(["Red MUG!", "green", b"\xff lamp"])
    assert scores[0].argmax() == 0 and scores[0, 0] == pytest.approx(1.0)
    assert not scores[1].any()  # no known word: all items tie at 0
    assert scores[2].argmax() == 2
    idf_red = math.log(4 / 3) + 1
    idf_mug = math.log(4 / 3) + 1
    assert index.idf["red"] == pytest.approx(idf_red) and index.idf["lamp"] > idf_mug
    result = evaluation.tfidf_ranking(["red mug", "blue mug", "red lamp"],
                                      ["red mug", "green"], [0, 1], k=1)
    # Query 1 is exact; query 2 ties with all 3 items: recall@1 = 1/3.
    assert result["recall_at_1"] == pytest.approx((1 + 1 / 3) / 2)


def test_micro_and_macro_f1_by_hand():
    labels = np.array([[1, 0, 1], [0, 1, 1], [1, 0, 0]])
    predicted = np.array([[1, 0, 0], [0, 1, 1], [0, 1, 0]])
    # tp = [1, 1, 1], fp = [0, 1, 0], fn = [1, 0, 1]
    result = evaluation.f1_scores(labels, predicted)
    assert result["micro_f1"] == pytest.approx(2 * 3 / (2 * 3 + 1 + 2))
    assert result["macro_f1"] == pytest.approx(np.mean([2 / 3, 2 / 3, 2 / 3]))
    with pytest.raises(ValueError, match="differ"):
        evaluation.f1_scores(labels, predicted[:2])


def test_macro_f1_skips_entities_absent_from_the_labels():
    labels = np.array([[1, 0], [1, 0]])
    predicted = np.array([[1, 1], [1, 0]])
    result = evaluation.f1_scores(labels, predicted)
    assert result["macro_f1"] == pytest.approx(1.0)
    assert result["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 1))


def test_entity_metrics_and_the_prior_baseline():
    labels = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    probabilities = np.array([[0.9, 0.2], [0.1, 0.8], [0.7, 0.6], [0.3, 0.4]])
    result = evaluation.entity_prediction_metrics(labels, probabilities, threshold=0.5)
    assert result["micro_f1"] == pytest.approx(1.0) and result["macro_auc"] == pytest.approx(1.0)
    assert result["items"] == 4
    prior = evaluation.prior_baseline(np.array([[1, 0], [1, 0], [1, 1], [0, 0]]), labels)
    assert prior["macro_auc"] == pytest.approx(0.5)  # one constant score per entity
    assert prior["micro_f1"] == pytest.approx(2 * 2 / (2 * 2 + 2 + 2))  # predicts entity 0


def test_entity_jaccard_of_entity_sets():
    overlap = evaluation.entity_jaccard([["a", "b"], []], [["a"], ["a", "b"], ["c"], []])
    np.testing.assert_allclose(overlap, [[0.5, 1.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])


def test_top_k_relevance_breaks_ties_at_the_cut_off_in_expectation():
    scores = np.array([[0.9, 0.5, 0.5, 0.5, 0.1]])
    relevance = np.array([[1.0, 1.0, 0.0, 0.0, 1.0]])
    # Top 2: 0.9 (relevance 1) plus one of three tied items (mean relevance 1/3).
    assert evaluation.expected_top_k_relevance(scores, relevance, 2)[0] == pytest.approx(
        (1 + 1 / 3) / 2)
    assert evaluation.expected_top_k_relevance(scores, relevance, 4)[0] == pytest.approx(0.5)


def test_neighbours_exclude_the_item_itself_and_random_is_the_mean_overlap():
    relevance = np.array([[1.0, 0.0, 0.5, 0.0]])  # column 0 is the query item itself
    accumulator = evaluation.NeighbourAccumulator(k=1)
    accumulator.add(np.array([[1.0, 0.2, 0.9, 0.1]]), relevance, np.array([0]))
    assert accumulator.result() == {"entity_jaccard": 0.5, "k": 1, "items": 1}
    assert evaluation.random_neighbours(relevance, np.array([0]))[0] == pytest.approx(0.5 / 3)
