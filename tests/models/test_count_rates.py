"""The ``counts`` row: the count baseline scored from the examples' own as-of counts."""
import math

import numpy as np

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.count_rates import CountRates

PRIORS = {"click_rate": 0.2, "order_rate": 0.05}
STRENGTH = 10.0  # CountEncoding's default pseudo-impressions


def counts(all_window, recent_window):
    """[impressions, clicks, orders] over each window, window-major."""
    return np.array([all_window + recent_window], np.float32)


def smoothed_logit(events, impressions, prior):
    rate = (events + STRENGTH * prior) / (impressions + STRENGTH)
    return math.log(rate / (1 - rate))


def test_scores_are_the_user_and_item_rates_over_everything_so_far_summed_as_logits():
    model = CountRates(PRIORS)
    batch = {features.USER_COUNTS: counts([30, 12, 3], [5, 5, 1]),
             features.ITEM_COUNTS: counts([100, 10, 1], [0, 0, 0]),
             features.CATEGORY_COUNTS: counts([1000, 900, 800], [9, 9, 9])}
    logits = model(batch)
    prior_click = math.log(0.2 / 0.8)
    expected_click = (smoothed_logit(12, 30, 0.2) - prior_click
                      + smoothed_logit(10, 100, 0.2) - prior_click + prior_click)
    prior_order = math.log(0.05 / 0.95)
    expected_order = (smoothed_logit(3, 30, 0.05) + smoothed_logit(1, 100, 0.05) - prior_order)
    np.testing.assert_allclose(logits["click"].numpy(), [expected_click], rtol=1e-5)
    np.testing.assert_allclose(logits["order"].numpy(), [expected_order], rtol=1e-5)
    assert model.trainable_variables == []


def test_a_user_and_item_never_seen_score_the_prior():
    model = CountRates(PRIORS)
    unseen = counts([0, 0, 0], [0, 0, 0])
    probabilities = model.predict_probabilities({name: unseen
                                                 for name in features.COUNT_FEATURES})
    np.testing.assert_allclose(probabilities["click_prob"].numpy(), [0.2], rtol=1e-5)
    np.testing.assert_allclose(probabilities["order_prob"].numpy(), [0.05], rtol=1e-5)
    assert tf.reduce_all(tf.math.is_finite(model(
        {name: counts([5, 9, 9], [-1, 0, 0]) for name in features.COUNT_FEATURES})["click"]))
