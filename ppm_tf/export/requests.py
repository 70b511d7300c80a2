"""The request protocol of an exported model, as a TF Serving client speaks it.

A request for ``urm`` is two calls: ``user_states`` once per request (its result is what a
feature store would cache per user or per new click), then ``serving_default`` for all
candidates with the cached states. ``base`` is the second call alone, without the states.
"""
from __future__ import annotations

import numpy as np

from ppm_tf import features
from ppm_tf.data.tfrecords import read_cached, read_items

CANDIDATES = 100
USER_STATE_INPUTS = (features.HIST_ITEM_IDS, features.HIST_TS, features.TS)


def one_user_request(work: str, candidates: int = CANDIDATES) -> dict[str, np.ndarray]:
    """A user from the eval split (one with a history) and ``candidates`` catalogue items."""
    for batch in read_cached(work, "eval", 256, deterministic=True):
        with_history = np.flatnonzero(batch[features.HIST_LEN].numpy() > 0)
        if with_history.size:
            row = int(with_history[0])
            break
    else:
        raise ValueError("no eval example has a behaviour history to serve")
    item_ids = next(iter(read_items(work, candidates, deterministic=True,
                                    features=(features.ITEM_ID,))))[features.ITEM_ID].numpy()
    return {features.USER_ID: batch[features.USER_ID].numpy()[row:row + 1],
            features.ITEM_ID: item_ids,
            features.HIST_ITEM_IDS: batch[features.HIST_ITEM_IDS].numpy()[row:row + 1],
            features.HIST_TS: batch[features.HIST_TS].numpy()[row:row + 1],
            features.TS: batch[features.TS].numpy()[row:row + 1]}


def user_states(client, request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """URM's ``user_states`` for one request: what a caller caches per user or new click."""
    return client.predict("urm", {name: request[name] for name in USER_STATE_INPUTS},
                          signature_name="user_states")


def score_user(client, request: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """URM for one user: the user tower once, then every candidate with the cached states."""
    return client.predict("urm", {**request, **user_states(client, request)})
