"""What an arm's ranking earns in the replayed world: expected clicks and orders, per user.

An arm ranks each request's pool; its top ``slots`` items are shown and the world's true
probabilities give the expected outcome. Per user the sums are kept, and the chance that the
user clicks (orders) at least once over all their requests, ``1 - prod(1 - p)`` over every
slot shown to them: the expected form of "a user with a click". A request the arm failed to
rank shows nothing: it earns nothing and stays in the request count.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ppm_tf.ab.replay import ReplayedRequests


@dataclasses.dataclass
class UserOutcomes:
    """One arm's outcome per user, ``[users]`` each, users in ``np.unique`` order."""

    requests: np.ndarray
    shown: np.ndarray  # slots shown
    clicks: np.ndarray  # expected clicks
    orders: np.ndarray  # expected orders
    any_click: np.ndarray  # P(at least one click)
    any_order: np.ndarray  # P(at least one order)
    cold_shown: np.ndarray  # slots given to cold items
    cold_clicks: np.ndarray  # expected clicks on them


def shown_positions(scores: np.ndarray, tie_break: np.ndarray, slots: int) -> np.ndarray:
    """[R, slots] pool positions of the top ``slots`` scores; equal scores are ordered by
    ``tie_break`` (shared by every arm, so ties never favour the logged candidates)."""
    order = np.lexsort((tie_break, -scores), axis=-1)
    return order[:, :slots]


def user_outcomes(requests: ReplayedRequests, shown: np.ndarray,
                  failed: np.ndarray) -> UserOutcomes:
    """Sums per user of what the ``shown`` positions ([R, slots]) earn; ``failed`` ([R]) marks
    requests the arm could not rank, which show nothing."""
    rows = np.arange(len(requests))[:, None]
    served = ~failed[:, None]
    p_click = np.where(served, requests.p_click[rows, shown], 0.0)
    p_order = np.where(served, requests.p_order[rows, shown], 0.0)
    cold = requests.cold[rows, shown] & served
    per_request = {
        "requests": np.ones(len(requests)),
        "shown": served.sum(axis=1) * shown.shape[1],
        "clicks": p_click.sum(axis=1),
        "orders": p_order.sum(axis=1),
        "log_no_click": np.log1p(-p_click).sum(axis=1),
        "log_no_order": np.log1p(-p_order).sum(axis=1),
        "cold_shown": cold.sum(axis=1),
        "cold_clicks": np.where(cold, p_click, 0.0).sum(axis=1),
    }
    _, user = np.unique(requests.user_ids, return_inverse=True)
    per_user = {name: np.bincount(user, weights=values) for name, values in per_request.items()}
    return UserOutcomes(
        requests=per_user["requests"], shown=per_user["shown"], clicks=per_user["clicks"],
        orders=per_user["orders"], any_click=-np.expm1(per_user["log_no_click"]),
        any_order=-np.expm1(per_user["log_no_order"]), cold_shown=per_user["cold_shown"],
        cold_clicks=per_user["cold_clicks"])
