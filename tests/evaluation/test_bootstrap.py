"""The bootstrap over users: its vectorised metrics equal the plain ones on the data each
resample stands for, it is seeded, and its 95% intervals cover a known truth about 95% of
the time."""
import math

import numpy as np
import pytest

from ppm_tf import metrics
from ppm_tf.evaluation.bootstrap import (UserResamples, auc_replicates,
                                         grouped_auc_replicates, mean_replicates,
                                         percentile_interval, ratio_replicates)


def clustered_rows(seed: int, users: int = 40, per_user: int = 12, tie_digits: int = 1):
    """Impressions of ``users`` users, scores rounded so that many tie."""
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(users), per_user)
    labels = rng.random(user.size) < rng.uniform(0.1, 0.6, users)[user]
    scores = np.round(rng.normal(size=user.size) + labels + rng.normal(size=users)[user],
                      tie_digits)
    requests = user * 10 + rng.integers(0, 3, user.size)
    return user, labels, scores, requests


def expanded(resample_counts: np.ndarray, user: np.ndarray, *columns):
    """The rows one resample stands for: each drawn user's rows, once per draw."""
    rows = np.concatenate([np.flatnonzero(user == index)
                           for index, count in enumerate(resample_counts)
                           for _ in range(count)])
    copy = np.concatenate([np.full(np.sum(user == index), draw)
                           for index, count in enumerate(resample_counts)
                           for draw in range(count)])
    return rows, copy, [column[rows] for column in columns]


def test_one_resample_of_every_user_gives_the_plain_metrics():
    user, labels, scores, requests = clustered_rows(0)
    once = UserResamples.identity(user)
    everything = np.ones(user.size, bool)
    assert auc_replicates(once, labels, scores, everything)[0] == pytest.approx(
        metrics.roc_auc(labels, scores))
    assert grouped_auc_replicates(once, user, labels, scores, everything)[0] == pytest.approx(
        metrics.grouped_auc(user, labels, scores))
    assert grouped_auc_replicates(once, requests, labels, scores, everything)[0] == \
        pytest.approx(metrics.grouped_auc(requests, labels, scores))
    probabilities = 1 / (1 + np.exp(-scores))
    assert mean_replicates(once, metrics.row_log_losses(labels, probabilities),
                           everything)[0] == pytest.approx(metrics.log_loss(labels, probabilities))
    assert ratio_replicates(once, probabilities, labels, everything)[0] == pytest.approx(
        metrics.calibration(labels, probabilities))


def test_each_resample_equals_the_metric_on_the_rows_it_draws():
    user, labels, scores, requests = clustered_rows(1)
    draws = UserResamples.draw(user, resamples=6, seed=3)
    slice_rows = scores > -0.5  # a slice: the metrics see only its rows
    aucs = auc_replicates(draws, labels, scores, slice_rows)
    user_gaucs = grouped_auc_replicates(draws, user, labels, scores, slice_rows)
    request_gaucs = grouped_auc_replicates(draws, requests, labels, scores, slice_rows)
    means = mean_replicates(draws, scores, slice_rows)
    for index, counts in enumerate(draws.counts):
        assert counts.sum() == 40 and counts.max() > 1  # with replacement
        rows, copy, (row_user, row_labels, row_scores, row_requests, row_slice) = expanded(
            counts, user, user, labels, scores, requests, slice_rows)
        kept = row_slice
        assert aucs[index] == pytest.approx(metrics.roc_auc(row_labels[kept], row_scores[kept]))
        # A user drawn twice is two users: its copies are separate groups.
        assert user_gaucs[index] == pytest.approx(metrics.grouped_auc(
            (row_user * 100 + copy)[kept], row_labels[kept], row_scores[kept]))
        assert request_gaucs[index] == pytest.approx(metrics.grouped_auc(
            (row_requests * 100 + copy)[kept], row_labels[kept], row_scores[kept]))
        assert means[index] == pytest.approx(row_scores[kept].mean())


def test_resamples_are_seeded():
    user = np.repeat(np.arange(30), 3)
    first, again = UserResamples.draw(user, 20, seed=5), UserResamples.draw(user, 20, seed=5)
    other = UserResamples.draw(user, 20, seed=6)
    assert np.array_equal(first.counts, again.counts)
    assert not np.array_equal(first.counts, other.counts)
    with pytest.raises(ValueError, match="at least 2"):
        UserResamples.draw(user, 1)


def test_a_group_over_several_users_is_refused():
    user = np.array([0, 0, 1, 1])
    draws = UserResamples.draw(user, 4)
    with pytest.raises(ValueError, match="several users"):
        grouped_auc_replicates(draws, np.array(["r", "r", "r", "s"]), np.array([1, 0, 1, 0]),
                               np.array([0.2, 0.1, 0.4, 0.3]), np.ones(4, bool))


def test_an_interval_needs_the_metric_on_most_resamples():
    assert percentile_interval(np.array([np.nan] * 6 + [0.5] * 4)) is None
    low, high = percentile_interval(np.append(np.linspace(0.0, 1.0, 1001), np.nan))
    assert low == pytest.approx(0.025) and high == pytest.approx(0.975)


# Coverage. Two models score the same impressions: score = effect x click + the user's own
# offset (shared by both models: what makes impressions of one user move together) + noise.
# With offsets ~ N(0, USER_SD^2) and unit noise, a click and a non-click of different users
# differ by N(effect, 2 + 2 USER_SD^2), so the population AUC is
# Phi(effect / sqrt(2 + 2 USER_SD^2)); pairs within one user (1/USERS of all pairs) shift the
# sample AUC by under 0.001 here, far less than the intervals' width (about 0.05).
USERS, PER_USER, USER_SD, EFFECTS = 150, 16, 1.0, (1.0, 0.7)
DRAWS, RESAMPLES = 200, 300


def population_auc(effect: float) -> float:
    standardised = effect / math.sqrt(2 + 2 * USER_SD ** 2)
    return 0.5 * (1 + math.erf(standardised / math.sqrt(2)))  # the normal CDF


def synthetic_eval(seed: int):
    rng = np.random.default_rng(seed)
    user = np.repeat(np.arange(USERS), PER_USER)
    labels = rng.random(user.size) < rng.beta(2, 6, USERS)[user]
    offset = rng.normal(0, USER_SD, USERS)[user]
    shared_noise = rng.normal(size=user.size)
    scores = [effect * labels + offset + math.sqrt(0.5) * (shared_noise
                                                         + rng.normal(size=user.size))
              for effect in EFFECTS]
    return user, labels, scores


def test_intervals_cover_a_known_auc_and_a_known_difference_about_95_percent_of_the_time():
    truth = [population_auc(effect) for effect in EFFECTS]
    covered_auc = covered_difference = 0
    paired_narrower = 0
    for seed in range(DRAWS):
        user, labels, (better, worse) = synthetic_eval(seed)
        draws = UserResamples.draw(user, RESAMPLES, seed=seed)
        everything = np.ones(user.size, bool)
        better_aucs = auc_replicates(draws, labels, better, everything)
        worse_aucs = auc_replicates(draws, labels, worse, everything)
        low, high = percentile_interval(better_aucs)
        covered_auc += low <= truth[0] <= high
        difference_low, difference_high = percentile_interval(better_aucs - worse_aucs)
        covered_difference += difference_low <= truth[0] - truth[1] <= difference_high
        paired_narrower += difference_high - difference_low < high - low
    # The percentile bootstrap runs a little short with 150 clusters: 93.5% (AUC) and 93.0%
    # (difference) over 600 other draws. With 200 draws the coverage's standard error is
    # 0.017, so the band is 0.88-0.99 (about -3 / +3 SE around 0.935).
    assert 0.88 <= covered_auc / DRAWS <= 0.99, covered_auc
    assert 0.88 <= covered_difference / DRAWS <= 0.99, covered_difference
    # Pairing cancels what both models share (the user offsets): the difference is known
    # better than either AUC.
    assert paired_narrower == DRAWS
