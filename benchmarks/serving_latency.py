"""Serving latency of one user's request, side by side, in one run on this machine.

    python benchmarks/serving_latency.py --out runs/demo [--data DIR] [--candidates 100]
        [--rounds 10] [--requests 20]

OUT is a finished ``ppm demo`` run (its work/ and saved_models/; the raw log is OUT/data unless
``--data`` names it). The request is a real eval request rebuilt from the raw log by
``ppm_tf.export.requests``, with ``--candidates`` candidates. Every group of contenders is
timed alternately: ``--rounds`` rounds, each running ``--requests`` calls of every contender.

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

from benchmarks.uncached import UncachedURM  # noqa: E402
from ppm_tf import features  # noqa: E402
from ppm_tf.export.requests import (USER_STATE_INPUTS, CandidateRequest,  # noqa: E402
                                    logged_request, score_candidates, score_user, user_states)
from ppm_tf.models.config import preset  # noqa: E402
from ppm_tf.serving.client import (GrpcClient, RestClient, candidate_rows,  # noqa: E402
                                   predict_document, predict_message)
from ppm_tf.serving.deployment import MODELS_MOUNT, production_options  # noqa: E402
from ppm_tf.serving.server import ModelServer  # noqa: E402
from ppm_tf.training.ablations import resolve_preset  # noqa: E402
from ppm_tf.work_layout import RunLayout  # noqa: E402


def alternate(calls: dict, rounds: int, per_round: int) -> dict[str, dict[str, float]]:
    """p50/p99 (ms) of each call, timed in alternating rounds after a few warm-up calls."""
    for call in calls.values():
        for _ in range(3):
            call()  # connections, first-run costs
    timings = {name: [] for name in calls}
    for _ in range(rounds):
        for name, call in calls.items():
            for _ in range(per_round):
                started = time.perf_counter()
                call()
                timings[name].append((time.perf_counter() - started) * 1000)
    return {name: {"p50": float(np.percentile(values, 50)),
                   "p99": float(np.percentile(values, 99))} for name, values in timings.items()}


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
    tower_inputs = {name: tf.constant(request.user[name]) for name in USER_STATE_INPUTS}
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
    print(f"Request form, {candidates} candidates          request bytes   p50 ms   p99 ms")
    for name, result in results.items():
        print(f"  {name:<38} {sizes[name]:>13,} {result['p50']:8.2f} {result['p99']:8.2f}")
    for name in results:
        if name.endswith("one user row"):
            repeated = name.replace("one user row", "row per candidate")
            print(f"  {name[:-len(' one user row')]}: row per candidate / one user row: bytes "
                  f"{sizes[repeated] / sizes[name]:.1f}x, p50 "
                  f"{results[repeated]['p50'] / results[name]['p50']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a finished `ppm demo` run folder")
    parser.add_argument("--data", help="the run's raw data directory (default OUT/data)")
    parser.add_argument("--preset", help="model preset of the un-cached URM (default: the "
                        "one the run's models were trained with)")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=20, help="calls per contender a round")
    args = parser.parse_args()
    folder = RunLayout(args.out)
    work, saved_models = folder.work.root, folder.saved_models
    preset_name = resolve_preset(work, args.preset)
    full = logged_request(args.data or folder.data, work, args.candidates)
    production = production_options({MODELS_MOUNT: saved_models})
    without_batching = dataclasses.replace(production, enable_batching=False)
    with ModelServer(production) as batching, ModelServer(without_batching) as one_row:
        clients = {
            "rest": (RestClient(f"http://127.0.0.1:{one_row.rest_port}"),
                     RestClient(f"http://127.0.0.1:{batching.rest_port}")),
            "grpc": (GrpcClient(f"127.0.0.1:{one_row.grpc_port}"),
                     GrpcClient(f"127.0.0.1:{batching.grpc_port}"))}
        calls, sizes = form_calls(clients, full)
        print_forms(alternate(calls, args.rounds, args.requests), sizes, args.candidates)

        single = CandidateRequest(full.user, full.item_ids[:1])
        p50 = {}
        for label, request in ((f"{args.candidates} candidates", full), ("1 candidate", single)):
            calls = {f"in-process {name}": call
                     for name, call in in_process_calls(saved_models, request).items()}
            for protocol, (_, client) in clients.items():
                calls.update({f"{protocol} {name}": call
                              for name, call in server_calls(client, request).items()})
            results = alternate(calls, args.rounds, args.requests)
            results.update(alternate({"in-process uncached urm": uncached_call(
                work, preset_name, request)}, 1, max(args.rounds * args.requests // 10, 5)))
            for name, result in results.items():
                print(f"{label:<15} {name:<32} p50 {result['p50']:8.2f} ms  "
                      f"p99 {result['p99']:8.2f} ms", flush=True)
            if request is full:
                p50 = {name: result["p50"] for name, result in results.items()}
                rate = throughput(calls["grpc urm cached states"], threads=4,
                                  requests_per_thread=max(args.requests, 10))
                print(f"{label:<15} grpc urm cached states, 4 concurrent clients: "
                      f"{rate:,.0f} requests/s", flush=True)
        clients["grpc"][0].close()
        clients["grpc"][1].close()
    print(f"urm (cached) / base, in-process p50: "
          f"{p50['in-process urm cached states'] / p50['in-process base']:.2f}x (target <= 1.3)")
    print(f"grpc / in-process, urm cached p50: "
          f"{p50['grpc urm cached states'] / p50['in-process urm cached states']:.2f}x "
          "(target <= 1.5)")
    print(f"uncached / cached urm, in-process p50: "
          f"{p50['in-process uncached urm'] / p50['in-process urm cached states']:.1f}x")


if __name__ == "__main__":
    main()
