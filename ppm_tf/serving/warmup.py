"""Model warm-up: replay the requests a SavedModel ships in ``assets.extra``, before serving it.

TF Serving reads ``<version>/assets.extra/tf_serving_warmup_requests`` (a TFRecord file of
``PredictionLog`` records) and runs each request once before the version takes traffic, so the
first real request does not pay for graph optimisation and lazy initialisation. A warm-up that
fails fails the load, as in TF Serving. Writing the file is the exporter's job; this replays it.
"""
from __future__ import annotations

import logging
import os

import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from ppm_tf.serving import inference
from ppm_tf.serving.errors import invalid_argument, unimplemented

WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's kMaxNumRecords

log = logging.getLogger(__name__)


def warmup_file(version_path: str) -> str:
    return os.path.join(version_path, WARMUP_FILE)


def replay(servable, num_request_iterations: int = 1) -> int:
    """Replays the servable's warm-up records; returns how many were run (0 if no file)."""
    path = warmup_file(servable.path)
    if not os.path.isfile(path):
        return 0
    count = 0
    for record in tf.data.TFRecordDataset(path).as_numpy_iterator():
        count += 1
        if count > MAX_WARMUP_RECORDS:
            raise invalid_argument(f"Number of warmup records exceeds the maximum "
                                   f"({MAX_WARMUP_RECORDS}) at {path}")
        entry = prediction_log_pb2.PredictionLog.FromString(record)
        for _ in range(max(num_request_iterations, 1)):
            _run_one(servable, entry)
    log.info("Finished reading warmup data for model at %s. Number of warmup records read: %d.",
             path, count)
    return count


def _run_one(servable, entry: prediction_log_pb2.PredictionLog) -> None:
    kind = entry.WhichOneof("log_type")
    if kind == "predict_log":
        request = entry.predict_log.request
        inputs = inference.decode_inputs(servable, request.model_spec.signature_name,
                                         request.inputs)
        inference.run_predict(servable, request.model_spec.signature_name, inputs,
                              request.output_filter)
    elif kind == "classify_log":
        request = entry.classify_log.request
        inference.run_classify(servable, request.model_spec.signature_name, request.input)
    elif kind == "regress_log":
        request = entry.regress_log.request
        inference.run_regress(servable, request.model_spec.signature_name, request.input)
    else:
        raise unimplemented(f"Unsupported log_type for warmup: {kind}")
