"""Checks an exported SavedModel the way TF Serving will meet it: in a fresh process that
imports only TensorFlow (no tensorflow-text, no ppm_tf).

    python fresh_process_check.py SAVED_MODEL_DIR EXAMPLES.tfrecord EXPECTED.npy

Exit 3: the graph uses ops that core TensorFlow does not register (stock TF Serving would
refuse to load it); exit 4: ``predict_examples`` scores differ from the expected ones.
"""
import os
import sys

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow.python.framework import op_def_registry


def op_types(saved_model_dir: str) -> set[str]:
    """Every op type in the graph and in its function library."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    ops = set()
    for meta_graph in saved_model.meta_graphs:
        ops.update(node.op for node in meta_graph.graph_def.node)
        for function in meta_graph.graph_def.library.function:
            ops.update(node.op for node in function.node_def)
    return ops


def main(saved_model_dir: str, examples_path: str, expected_path: str) -> int:
    unregistered = sorted(op for op in op_types(saved_model_dir) if op_def_registry.get(op) is None)
    if unregistered:
        print(f"ops not in core TensorFlow: {unregistered}", file=sys.stderr)
        return 3
    examples = [record.numpy() for record in tf.data.TFRecordDataset(examples_path)]
    scores = tf.saved_model.load(saved_model_dir).signatures["predict_examples"](
        examples=tf.constant(examples))["click_prob"].numpy()
    expected = np.load(expected_path)
    if not np.allclose(scores, expected, rtol=1e-4, atol=1e-6):
        print(f"scores differ after reload: max abs diff {np.abs(scores - expected).max()}",
              file=sys.stderr)
        return 4
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
