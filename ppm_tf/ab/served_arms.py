"""Arms that are exported models: each request's pool ranked by the model server over gRPC
(or REST), with the request protocol of ``ppm_tf.export.requests``.

A request's user-level inputs (history, time and the user's as-of counts) come from the
preprocessed eval split, where preprocessing built them from the raw log: what the offline
evaluation scored for the same request. Every input carries the candidate dimension, the
form TF Serving accepts with ``--enable_batching`` (the shipped config); several requests are
in flight at once (``clients``). A refused or failed call is an error of that arm for that
request: counted, kept with its message, and the request shows nothing.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ppm_tf import features
from ppm_tf.ab import CLIENTS
from ppm_tf.data.tfrecords import read_split
from ppm_tf.errors import StageError
from ppm_tf.export.requests import LoggedItemCounts
from ppm_tf.export.serving_module import ITEM_COUNTS_SIGNATURE
from ppm_tf.serving.client import GrpcClient, RestClient, ServingClientError

log = logging.getLogger(__name__)

CONTEXT_FEATURES = (features.REQUEST_ID, features.USER_ID, features.TS, features.HIST_ITEM_IDS,
                    features.HIST_TS, features.HIST_ACTIONS, features.USER_COUNTS)
SCORE_OUTPUT = "click_prob"
PROGRESS_EVERY = 1000


def request_contexts(work: str, request_ids: set[str]) -> dict[str, dict[str, np.ndarray]]:
    """``request_id -> {user_id [1], hist_item_ids [1, L], hist_ts [1, L], ts [1],
    user_counts [1, COUNT_SIZE]}`` from the eval split, for the requests in ``request_ids``."""
    contexts = {}
    for batch in read_split(work, "eval", 4096, deterministic=True, features=CONTEXT_FEATURES):
        values = {name: tensor.numpy() for name, tensor in batch.items()}
        for row, request_id in enumerate(values[features.REQUEST_ID].tolist()):
            request_id = request_id.decode("utf-8")
            if request_id in request_ids and request_id not in contexts:
                contexts[request_id] = {name: values[name][row:row + 1]
                                        for name in CONTEXT_FEATURES[1:]}
    return contexts


@dataclasses.dataclass
class ArmErrors:
    """The requests an arm failed, with the server's code and message for each."""

    rows: list[int] = dataclasses.field(default_factory=list)
    codes: list[str] = dataclasses.field(default_factory=list)
    messages: list[str] = dataclasses.field(default_factory=list)

    def summary(self, requests: int, examples: int = 3) -> dict:
        codes, counts = np.unique(self.codes, return_counts=True) if self.codes else ([], [])
        return {"failed_requests": len(self.rows), "requests": requests,
                "by_code": {str(code): int(count) for code, count in zip(codes, counts)},
                "examples": self.messages[:examples]}


class ServedArm:
    """One exported model behind the server: ``user_states`` first when the model has it
    (URM's cached user tower), then ``serving_with_item_counts`` over the pool, with the
    pool's counts as of the request's day (``daily_counts``)."""

    def __init__(self, name: str, client, metadata: GrpcClient, daily_counts: LoggedItemCounts):
        self.name = name
        self.client = client
        self.daily_counts = daily_counts
        signatures = metadata.signature_defs(name)
        if ITEM_COUNTS_SIGNATURE not in signatures:
            raise StageError(f"arm {name}: the served model has no {ITEM_COUNTS_SIGNATURE} "
                             "signature; export it again with this version")
        self.uses_user_states = "user_states" in signatures
        self.inputs = set(signatures[ITEM_COUNTS_SIGNATURE].inputs)
        sendable = (set(CONTEXT_FEATURES[1:]) | {features.ITEM_ID, features.ITEM_COUNTS,
                                                 features.CATEGORY_COUNTS})
        if self.uses_user_states:
            sendable |= set(signatures["user_states"].outputs)
        unknown = self.inputs - sendable
        if unknown:
            raise StageError(f"arm {name}: {ITEM_COUNTS_SIGNATURE} needs {sorted(unknown)}, "
                             "which the A/B replay does not build")

    def scores(self, context: dict[str, np.ndarray], pool_item_ids: np.ndarray) -> np.ndarray:
        """[K] click scores of the pool; raises ``ServingClientError`` when the server refuses."""
        user_level = {name: context[name] for name in CONTEXT_FEATURES[1:]}
        if self.uses_user_states:
            user_level.update(self.client.predict(
                self.name, {name: context[name] for name in features.USER_STATE_INPUTS},
                signature_name="user_states"))
        user_level = {name: value for name, value in user_level.items() if name in self.inputs}
        per_candidate = {features.ITEM_ID: pool_item_ids,
                         **self.daily_counts.as_of(pool_item_ids, context[features.TS][0])}
        scores = np.asarray(self.client.predict_candidates(
            self.name, user_level, per_candidate,
            signature_name=ITEM_COUNTS_SIGNATURE)[SCORE_OUTPUT]).reshape(-1)
        if scores.shape != pool_item_ids.shape:
            raise ServingClientError("BAD_OUTPUT", f"{SCORE_OUTPUT} has shape {scores.shape}, "
                                     f"expected {pool_item_ids.shape}")
        if not np.isfinite(scores).all():
            raise ServingClientError("BAD_OUTPUT", f"{SCORE_OUTPUT} holds non-finite scores")
        return scores


def make_clients(transport: str, grpc_target: str, rest_url: str):
    """(scoring client, metadata client): the transport's, and gRPC for signatures."""
    metadata = GrpcClient(grpc_target)
    if transport == "grpc":
        return metadata, metadata
    if transport == "rest":
        return RestClient(rest_url), metadata
    raise ValueError(f"transport must be grpc or rest, got {transport!r}")


def score_served_arms(arms: list[ServedArm], request_ids: np.ndarray,
                      contexts: list[dict[str, np.ndarray]], pool_item_ids: np.ndarray,
                      clients: int = CLIENTS):
    """Each arm's scores ([R, K], NaN where it failed), latencies in ms ([R], NaN where it
    failed) and errors. ``clients`` threads send requests at once, as a front end's workers
    would (the server batches concurrent calls); arms take turns going first, request by
    request."""
    shape = pool_item_ids.shape
    scores = {arm.name: np.full(shape, np.nan) for arm in arms}
    latency_ms = {arm.name: np.full(shape[0], np.nan) for arm in arms}
    errors = {arm.name: ArmErrors() for arm in arms}

    def score_request(row: int) -> list[tuple[str, np.ndarray | ServingClientError, float]]:
        outcomes = []
        for arm in (arms if row % 2 == 0 else arms[::-1]):
            started = time.perf_counter()
            try:
                outcome = arm.scores(contexts[row], pool_item_ids[row])
            except ServingClientError as error:
                outcome = error
            outcomes.append((arm.name, outcome, (time.perf_counter() - started) * 1000))
        return outcomes

    with ThreadPoolExecutor(clients) as senders:
        for row, outcomes in enumerate(senders.map(score_request, range(len(contexts)))):
            for name, outcome, elapsed_ms in outcomes:
                if isinstance(outcome, ServingClientError):
                    code = getattr(outcome.code, "name", str(outcome.code))  # gRPC or HTTP
                    errors[name].rows.append(row)
                    errors[name].codes.append(code)
                    errors[name].messages.append(f"{request_ids[row]}: {code}: "
                                                 f"{outcome.message}")
                else:
                    scores[name][row] = outcome
                    latency_ms[name][row] = elapsed_ms
            if (row + 1) % PROGRESS_EVERY == 0:
                log.info("served %d of %d requests", row + 1, shape[0])
    return scores, latency_ms, errors
