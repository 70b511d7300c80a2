"""``ppm ab``: the paper's online A/B test, replayed through the served models in a world whose
truth is known.

Every arm ranks the same replayed requests and pools (a paired design); exported models are
ranked by the model server running the production configs, built-in arms in process:
``oracle`` (the world's own click probabilities: the ceiling), ``popularity`` (logged clicks on
earlier days; ignores the user) and ``random``. The world's probabilities of the top ``slots``
give each arm's expected clicks and orders, compared with paired bootstrap CIs over users.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ppm_tf.ab import BUILT_IN_ARMS, CLIENTS, DEFAULT_ARMS
from ppm_tf.ab.outcomes import shown_positions, user_outcomes
from ppm_tf.ab.production_server import ProductionServer
from ppm_tf.ab.replay import NOT_MODELLED, ReplayedRequests, eval_days, replay_eval_days
from ppm_tf.ab.served_arms import (ArmErrors, ServedArm, make_clients, request_contexts,
                                   score_served_arms)
from ppm_tf.ab.statistics import compare_arms
from ppm_tf.data import raw_files
from ppm_tf.data.tfrecords import load_preprocess_metadata
from ppm_tf.export.requests import LoggedItemCounts
from ppm_tf.errors import StageError
from ppm_tf.serving.deployment import REPOSITORY_SERVING_DIR
from ppm_tf.work_layout import AB_RESULTS, SAVED_MODELS, WorkLayout, write_json

log = logging.getLogger(__name__)

TRANSPORTS = ("grpc", "rest")


@dataclasses.dataclass
class AbSettings:
    """One replayed A/B test. ``control`` defaults to ``base`` when it is an arm, else the
    last arm; ``slots`` to the world's impressions per request; ``days`` to every eval day;
    ``clients`` is how many requests are in flight at once; ``out`` (ab.json, the server's
    log and configs) to WORK/ab."""

    work: str
    data: str
    saved_models: str = SAVED_MODELS
    arms: tuple[str, ...] = DEFAULT_ARMS
    control: str | None = None
    days: int | None = None
    pool: int = 100
    slots: int | None = None
    transport: str = "grpc"
    clients: int = CLIENTS
    serving_dir: str = REPOSITORY_SERVING_DIR
    seed: int = 0
    resamples: int = 1000
    out: str | None = None

    @property
    def out_dir(self) -> str:
        return self.out or WorkLayout(self.work).ab_dir

    def resolved_control(self) -> str:
        if self.control is not None:
            return self.control
        return "base" if "base" in self.arms else self.arms[-1]

    def check(self, world_slots: int) -> None:
        if len(self.arms) < 2 or len(set(self.arms)) != len(self.arms):
            raise ValueError(f"arms must name at least two different arms, got {self.arms}")
        if self.resolved_control() not in self.arms:
            raise ValueError(f"control {self.control!r} is not one of the arms {self.arms}")
        if self.transport not in TRANSPORTS:
            raise ValueError(f"transport must be one of {TRANSPORTS}, got {self.transport!r}")
        if self.clients < 1:
            raise ValueError(f"clients must be at least 1, got {self.clients}")
        slots = self.slots or world_slots
        if not 1 <= slots <= self.pool:
            raise ValueError(f"slots={slots} must be between 1 and pool={self.pool}")


def run_ab(settings: AbSettings) -> dict:
    """Runs the replay, writes ``OUT/ab.json`` and returns its content."""
    world = raw_files.read_world(settings.data)
    if world.get("source") != "synthetic":
        raise StageError(f"{settings.data}: the A/B replay needs a synthetic world (its truth is "
                         f"what the arms are measured with); world.json says "
                         f"source={world.get('source')!r}")
    settings.check(world["config"]["impressions_per_request"])
    slots = settings.slots or world["config"]["impressions_per_request"]
    pool_seed, ranking_seed, bootstrap_seed = np.random.SeedSequence(settings.seed).spawn(3)
    requests = replay_eval_days(world, days=settings.days, pool_size=settings.pool,
                                seed=pool_seed)
    served = [arm for arm in settings.arms if arm not in BUILT_IN_ARMS]
    scores, latency_ms, errors, excluded = {}, {}, {}, 0
    if served:
        _check_exports(settings.saved_models, served)
        requests, contexts, excluded = _with_contexts(settings.work, world, requests)
        scores, latency_ms, errors = _serve(settings, served, requests, contexts)
    ranking_rng = np.random.default_rng(ranking_seed)
    tie_break = ranking_rng.random(requests.p_click.shape)
    scores.update(_built_in_scores(settings.arms, requests, ranking_rng))
    outcomes = {}
    for arm in settings.arms:
        failed = np.isnan(scores[arm]).any(axis=1)
        shown = shown_positions(np.nan_to_num(scores[arm], nan=-np.inf), tie_break, slots)
        outcomes[arm] = user_outcomes(requests, shown, failed)
    first_day, end_day = eval_days(world)
    result = {
        "arms": list(settings.arms), "requests": len(requests),
        "eval_days": sorted({int(day) for day in requests.day}),
        "world_eval_days": [first_day, end_day],
        "pool": settings.pool, "slots": slots, "transport": settings.transport,
        "seed": settings.seed, "excluded_requests": excluded, "not_modelled": NOT_MODELLED,
        "comparison": compare_arms(outcomes, settings.resolved_control(),
                                   resamples=settings.resamples, seed=bootstrap_seed),
        "errors": {arm: errors.get(arm, ArmErrors()).summary(len(requests))
                   for arm in settings.arms},
        "latency_ms": {arm: _percentiles(values) for arm, values in latency_ms.items()},
    }
    write_json(os.path.join(settings.out_dir, AB_RESULTS), result)
    return result


def _with_contexts(work: str, world: dict, requests: ReplayedRequests):
    """The requests the preprocessed eval split holds, their user-level inputs, and how many
    it does not hold (dead-lettered by preprocessing: reported, not silently dropped)."""
    bounds = load_preprocess_metadata(work)["split_bounds"]
    if bounds["eval_start_ts"] != world["suggested_splits"]["eval"]["start_ts"]:
        raise StageError(f"{work} was preprocessed with an eval split starting at "
                         f"{bounds['eval_start_ts']}, not the world's "
                         f"{world['suggested_splits']['eval']['start_ts']}: preprocess this "
                         "world with its suggested splits first")
    contexts = request_contexts(work, set(requests.request_ids.tolist()))
    kept = np.array([request_id in contexts for request_id in requests.request_ids.tolist()])
    if not kept.any():
        raise StageError(f"no replayed request is in {work}'s eval split: was it preprocessed "
                         "from this world?")
    requests = requests.subset(kept)
    return (requests, [contexts[request_id] for request_id in requests.request_ids.tolist()],
            int((~kept).sum()))


def _check_exports(saved_models: str, served: list[str]) -> None:
    for arm in served:
        base_path = os.path.join(saved_models, arm)
        if not os.path.isdir(base_path) or not any(name.isdigit()
                                                   for name in os.listdir(base_path)):
            raise StageError(f"no exported version of {arm} in {base_path}: run `ppm export "
                             f"--work WORK --model {arm} --base-path {base_path}` first")


def _serve(settings: AbSettings, served: list[str], requests: ReplayedRequests,
           contexts: list[dict[str, np.ndarray]]):
    run_dir = settings.out_dir
    os.makedirs(run_dir, exist_ok=True)
    # The tables in an export hold the counts as of the log's end, past every replayed day:
    # each request gets its items' counts as of its own day, as a daily refresh would. A
    # thread reads them from the raw log while the server process starts.
    lookback_days = load_preprocess_metadata(settings.work)["count_lookback_days"]
    with ThreadPoolExecutor(1) as reader:
        counts_read = reader.submit(LoggedItemCounts, settings.data, lookback_days)
        with ProductionServer(settings.serving_dir, settings.saved_models, served,
                              run_dir) as server:
            scoring, metadata = make_clients(settings.transport, server.grpc_target,
                                             server.rest_url)
            daily_counts = counts_read.result()
            arms = [ServedArm(name, scoring, metadata, daily_counts) for name in served]
            log.info("ranking %d requests with %s over %s", len(requests), served,
                     settings.transport)
            return score_served_arms(arms, requests.request_ids, contexts,
                                     requests.pool_item_ids, settings.clients)


def _built_in_scores(arms, requests: ReplayedRequests, rng) -> dict[str, np.ndarray]:
    scorers = {"oracle": lambda: requests.p_click,
               "popularity": lambda: requests.clicks_before_day,
               "random": lambda: rng.random(requests.p_click.shape)}
    return {arm: scorers[arm]() for arm in arms if arm in scorers}


def _percentiles(values: np.ndarray) -> dict:
    served = values[np.isfinite(values)]
    if not served.size:
        return {"p50": None, "p99": None, "requests": 0}
    return {"p50": float(np.percentile(served, 50)), "p99": float(np.percentile(served, 99)),
            "requests": int(served.size)}
