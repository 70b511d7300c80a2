"""The eval days of a synthetic world, replayed request by request with a larger candidate pool.

The world's own simulation runs again from day 0 with its own seed, so every logged request
comes back with the users' recent-click state exactly as it was then. At each eval-day request
the pool is the logged candidates plus items the world's candidate sampler draws (popular, new,
random), and the world's ``true_probabilities`` give ``p_click`` and ``p_order`` of showing any
pool item to that user at that moment. Nothing here computes a probability itself.

What the replay does not model: a shown item never changes the user's later history (the world
goes on with the logged clicks: no feedback loop), and each request is scored once (one-shot).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ppm_tf import features
from ppm_tf.data.synthetic.impressions import CandidateSampler
from ppm_tf.data.synthetic.world import impression_simulator, request_id

NOT_MODELLED = ("no feedback loop: what an arm shows never changes the user's later history "
                "(the world replays the logged clicks); one-shot: each request is ranked once, "
                "with no re-ranking, pagination or position effects within the shown slots")


@dataclasses.dataclass
class ReplayedRequests:
    """Every replayed request with its pool, in time order; arrays are ``[requests]`` or
    ``[requests, pool]`` (the logged candidates first)."""

    request_ids: np.ndarray  # [R] the events' request_id
    user_ids: np.ndarray  # [R] public user ids
    day: np.ndarray  # [R] day of the horizon
    pool_item_ids: np.ndarray  # [R, K] public item ids
    logged: np.ndarray  # [R, K] the item was one of the request's logged candidates
    cold: np.ndarray  # [R, K] the item had no impression before the recent window
    p_click: np.ndarray  # [R, K] the world's true click probability
    p_order: np.ndarray  # [R, K] the world's true P(click and order)
    clicks_before_day: np.ndarray  # [R, K] the item's logged clicks on earlier days

    def __len__(self) -> int:
        return len(self.request_ids)

    def subset(self, rows: np.ndarray) -> "ReplayedRequests":
        return ReplayedRequests(**{field.name: getattr(self, field.name)[rows]
                                   for field in dataclasses.fields(self)})


def eval_days(world: dict) -> tuple[int, int]:
    """The world's suggested eval days, half-open."""
    first, end = world["suggested_splits"]["eval"]["days"]
    return int(first), int(end)


def replay_eval_days(world: dict, *, days: int | None, pool_size: int,
                     seed: int) -> ReplayedRequests:
    """Replays the first ``days`` eval days (all when ``None``) of a synthetic world whose
    world.json is ``world``; ``seed`` draws the pools' extra items."""
    first_eval, end_eval = eval_days(world)
    if days is not None:
        if days < 1:
            raise ValueError(f"days must be at least 1, got {days}")
        end_eval = min(end_eval, first_eval + days)
    simulator, world_rng = impression_simulator(world)
    catalog, config = simulator.catalog, simulator.config
    if pool_size < config.impressions_per_request:
        raise ValueError(f"pool_size={pool_size} must hold the {config.impressions_per_request} "
                         "logged candidates of a request")
    train_start_ts = world["suggested_splits"]["train"]["start_ts"]
    first_impression_ts = np.full(catalog.size, np.iinfo(np.int64).max)
    clicks = np.zeros(catalog.size)
    pool_rng = np.random.default_rng(seed)
    parts = []
    for day in range(end_eval):
        rounds = []
        observe = None
        if day >= first_eval:
            sampler = CandidateSampler(catalog, day, config, pool_rng, per_request=pool_size)

            def observe(day, users, ts, items, sampler=sampler, rounds=rounds):
                pool = _pool(items, sampler.sample(len(users)), pool_size)
                rounds.append((users, ts, pool, *simulator.true_probabilities(day, users, pool)))
        log = simulator.simulate_day(day, world_rng, observe)
        if rounds:
            cold = features.is_cold_item(first_impression_ts, train_start_ts)
            parts.append(_requests_of_day(day, log, rounds, simulator, cold, clicks))
        np.minimum.at(first_impression_ts, log.item, log.ts)
        clicks += np.bincount(log.item, weights=log.click, minlength=catalog.size)
    return ReplayedRequests(*(np.concatenate(column) for column in zip(*parts)))


def _pool(logged: np.ndarray, drawn: np.ndarray, pool_size: int) -> np.ndarray:
    """[R, K]: each request's logged items, then drawn items it does not already hold."""
    pool = np.empty((logged.shape[0], pool_size), np.int64)
    for row, (shown, extra) in enumerate(zip(logged, drawn)):
        fresh = extra[~np.isin(extra, shown)]
        pool[row] = np.concatenate([shown, fresh])[:pool_size]
    return pool


def _requests_of_day(day, log, rounds, simulator, cold, clicks) -> tuple:
    """One day's replayed requests in the log's order, each keyed to its request id."""
    per_request = simulator.config.impressions_per_request
    logged_items = log.item.reshape(-1, per_request)
    number_of = {(user, ts, tuple(items)): number for number, (user, ts, items) in enumerate(zip(
        log.user[::per_request].tolist(), log.ts[::per_request].tolist(),
        logged_items.tolist()))}
    users, ts, pool, p_click, p_order = (np.concatenate(column) for column in zip(*rounds))
    numbers = np.array([number_of[(user, stamp, tuple(row[:per_request]))] for user, stamp, row
                        in zip(users.tolist(), ts.tolist(), pool.tolist())])
    order = np.argsort(numbers)
    pool = pool[order]
    catalog_ids = np.array(simulator.catalog.item_ids)
    logged = np.zeros(pool.shape, bool)
    logged[:, :per_request] = True
    return (np.array([request_id(day, number) for number in numbers[order].tolist()]),
            np.array(simulator.population.user_ids)[users[order]],
            np.full(len(order), day), catalog_ids[pool], logged, cold[pool],
            p_click[order], p_order[order], clicks[pool])

