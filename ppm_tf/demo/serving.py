"""The demo's last stage: serve the exported models locally with the production flags and
configs (``serving/docker-compose.yml``, batching on) and score one user's candidates over REST
and gRPC, the way a production client of TF Serving would.

The request is a real eval request rebuilt from the raw log (``ppm_tf.export.requests``: the
preprocessing job's behaviour-sequence function, every input with one row per candidate);
latency is measured for URM with and without its ``user_states`` call, and for ``base``.
"""
from __future__ import annotations

import time

import numpy as np

from ppm_tf import features
from ppm_tf.errors import StageError
from ppm_tf.export.requests import logged_request, score_candidates, score_user, user_states
from ppm_tf.serving.client import GrpcClient, RestClient
from ppm_tf.serving.deployment import MODELS_MOUNT, production_options
from ppm_tf.serving.server import ModelServer

TIMED_REQUESTS = 30


def _percentiles(timings: list[float]) -> dict[str, float]:
    milliseconds = np.array(timings) * 1000
    return {"p50": float(np.percentile(milliseconds, 50)),
            "p99": float(np.percentile(milliseconds, 99))}


def _timed(call, repeats: int = TIMED_REQUESTS):
    call()  # the first call pays for connection set-up
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = call()
        timings.append(time.perf_counter() - started)
    return result, _percentiles(timings)


def serve_and_score(saved_models: str, work: str, data_dir: str) -> dict:
    request = logged_request(data_dir, work)
    with ModelServer(production_options({MODELS_MOUNT: saved_models})) as server:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}")
        grpc = GrpcClient(f"127.0.0.1:{server.grpc_port}")
        latency, scores = {}, {}
        for protocol, client in (("rest", rest), ("grpc", grpc)):
            states = user_states(client, "urm", request)
            _, latency[f"base {protocol}"] = _timed(
                lambda client=client: score_candidates(client, "base", request))
            _, latency[f"urm cached states {protocol}"] = _timed(
                lambda client=client: score_candidates(client, "urm", request, states))
            scores[protocol], latency[f"urm with user_states {protocol}"] = _timed(
                lambda client=client: score_user(client, "urm", request))
        grpc.close()
    click = {protocol: np.asarray(outputs["click_prob"]).ravel()
             for protocol, outputs in scores.items()}
    if not np.allclose(click["rest"], click["grpc"], rtol=1e-5, atol=1e-7):
        raise StageError("REST and gRPC scored the same request differently")
    top = np.argsort(-click["grpc"])[:5]
    user = request.user[features.USER_ID][0].decode("utf-8")
    print(f"  user {user}: top candidates by URM click probability "
          + ", ".join(f"{request.item_ids[index].decode('utf-8')} {click['grpc'][index]:.4f}"
                      for index in top))
    calls = len(latency) * (TIMED_REQUESTS + 1) + len(scores)  # + one user_states each
    return {"user_id": user, "candidates": int(request.item_ids.size), "client_calls": calls,
            "request_form": "every input with one row per candidate (batching on)",
            "rest_and_grpc_agree": True, "latency_ms": latency}
