"""The request protocol of an exported model: how one user's request is built and sent.

**One form, the one TF Serving accepts with ``--enable_batching``** (the shipped production
config): every input of a request carries the candidate dimension. The user-level inputs
(user id, behaviour sequence, request time, the user's as-of counts and, for URM, the cached
user states) are built once
per request with a leading size of 1, and the client repeats them per candidate
(``predict_candidates`` of ``ppm_tf.serving.client``), never by hand.

**No train/serve skew**: ``user_inputs`` turns a user's raw events (the raw contract's
``events`` rows, what a feature store holds) into the user-level inputs with preprocessing's
own behaviour-sequence and count functions and padding (``attach_behaviour_sequences``,
``counts.user_counts``, ``features.pad_sequence``), so a request built from the log scores what the evaluation scored
for the same impression. Per-user fields computed from raw events belong in that one function.

A request for URM is two calls: ``user_states`` once per request (what a feature store would
cache per user or per new click), then ``serving_default`` for all candidates with the states.
``base`` is the second call alone, without the states.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

import numpy as np

from ppm_tf import features
from ppm_tf.data import raw_files
from ppm_tf.data.tfrecords import load_preprocess_metadata, read_items, read_split
from ppm_tf.export.serving_module import ITEM_COUNTS_SIGNATURE, ITEM_VECTORS_SIGNATURE
from ppm_tf.preprocessing.counts import AsOfCounts, daily_rows, day_start, user_counts
from ppm_tf.preprocessing.sequences import attach_behaviour_sequences

CANDIDATES = 100  # a typical request: the benchmarks, the demo and the warm-up records use it
USER_STATES_SIGNATURE = "user_states"
_SEQUENCES = {feature.name: feature for feature in features.EXAMPLE_FEATURES
              if feature.shape == features.SEQUENCE}


@dataclasses.dataclass(frozen=True)
class CandidateRequest:
    """One user's request: user-level inputs (leading size 1) and the candidates' ids [n]."""

    user: dict[str, np.ndarray]
    item_ids: np.ndarray


def _strings(values: Iterable) -> np.ndarray:
    """Ids as the object array of bytes a DT_STRING input takes."""
    return np.array([value.encode("utf-8") if isinstance(value, str) else bytes(value)
                     for value in values], dtype=object)


def user_inputs(user_id: str, events: Iterable[Mapping], request_id: str, request_ts: int,
                max_seq_len: int, count_lookback_days: int,
                history: str = "clicks") -> dict[str, np.ndarray]:
    """The user-level inputs of one request, each [1, ...], from the user's raw events.

    The request goes through the preprocessing job's behaviour-sequence function as one more
    impression of the user, so its history is the preprocessed example's: clicks (or, with
    preprocess.json's ``history`` "impressions", every impression) strictly before
    ``request_ts``, none from ``request_id``, most recent first, with their action types,
    padded alike; its counts are the user's events before ``request_ts`` (preprocess.json's
    ``count_lookback_days``). Events of other users are ignored. Item categories and content
    are looked up inside the model, so the sequence's copies of them are left empty here.
    """
    looked_up = {name: features.PADDING_ID for name in features.HIST_FIELD_SOURCES.values()
                 if name != features.ITEM_ID}
    impression = {features.REQUEST_ID: request_id, features.USER_ID: user_id,
                  features.ITEM_ID: features.PADDING_ID, features.TS: int(request_ts),
                  features.CLICK: 0, features.ORDER: 0, **looked_up}
    logged = [{**event, **looked_up} for event in events if event[features.USER_ID] == user_id]
    example = next(attach_behaviour_sequences([impression, *logged], max_seq_len, history))
    counts = user_counts(logged, count_lookback_days, {request_id: int(request_ts)})
    padded = {name: features.pad_sequence(_SEQUENCES[name], example[name], max_seq_len)
              for name in (features.HIST_ITEM_IDS, features.HIST_TS, features.HIST_ACTIONS)}
    return {features.USER_ID: _strings([user_id]),
            features.HIST_ITEM_IDS: _strings(padded[features.HIST_ITEM_IDS])[np.newaxis],
            features.HIST_TS: np.array([padded[features.HIST_TS]], dtype=np.int64),
            features.HIST_ACTIONS: np.array([padded[features.HIST_ACTIONS]], dtype=np.int64),
            features.TS: np.array([request_ts], dtype=np.int64),
            features.USER_COUNTS: np.array([counts[request_id]], dtype=np.float32)}


def build_request(user_id: str, events: Iterable[Mapping], request_id: str, request_ts: int,
                  item_ids: Iterable, max_seq_len: int, count_lookback_days: int,
                  history: str = "clicks") -> CandidateRequest:
    """One user's request for ``item_ids`` at ``request_ts``, built from raw events."""
    return CandidateRequest(user_inputs(user_id, events, request_id, request_ts, max_seq_len,
                                        count_lookback_days, history), _strings(item_ids))


def user_states(client, model: str, request: CandidateRequest) -> dict[str, np.ndarray]:
    """URM's ``user_states`` for one request ([1, L, d] and its mask [1, L]): what a caller
    caches per user or per new click."""
    return client.predict(model,
                          {name: request.user[name] for name in features.USER_STATE_INPUTS},
                          signature_name=USER_STATES_SIGNATURE)


def score_candidates(client, model: str, request: CandidateRequest,
                     states: Mapping[str, np.ndarray] | None = None,
                     item_vectors: np.ndarray | None = None,
                     item_counts: Mapping[str, np.ndarray] | None = None
                     ) -> dict[str, np.ndarray]:
    """One call for every candidate, in the batch-safe form: ``serving_default``; with
    ``item_vectors`` (the candidates' ME vectors [n, item_dim], for items newer than the
    export) ``serving_with_item_vectors``; with ``item_counts`` (``{item_counts,
    category_counts}`` [n, COUNT_SIZE], e.g. ``LoggedItemCounts.as_of``)
    ``serving_with_item_counts``.
    ``states``: URM's cached user states (none for ``base``)."""
    if item_vectors is not None and item_counts is not None:
        raise ValueError("no signature takes both item_vectors and item_counts; send one")
    per_candidate = {features.ITEM_ID: request.item_ids, **(item_counts or {})}
    signature = ITEM_COUNTS_SIGNATURE if item_counts is not None else ""
    if item_vectors is not None:
        per_candidate[features.PPM_ITEM_VEC] = item_vectors
        signature = ITEM_VECTORS_SIGNATURE
    return client.predict_candidates(model, {**request.user, **(states or {})}, per_candidate,
                                     signature_name=signature)


class LoggedItemCounts:
    """The item and category counts of a raw log as of any day, with preprocessing's own
    functions: what the evaluation scored a logged request with, and what a count table
    refreshed daily would have served (the exported table holds the counts as of the log's
    end). Reads the log once; each (key, day) is computed once."""

    def __init__(self, data_dir: str, count_lookback_days: int):
        layout = raw_files.RawLayout(data_dir)
        self.categories = {item["item_id"]: item["category"]
                           for item in raw_files.read_jsonl(layout.items)}
        self.lookback_days = count_lookback_days
        per_key: dict[tuple[str, str], list[dict]] = {}
        for event in raw_files.read_jsonl(layout.events_pattern):
            item_id = event[features.ITEM_ID]
            per_key.setdefault((features.ITEM_ID, item_id), []).append(event)
            per_key.setdefault((features.CATEGORY, self.categories.get(item_id)), []).append(event)
        self.counters = {key: AsOfCounts(daily_rows(events)) for key, events in per_key.items()}
        self.cache: dict[tuple[str, str, int], list[float]] = {}

    def _counts(self, table: str, key: str | None, day: int) -> list[float]:
        cached = self.cache.get((table, key, day))
        if cached is None:
            counter = self.counters.get((table, key))
            cached = (counter.as_of(day, self.lookback_days) if counter
                      else [0.0] * features.COUNT_SIZE)
            self.cache[table, key, day] = cached
        return cached

    def as_of(self, item_ids: Iterable, request_ts: int) -> dict[str, np.ndarray]:
        """``{item_counts, category_counts}`` [n, COUNT_SIZE] of ``item_ids`` as of the start
        of ``request_ts``'s day: the ``item_counts`` argument of ``score_candidates``."""
        day = day_start(int(request_ts))
        item_ids = [item.decode("utf-8") if isinstance(item, bytes) else str(item)
                    for item in item_ids]
        as_array = lambda rows: np.array(rows, np.float32).reshape(-1, features.COUNT_SIZE)
        return {features.ITEM_COUNTS: as_array(
                    [self._counts(features.ITEM_ID, item, day) for item in item_ids]),
                features.CATEGORY_COUNTS: as_array(
                    [self._counts(features.CATEGORY, self.categories.get(item), day)
                     for item in item_ids])}


def score_user(client, model: str, request: CandidateRequest) -> dict[str, np.ndarray]:
    """URM for one user: the user tower once, then every candidate with its states."""
    return score_candidates(client, model, request, user_states(client, model, request))


def user_events(data_dir: str, user_id: str) -> list[dict]:
    """The user's events in a raw data directory: what a feature store would hold."""
    return [event for event in raw_files.read_jsonl(raw_files.RawLayout(data_dir).events_pattern)
            if event[features.USER_ID] == user_id]


def logged_request(data_dir: str, work: str, candidates: int = CANDIDATES) -> CandidateRequest:
    """A real eval request rebuilt from the raw log: the first eval impression whose user has a
    click history, with the items that request showed, then catalogue items up to
    ``candidates``."""
    for batch in read_split(work, "eval", 256, deterministic=True, features=(
            features.REQUEST_ID, features.USER_ID, features.TS, features.HIST_LEN)):
        with_history = np.flatnonzero(batch[features.HIST_LEN].numpy() > 0)
        if with_history.size:
            row = int(with_history[0])
            break
    else:
        raise ValueError("no eval example has a behaviour history to serve")
    request_id = batch[features.REQUEST_ID].numpy()[row].decode("utf-8")
    user_id = batch[features.USER_ID].numpy()[row].decode("utf-8")
    events = user_events(data_dir, user_id)
    shown = [event[features.ITEM_ID] for event in events
             if event[features.REQUEST_ID] == request_id]
    catalogue = next(iter(read_items(work, candidates, deterministic=True,
                                     features=(features.ITEM_ID,))))[features.ITEM_ID].numpy()
    item_ids = list(dict.fromkeys([*shown, *(item.decode("utf-8") for item in catalogue)]))
    metadata = load_preprocess_metadata(work)
    return build_request(user_id, events, request_id, int(batch[features.TS].numpy()[row]),
                         item_ids[:candidates], metadata["max_seq_len"],
                         metadata["count_lookback_days"], metadata["history"])
