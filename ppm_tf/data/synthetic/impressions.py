"""Day-by-day impression logs with known click and order probabilities.

Each day, active users make a few requests; each request shows candidates drawn with exposure
bias (popular, new and random items). The true click probability of an impression is

    sigmoid(base + content_scale * taste(user, day) . content(item)
                 + trend_scale * trend(day) . content(item)
                 + behaviour_scale * similarity(item, user's recent clicks)
                 + user click bias + item quality + user latent . item latent)

and an order follows a click with its own probability. Requests are simulated in rounds (a
user's first request of the day, then second, ...), all users at once per round, and the
recent-click state is updated after each round: later requests see earlier clicks, and no
Python loop runs per impression. Only one day is held in memory at a time.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from ppm_tf.data.synthetic import vocabulary as vocab
from ppm_tf.data.synthetic.catalog import Catalog, SECONDS_PER_DAY
from ppm_tf.data.synthetic.config import WorldConfig
from ppm_tf.data.synthetic.population import Population

FIRST_REQUEST_SECOND = 7 * 3600  # requests happen from 07:00 to midnight, after launches
POPULAR, NEW, RANDOM = 0, 1, 2
# observe(day, users [requests], ts [requests], items [requests, k]) for one round of requests.
RoundObserver = Callable[[int, np.ndarray, np.ndarray, np.ndarray], None]


@dataclasses.dataclass
class DayLog:
    """One day's impressions, sorted by (request time, request, position)."""

    request_number: np.ndarray  # [n] request index within the day
    user: np.ndarray  # [n] user number
    item: np.ndarray  # [n] item number
    ts: np.ndarray  # [n] request timestamp, seconds since the epoch
    click: np.ndarray  # [n] 0/1
    order: np.ndarray  # [n] 0/1, only where click is 1
    p_click: np.ndarray  # [n] the oracle: true click probability
    p_order: np.ndarray  # [n] the oracle: true P(order) = p_click * P(order | click)

    def __len__(self) -> int:
        return len(self.item)


def sigmoid(logits: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-logits))


class ImpressionSimulator:
    """Holds the state that carries across days: each user's recent-click profile."""

    def __init__(self, config: WorldConfig, catalog: Catalog, population: Population,
                 start_ts: int):
        self.config = config
        self.catalog = catalog
        self.population = population
        self.start_ts = start_ts
        self.content_indices = catalog.content_indices()
        content_dim = sum(vocab.ATTRIBUTE_SIZES.values())
        # Exponential moving average of clicked items' one-hot content (mass 1 per click).
        self.recent_clicks = np.zeros((population.size, content_dim), np.float32)
        self.order_shift = np.array([vocab.PRICE_TIER_ORDER_SHIFT[tier]
                                     for tier in vocab.PRICE_TIER_NAMES])[
            catalog.attributes["price_tier"]]

    def simulate_day(self, day: int, rng: np.random.Generator,
                     observe: RoundObserver | None = None) -> DayLog:
        """One day's impressions. ``observe``, when given, sees each round of requests before
        its clicks change the users' state: what a replay needs to ask ``true_probabilities``
        about items the log did not show."""
        config, population = self.config, self.population
        visiting = (population.signup_day <= day) & (
            rng.random(population.size) < population.daily_active_rate)
        users = np.flatnonzero(visiting)
        num_requests = 1 + np.minimum(rng.poisson(config.extra_requests_per_visit, users.size),
                                      config.max_requests_per_day - 1)
        seconds = np.sort(rng.integers(FIRST_REQUEST_SECOND, SECONDS_PER_DAY,
                                       (users.size, config.max_requests_per_day)), axis=1)
        sampler = CandidateSampler(self.catalog, day, config, rng)
        rounds = []
        for round_index in range(config.max_requests_per_day):
            in_round = num_requests > round_index
            if not in_round.any():
                break
            round_users = users[in_round]
            ts = self.start_ts + day * SECONDS_PER_DAY + seconds[in_round, round_index]
            rounds.append(self._simulate_requests(day, round_users, ts, sampler, rng, observe))
        return _sorted_day(rounds, config.impressions_per_request)

    def _simulate_requests(self, day, users, ts, sampler, rng, observe):
        items = sampler.sample(users.size)  # [requests, k]
        p_click, p_order_given_click = self._click_and_order_given_click(day, users, items)
        click = rng.random(p_click.shape) < p_click
        order = click & (rng.random(p_click.shape) < p_order_given_click)
        if observe is not None:
            observe(day, users, ts, items)
        self._remember_clicks(users, self.content_indices[items], click)
        return users, ts, items, click, order, p_click, p_click * p_order_given_click

    def true_probabilities(self, day: int, users: np.ndarray,
                           items: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The oracle for showing ``items[r, j]`` to ``users[r]`` on ``day``, given the users'
        recent clicks so far: ``p_click`` and ``p_order`` (= P(click and order)), each
        ``[requests, k]``, computed as the simulation computes them."""
        p_click, p_order_given_click = self._click_and_order_given_click(day, users, items)
        return p_click, p_click * p_order_given_click

    def _click_and_order_given_click(self, day, users, items):
        config, catalog, population = self.config, self.catalog, self.population
        indices = self.content_indices[items]  # [requests, k, attributes]
        taste = population.taste_on(day, config.drift_radians, config.num_days, users)
        content = np.take_along_axis(taste[:, None, :], indices, axis=2).sum(-1)
        trend = population.trend_on(day, config.drift_radians, config.num_days)[indices].sum(-1)
        similarity = np.take_along_axis(
            self.recent_clicks[users][:, None, :], indices, axis=2).sum(-1)
        latent = np.einsum("rd,rkd->rk", population.latent[users], catalog.latent[items])
        click_logit = (config.base_click_logit + config.content_scale * content
                       + config.trend_scale * trend
                       + config.behaviour_scale * similarity
                       + population.click_bias[users][:, None] + catalog.quality[items] + latent)
        order_logit = (config.base_order_logit + config.order_taste_scale * content
                       + self.order_shift[items] + population.order_bias[users][:, None]
                       + config.order_quality_scale * catalog.quality[items])
        return sigmoid(click_logit), sigmoid(order_logit)

    def _remember_clicks(self, users, indices, click):
        clicks_per_request = click.sum(axis=1)
        clicked = clicks_per_request > 0
        if not clicked.any():
            return
        num_attributes = indices.shape[-1]
        weights = click / np.maximum(clicks_per_request, 1)[:, None] / num_attributes
        profile = np.zeros((users.size, self.recent_clicks.shape[1]), np.float32)
        rows = np.broadcast_to(np.arange(users.size)[:, None, None], indices.shape)
        np.add.at(profile, (rows, indices),
                  np.broadcast_to(weights[..., None], indices.shape))
        decay = self.config.behaviour_decay
        clicked_users = users[clicked]
        self.recent_clicks[clicked_users] = (decay * self.recent_clicks[clicked_users]
                                             + (1 - decay) * profile[clicked])


class CandidateSampler:
    """Draws a request's candidates from the items launched by ``day``, without repeats:
    ``per_request`` of them (the world's ``impressions_per_request`` unless given)."""

    def __init__(self, catalog: Catalog, day: int, config: WorldConfig, rng,
                 per_request: int | None = None):
        self.rng = rng
        self.mix = config.candidate_mix
        self.per_request = per_request or config.impressions_per_request
        self.launched = np.flatnonzero(catalog.launch_day <= day)
        if self.launched.size < self.per_request:
            raise ValueError(f"only {self.launched.size} items launched by day {day}; "
                             f"need at least {self.per_request} candidates per request")
        age = day - catalog.launch_day[self.launched]
        self.new = self.launched[age < config.new_item_days]
        weights = np.exp(catalog.popularity[self.launched])
        self.popular_cdf = np.cumsum(weights) / weights.sum()

    def _draw(self, kind: int, count: int) -> np.ndarray:
        if kind == POPULAR:
            positions = np.searchsorted(self.popular_cdf, self.rng.random(count), side="right")
            return self.launched[np.minimum(positions, self.launched.size - 1)]
        pool = self.new if kind == NEW and self.new.size else self.launched
        return pool[self.rng.integers(0, pool.size, count)]

    def sample(self, num_requests: int) -> np.ndarray:
        kinds = self.rng.choice(3, size=(num_requests, self.per_request), p=self.mix)
        items = np.empty(kinds.shape, np.int64)
        for kind in (POPULAR, NEW, RANDOM):
            where = kinds == kind
            items[where] = self._draw(kind, int(where.sum()))
        while True:  # replace repeats within a request by random items until none is left
            same = items[:, :, None] == items[:, None, :]
            repeated = np.triu(same, k=1).any(axis=1)  # position j repeats an earlier one
            if not repeated.any():
                return items
            items[repeated] = self._draw(RANDOM, int(repeated.sum()))


def _sorted_day(rounds, per_request: int) -> DayLog:
    """Concatenates the rounds into one log ordered by time, numbering requests."""
    users, ts, items, click, order, p_click, p_order = (
        np.concatenate(part) for part in zip(*rounds))
    request_order = np.lexsort((users, ts))  # requests by time, ties by user

    def per_impression(array: np.ndarray) -> np.ndarray:  # [requests, k] -> [requests * k]
        return array[request_order].reshape(-1)

    return DayLog(
        request_number=np.repeat(np.arange(users.size), per_request),
        user=np.repeat(users[request_order], per_request),
        item=per_impression(items),
        ts=np.repeat(ts[request_order], per_request),
        click=per_impression(click).astype(np.int8),
        order=per_impression(order).astype(np.int8),
        p_click=per_impression(p_click),
        p_order=per_impression(p_order),
    )
