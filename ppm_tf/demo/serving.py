"""The demo's last stage: serve the exported models locally and score one user's candidates
over REST and gRPC, the way a production client of TF Serving would.

The request protocol is ``ppm_tf.export.requests``; latency is measured for URM with and
without its ``user_states`` call, and for ``base``.
"""
from __future__ import annotations

import os
import time

import numpy as np

from ppm_tf import features
from ppm_tf.errors import StageError
from ppm_tf.export.requests import one_user_request, score_user, user_states
from ppm_tf.serving.client import GrpcClient, RestClient
from ppm_tf.serving.server import ModelServer, ServerOptions

TIMED_REQUESTS = 30
MODELS_CONFIG = """model_config_list {{
  config {{ name: "urm" base_path: "{urm}" model_platform: "tensorflow" }}
  config {{ name: "base" base_path: "{base}" model_platform: "tensorflow" }}
}}
"""


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


def write_models_config(saved_models: str) -> str:
    """A model_config_list serving ``urm`` and ``base`` from ``saved_models``; its path."""
    config_path = os.path.join(saved_models, "models.config")
    with open(config_path, "w", encoding="utf-8") as handle:
        handle.write(MODELS_CONFIG.format(urm=os.path.abspath(os.path.join(saved_models, "urm")),
                                          base=os.path.abspath(os.path.join(saved_models, "base"))))
    return config_path


def serve_and_score(saved_models: str, work: str) -> dict:
    request = one_user_request(work)
    config_path = write_models_config(saved_models)
    with ModelServer(ServerOptions(port=0, rest_api_port=0,
                                   model_config_file=config_path)) as server:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}")
        grpc = GrpcClient(f"127.0.0.1:{server.grpc_port}")
        latency, scores = {}, {}
        for protocol, client in (("rest", rest), ("grpc", grpc)):
            states = user_states(client, request)
            _, latency[f"base {protocol}"] = _timed(lambda client=client: client.predict(
                "base", request))
            _, latency[f"urm cached states {protocol}"] = _timed(
                lambda client=client: client.predict("urm", {**request, **states}))
            scores[protocol], latency[f"urm with user_states {protocol}"] = _timed(
                lambda client=client: score_user(client, request))
    click = {protocol: np.asarray(outputs["click_prob"]).ravel()
             for protocol, outputs in scores.items()}
    if not np.allclose(click["rest"], click["grpc"], rtol=1e-5, atol=1e-7):
        raise StageError("REST and gRPC scored the same request differently")
    top = np.argsort(-click["grpc"])[:5]
    user = request[features.USER_ID][0].decode("utf-8")
    print(f"  user {user}: top candidates by URM click probability "
          + ", ".join(f"{request[features.ITEM_ID][index].decode('utf-8')} "
                      f"{click['grpc'][index]:.4f}" for index in top))
    return {"user_id": user, "candidates": int(request[features.ITEM_ID].size),
            "rest_and_grpc_agree": True, "latency_ms": latency}
