"""TF Serving warm-up records: requests replayed when a version loads, before it serves, so
the first real request does not pay for graph initialisation."""
from __future__ import annotations

import tensorflow as tf
from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

WARMUP_FILE = "assets.extra/tf_serving_warmup_requests"


def write_warmup_requests(saved_model_dir: str, model_name: str, serialized_examples: list[bytes],
                          signature_name: str = "predict_examples") -> str:
    """Writes one ``PredictionLog`` per example (batch 1) and one with all of them."""
    path = f"{saved_model_dir}/{WARMUP_FILE}"
    tf.io.gfile.makedirs(path.rpartition("/")[0])
    batches = [[example] for example in serialized_examples] + [serialized_examples]
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature_name))
            request.inputs["examples"].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path
