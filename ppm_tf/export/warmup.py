"""TF Serving warm-up records: requests replayed when a version loads, before it takes traffic.

TF Serving's session prepares a run (prunes and optimises the graph, builds its executors) the
first time a set of fed and fetched tensors is run, that is once per signature. Warm-up does
that at load time: the file holds one request per served signature, in the form clients send
(``requests.CANDIDATES`` candidates, every input with one row per candidate, full-length
behaviour sequences), so no signature's first real request pays for it. TF Serving reads at
most ``MAX_WARMUP_RECORDS`` records per file and fails the load beyond that.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

from ppm_tf import features
from ppm_tf.export.requests import CANDIDATES
from ppm_tf.export.serving_module import ITEM_COUNTS_SIGNATURE, ITEM_VECTORS_SIGNATURE

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"
MAX_WARMUP_RECORDS = 1000  # TF Serving's WarmupConsts::kMaxNumRecords
_ID_INPUTS = (features.USER_ID, features.ITEM_ID, features.HIST_ITEM_IDS, features.HIST_TS,
              features.HIST_ACTIONS, features.TS, features.USER_COUNTS)
_CACHED_INPUTS = (features.PPM_USER_STATES, features.PPM_USER_MASK)


def warmup_requests(module, serialized_examples: list[bytes]
                    ) -> dict[str, dict[str, np.ndarray]]:
    """One request per signature of ``module`` (a ``ServingModule``), from real eval examples:
    the first ``CANDIDATES`` of them as one request's rows."""
    serialized = serialized_examples[:CANDIDATES]
    if not serialized:
        raise ValueError("warm-up needs at least one serialized example")
    rows = _parse(module, serialized)
    scoring = {name: rows[name] for name in _ID_INPUTS}
    if module.uses_ppm:
        scoring.update({name: rows[name] for name in _CACHED_INPUTS})
    requests = {"serving_default": scoring,
                ITEM_COUNTS_SIGNATURE: {**scoring, **{name: rows[name] for name in (
                    features.ITEM_COUNTS, features.CATEGORY_COUNTS)}},
                "predict_examples": {"examples": np.array(serialized, dtype=object)}}
    if module.uses_ppm:
        requests[ITEM_VECTORS_SIGNATURE] = {
            **scoring, features.PPM_ITEM_VEC: rows[features.PPM_ITEM_VEC]}
        requests["user_states"] = {name: rows[name][:1] for name in features.USER_STATE_INPUTS}
    missing = sorted(set(module.signatures()) - set(requests))
    if missing:
        raise ValueError(f"no warm-up request for the signatures {missing}")
    return requests


def _parse(module, serialized: list[bytes]) -> dict[str, np.ndarray]:
    table = features.CACHED_EXAMPLE_FEATURES if module.uses_ppm else features.EXAMPLE_FEATURES
    wanted = {*_ID_INPUTS, *features.COUNT_FEATURES} | (
        {*_CACHED_INPUTS, features.PPM_ITEM_VEC} if module.uses_ppm else set())
    dims = ({features.PPM_USER_STATES: module.max_seq_len * module.tower_dim,
             features.PPM_ITEM_VEC: module.item_vectors.dim} if module.uses_ppm else None)
    spec = features.parse_spec([feature for feature in table if feature.name in wanted],
                               module.max_seq_len, dims)
    rows = {name: value.numpy()
            for name, value in tf.io.parse_example(tf.constant(serialized), spec).items()}
    if module.uses_ppm:
        rows[features.PPM_USER_STATES] = rows[features.PPM_USER_STATES].reshape(
            len(serialized), module.max_seq_len, module.tower_dim)
    return rows


def write_warmup_requests(saved_model_dir: str, model_name: str,
                          requests: Mapping[str, Mapping[str, np.ndarray]]) -> str:
    """Writes one ``PredictionLog`` per ``{signature name: inputs}`` entry; returns the path."""
    if len(requests) > MAX_WARMUP_RECORDS:
        raise ValueError(f"{len(requests)} warm-up records; TF Serving reads at most "
                         f"{MAX_WARMUP_RECORDS}")
    path = f"{saved_model_dir}/{WARMUP_FILE}"
    tf.io.gfile.makedirs(path.rpartition("/")[0])
    with tf.io.TFRecordWriter(path) as writer:
        for signature_name, inputs in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
            for name, value in inputs.items():
                request.inputs[name].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path
