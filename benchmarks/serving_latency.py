"""Serving latency of one user's request, side by side, in one run on this machine.

    python benchmarks/serving_latency.py --out runs/demo [--candidates 100] [--requests 200]

OUT is a finished ``ppm demo`` run (its work/ and saved_models/). For one user scoring
``--candidates`` candidates, and for a single candidate, prints p50/p99 (ms) of

- ``base``; ``urm`` with ``ppm_user_states`` from the caller's cache; ``urm`` including its one
  ``user_states`` call; and an un-cached URM (encoders and user tower inside the graph),
- in-process (the SavedModel's signatures called directly) and through the local server over
  REST and gRPC,

then throughput of ``urm`` (cached states) over gRPC under a bounded concurrent load.
Targets: urm p50 <= 1.3x base; gRPC p50 <= 1.5x in-process.
"""
from __future__ import annotations

import argparse
import concurrent.futures
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.uncached import UncachedURM  # noqa: E402
from ppm_tf import features  # noqa: E402
from ppm_tf.export.requests import (USER_STATE_INPUTS, one_user_request, score_user,  # noqa: E402
                                 user_states, write_models_config)
from ppm_tf.models.config import preset  # noqa: E402
from ppm_tf.serving.client import GrpcClient, RestClient  # noqa: E402
from ppm_tf.serving.server import ModelServer, ServerOptions  # noqa: E402



def percentiles(call, requests: int) -> dict[str, float]:
    for _ in range(5):
        call()  # warm-up: graph tracing, connections
    timings = []
    for _ in range(requests):
        started = time.perf_counter()
        call()
        timings.append((time.perf_counter() - started) * 1000)
    return {"p50": float(np.percentile(timings, 50)), "p99": float(np.percentile(timings, 99))}


def latest_version(base_path: str) -> str:
    versions = sorted(int(name) for name in os.listdir(base_path) if name.isdigit())
    return os.path.join(base_path, str(versions[-1]))


def in_process_calls(saved_models: str, request: dict) -> dict:
    urm = tf.saved_model.load(latest_version(os.path.join(saved_models, "urm"))).signatures
    base = tf.saved_model.load(latest_version(os.path.join(saved_models, "base"))).signatures
    tensors = {name: tf.constant(value) for name, value in request.items()}
    states = urm["user_states"](**{name: tensors[name] for name in USER_STATE_INPUTS})
    return {
        "base": lambda: base["serving_default"](**tensors),
        "urm cached states": lambda: urm["serving_default"](**tensors, **states),
        "urm with user_states": lambda: urm["serving_default"](
            **tensors, **urm["user_states"](**{name: tensors[name] for name in USER_STATE_INPUTS})),
    }


def uncached_call(work: str, preset_name: str, request: dict):
    """The un-cached URM on the same request (attributes looked up as serving does)."""
    model = UncachedURM(work, preset(preset_name))
    candidates = len(request[features.ITEM_ID])
    batch = {features.USER_ID: np.repeat(request[features.USER_ID], candidates),
             features.ITEM_ID: request[features.ITEM_ID],
             features.CATEGORY: np.repeat(b"", candidates),
             features.BRAND: np.repeat(b"", candidates),
             features.HIST_ITEM_IDS: np.repeat(request[features.HIST_ITEM_IDS], candidates, 0),
             features.HIST_CATEGORIES: np.repeat(
                 np.full_like(request[features.HIST_ITEM_IDS], b""), candidates, 0),
             features.HIST_TS: np.repeat(request[features.HIST_TS], candidates, 0),
             features.TS: np.repeat(request[features.TS], candidates)}
    score = tf.function(lambda tensors: model.predict_probabilities(tensors))
    tensors = {name: tf.constant(value) for name, value in batch.items()}
    return lambda: score(tensors)


def server_calls(client, request: dict) -> dict:
    states = user_states(client, request)
    return {
        "base": lambda: client.predict("base", request),
        "urm cached states": lambda: client.predict("urm", {**request, **states}),
        "urm with user_states": lambda: score_user(client, request),
    }


def throughput(call, threads: int, requests_per_thread: int) -> float:
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        list(pool.map(lambda _: [call() for _ in range(requests_per_thread)], range(threads)))
    return threads * requests_per_thread / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a finished `ppm demo` run folder")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    work, saved_models = os.path.join(args.out, "work"), os.path.join(args.out, "saved_models")
    config_path = write_models_config(saved_models)
    full = one_user_request(work, args.candidates)
    single = {**full, features.ITEM_ID: full[features.ITEM_ID][:1]}
    results = {}
    for label, request in ((f"{args.candidates} candidates", full), ("1 candidate", single)):
        calls = {f"in-process {name}": call
                 for name, call in in_process_calls(saved_models, request).items()}
        calls["in-process uncached urm"] = uncached_call(work, args.preset, request)
        with ModelServer(ServerOptions(port=0, rest_api_port=0,
                                       model_config_file=config_path)) as server:
            for protocol, client in (
                    ("rest", RestClient(f"http://127.0.0.1:{server.rest_port}")),
                    ("grpc", GrpcClient(f"127.0.0.1:{server.grpc_port}"))):
                calls.update({f"{protocol} {name}": call
                              for name, call in server_calls(client, request).items()})
            for name, call in calls.items():
                requests = args.requests if "uncached" not in name else max(args.requests // 10, 5)
                results[(label, name)] = percentiles(call, requests)
                print(f"{label:<15} {name:<32} p50 {results[(label, name)]['p50']:8.2f} ms  "
                      f"p99 {results[(label, name)]['p99']:8.2f} ms", flush=True)
            if request is full:
                rate = throughput(calls["grpc urm cached states"], threads=4,
                                  requests_per_thread=max(args.requests // 4, 10))
                print(f"{label:<15} grpc urm cached states, 4 concurrent clients: "
                      f"{rate:,.0f} requests/s", flush=True)
    label = f"{args.candidates} candidates"
    p50 = {name: results[(label, name)]["p50"] for (group, name) in results if group == label}
    print(f"urm (cached) / base, in-process p50: "
          f"{p50['in-process urm cached states'] / p50['in-process base']:.2f}x (target <= 1.3)")
    print(f"grpc / in-process, urm cached p50: "
          f"{p50['grpc urm cached states'] / p50['in-process urm cached states']:.2f}x "
          "(target <= 1.5)")
    print(f"uncached / cached urm, in-process p50: "
          f"{p50['in-process uncached urm'] / p50['in-process urm cached states']:.1f}x")


if __name__ == "__main__":
    main()
