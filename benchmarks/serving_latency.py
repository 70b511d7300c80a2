"""Serving latency of one user's request, side by side, in one run on this machine.

    python benchmarks/serving_latency.py --out runs/demo [--data DIR] [--candidates 100]
        [--rounds 10] [--round-seconds 1]

OUT is a finished ``ppm demo`` run (its work/ and saved_models/; the raw log is OUT/data unless
``--data`` names it). The request is a real eval request rebuilt from the raw log by
``ppm_tf.export.requests``, with ``--candidates`` candidates. Every group of contenders is
timed in alternating rounds (``rounds.py``): ``--rounds`` rounds in which each contender runs
for at least ``--round-seconds``. A p50 is the median of the rounds' medians [lowest, highest
round], a ratio the ratio of two contenders' p50s with a 95% interval over paired rounds.

1. **Request form**: what repeating the user-level inputs per candidate costs. For ``base``
   and ``urm`` (cached user states), over REST and gRPC, request bytes and p50/p99 (ms) of
   - *one user row*: the user-level inputs once beside the candidates (the form used before;
     TF Serving with ``--enable_batching`` refuses it), on a server without batching;
   - *row per candidate*: the documented form, on the production deployment
     (``serving/docker-compose.yml``, batching on).
2. **Latency** of the documented form, for ``--candidates`` candidates and for one: ``base``,
   ``urm`` with cached states, ``urm`` including its ``user_states`` call, in-process (the
   SavedModel's signatures called directly) and through the production deployment over REST
   and gRPC, and an un-cached URM (encoders and user tower in the graph) in-process; then
   throughput of ``urm`` (cached states) over gRPC with 4 concurrent clients.
Targets: urm p50 <= 1.3x base; gRPC p50 <= 1.5x in-process.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.rounds import RATIO_LEGEND, Ratio, Round, Spread, alternate  # noqa: E402
from benchmarks.uncached import UncachedURM  # noqa: E402
from ppm_tf import features  # noqa: E402
from ppm_tf.export.requests import (CandidateRequest,  # noqa: E402
                                    logged_request, score_candidates, score_user, user_states)
from ppm_tf.models.config import preset  # noqa: E402
from ppm_tf.serving.client import (GrpcClient, RestClient, candidate_rows,  # noqa: E402
                                   predict_document, predict_message)
from ppm_tf.serving.deployment import MODELS_MOUNT, production_options  # noqa: E402
from ppm_tf.serving.server import ModelServer  # noqa: E402
from ppm_tf.training.ablations import resolve_preset  # noqa: E402
from ppm_tf.work_layout import RunLayout  # noqa: E402


def timed(calls: dict, rounds: int, round_seconds: float) -> dict[str, list[Round]]:
    """Each call's rounds, alternating (``rounds.alternate``); a round of calls takes at least
    ``round_seconds``."""
    return alternate(calls, rounds, round_seconds, warmup_calls=3)


def latency(results: list[Round]) -> dict:
    """p50 as the median of the rounds' medians (and its spread over rounds), p99 over every
    call, and the rounds' medians themselves (for ratios)."""
    medians = [one.median_ms for one in results]
    calls = [seconds * 1000 for one in results for seconds in one.seconds]
    return {"p50": Spread.of(medians), "p99": float(np.percentile(calls, 99)),
            "round_p50": medians, "calls": len(calls)}


def latest_version(base_path: str) -> str:
    versions = sorted(int(name) for name in os.listdir(base_path) if name.isdigit())
    return os.path.join(base_path, str(versions[-1]))


def request_bytes(model: str, inputs: dict) -> dict[str, int]:
    return {"grpc": predict_message(model, inputs).ByteSize(),
            "rest": len(json.dumps(predict_document(inputs)).encode("utf-8"))}


def form_calls(servers: dict, request: CandidateRequest) -> tuple[dict, dict]:
    """Both request forms for base and urm (cached states) over REST and gRPC: (calls, bytes)."""
    calls, sizes = {}, {}
    for protocol, (one_row_client, batching_client) in servers.items():
        states = {"base": {}, "urm": user_states(batching_client, "urm", request)}
        for model in ("base", "urm"):
            user = {**request.user, **states[model]}
            one_row = {**user, features.ITEM_ID: request.item_ids}
            per_candidate = candidate_rows(user, {features.ITEM_ID: request.item_ids})
            for form, client, inputs in (("one user row", one_row_client, one_row),
                                         ("row per candidate", batching_client, per_candidate)):
                name = f"{protocol} {model:<4} {form}"
                calls[name] = lambda client=client, model=model, inputs=inputs: client.predict(
                    model, inputs)
                sizes[name] = request_bytes(model, inputs)[protocol]
    return calls, sizes


def in_process_calls(saved_models: str, request: CandidateRequest) -> dict:
    urm = tf.saved_model.load(latest_version(os.path.join(saved_models, "urm"))).signatures
    base = tf.saved_model.load(latest_version(os.path.join(saved_models, "base"))).signatures
    rows = {name: tf.constant(value) for name, value in candidate_rows(
        request.user, {features.ITEM_ID: request.item_ids}).items()}
    tower_inputs = {name: tf.constant(request.user[name]) for name in features.USER_STATE_INPUTS}
    candidates = int(request.item_ids.size)

    def per_candidate(states):
        return {name: tf.repeat(value, candidates, axis=0) for name, value in states.items()}

    states = per_candidate(urm["user_states"](**tower_inputs))
    return {
        "base": lambda: base["serving_default"](**rows),
        "urm cached states": lambda: urm["serving_default"](**rows, **states),
        "urm with user_states": lambda: urm["serving_default"](
            **rows, **per_candidate(urm["user_states"](**tower_inputs))),
    }


def uncached_call(work: str, preset_name: str, request: CandidateRequest):
    """The un-cached URM on the same request (attributes looked up as serving does)."""
    model = UncachedURM(work, preset(preset_name))
    empty = np.full_like(request.user[features.HIST_ITEM_IDS], b"")
    blank = np.full(request.item_ids.size, b"", object)
    no_counts = np.zeros((request.item_ids.size, features.COUNT_SIZE), np.float32)
    rows = candidate_rows({**request.user, features.HIST_CATEGORIES: empty,
                           features.HIST_CONTENT: empty},
                          {features.ITEM_ID: request.item_ids, features.CATEGORY: blank,
                           features.BRAND: blank, features.ITEM_CONTENT: blank,
                           features.ITEM_COUNTS: no_counts, features.CATEGORY_COUNTS: no_counts})
    score = tf.function(lambda tensors: model.predict_probabilities(tensors))
    tensors = {name: tf.constant(value) for name, value in rows.items()}
    return lambda: score(tensors)


def server_calls(client, request: CandidateRequest) -> dict:
    states = user_states(client, "urm", request)
    return {
        "base": lambda: score_candidates(client, "base", request),
        "urm cached states": lambda: score_candidates(client, "urm", request, states),
        "urm with user_states": lambda: score_user(client, "urm", request),
    }


def throughput(call, threads: int, requests_per_thread: int) -> float:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: [call() for _ in range(requests_per_thread)], range(threads)))
    return threads * requests_per_thread / (time.perf_counter() - started)


def print_forms(results: dict, sizes: dict, candidates: int) -> None:
    print(f"Request form, {candidates} candidates          request bytes   "
          "p50 ms [lowest, highest round]   p99 ms")
    for name, result in results.items():
        print(f"  {name:<38} {sizes[name]:>13,} {result['p50'].format('8.2f'):<32} "
              f"{result['p99']:8.2f}")
    for name in results:
        if name.endswith("one user row"):
            repeated = name.replace("one user row", "row per candidate")
            ratio = Ratio.of_medians(results[repeated]["round_p50"], results[name]["round_p50"])
            print(f"  {name[:-len(' one user row')]}: row per candidate / one user row: bytes "
                  f"{sizes[repeated] / sizes[name]:.1f}x, p50 {ratio.format()}")


def print_latencies(label: str, results: dict) -> None:
    print(f"{label}: p50 ms [lowest, highest round], p99 ms over every call")
    for name, result in results.items():
        print(f"  {name:<32} p50 {result['p50'].format('8.2f'):<32} p99 "
              f"{result['p99']:8.2f}   calls {result['calls']:>6}", flush=True)


def print_ratios(results: dict) -> None:
    """The headline ratios of one latency group, each with its interval over rounds."""
    def ratio(numerator: str, denominator: str) -> str:
        return Ratio.of_medians(results[numerator]["round_p50"],
                                results[denominator]["round_p50"]).format()

    print(f"  urm (cached) / base, in-process p50: "
          f"{ratio('in-process urm cached states', 'in-process base')} (target <= 1.3)")
    print(f"  urm with user_states / base, in-process p50: "
          f"{ratio('in-process urm with user_states', 'in-process base')}")
    print(f"  urm (cached) / base, grpc p50: {ratio('grpc urm cached states', 'grpc base')}")
    print(f"  grpc / in-process, urm cached p50: "
          f"{ratio('grpc urm cached states', 'in-process urm cached states')} (target <= 1.5)")
    print(f"  uncached / cached urm, in-process p50: "
          f"{ratio('in-process uncached urm', 'in-process urm cached states')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a finished `ppm demo` run folder")
    parser.add_argument("--data", help="the run's raw data directory (default OUT/data)")
    parser.add_argument("--preset", help="model preset of the un-cached URM (default: the "
                        "one the run's models were trained with)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-seconds", type=float, default=1.0,
                        help="each contender's least time per round")
    parser.add_argument("--concurrent-requests", type=int, default=20,
                        help="requests per client in the 4-client throughput run")
    args = parser.parse_args()
    folder = RunLayout(args.out)
    work, saved_models = folder.work.root, folder.saved_models
    preset_name = resolve_preset(work, args.preset)
    full = logged_request(args.data or folder.data, work, args.candidates)
    production = production_options({MODELS_MOUNT: saved_models})
    without_batching = dataclasses.replace(production, enable_batching=False)
    print(f"{args.rounds} rounds of >= {args.round_seconds:g} s per contender, alternating; "
          f"{RATIO_LEGEND}")
    with ModelServer(production) as batching, ModelServer(without_batching) as one_row:
        clients = {
            "rest": (RestClient(f"http://127.0.0.1:{one_row.rest_port}"),
                     RestClient(f"http://127.0.0.1:{batching.rest_port}")),
            "grpc": (GrpcClient(f"127.0.0.1:{one_row.grpc_port}"),
                     GrpcClient(f"127.0.0.1:{batching.grpc_port}"))}
        calls, sizes = form_calls(clients, full)
        forms = timed(calls, args.rounds, args.round_seconds)
        print_forms({name: latency(rounds) for name, rounds in forms.items()}, sizes,
                    args.candidates)

        single = CandidateRequest(full.user, full.item_ids[:1])
        for label, request in ((f"{args.candidates} candidates", full), ("1 candidate", single)):
            calls = {f"in-process {name}": call
                     for name, call in in_process_calls(saved_models, request).items()}
            calls["in-process uncached urm"] = uncached_call(work, preset_name, request)
            for protocol, (_, client) in clients.items():
                calls.update({f"{protocol} {name}": call
                              for name, call in server_calls(client, request).items()})
            results = {name: latency(rounds) for name, rounds in
                       timed(calls, args.rounds, args.round_seconds).items()}
            print_latencies(label, results)
            print_ratios(results)
            if request is full:
                rate = throughput(calls["grpc urm cached states"], threads=4,
                                  requests_per_thread=args.concurrent_requests)
                print(f"  grpc urm cached states, 4 concurrent clients: "
                      f"{rate:,.0f} requests/s", flush=True)
        clients["grpc"][0].close()
        clients["grpc"][1].close()


if __name__ == "__main__":
    main()
