"""Every input is checked against its signature (dtype, shape, claimed size) in both APIs.

A toy SavedModel with the URM's kind of signature (user-level and per-candidate inputs, a
history of fixed length, cached user states) on a real server on 127.0.0.1. TF Serving feeds
any shape to the graph and builds whatever shape a gRPC tensor claims; the local server refuses
a wrong shape in TensorFlow's words and an oversized claim before building anything.
"""
import json
import urllib.error
import urllib.request

import grpc
import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
from tensorflow.core.framework import tensor_pb2, types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from ppm_tf.serving import signature_inputs, tensors
from ppm_tf.serving.errors import ServingError
from ppm_tf.serving.signature_inputs import InputRules
from ppm_tf.serving.tensors import ndarray_to_tensor_proto
from ppm_tf.serving.testing import running_server

LENGTH, DIM, MAX_CANDIDATES = 5, 4, 64


class _Ranker(tf.Module):
    """Scores candidates for one user: ``item_id`` [n], user-level inputs [1 or n, ...]."""

    @tf.function(input_signature=[
        tf.TensorSpec([None], tf.string, name="user_id"),
        tf.TensorSpec([None], tf.string, name="item_id"),
        tf.TensorSpec([None, LENGTH], tf.int64, name="hist_ts"),
        tf.TensorSpec([None, LENGTH, DIM], tf.float32, name="ppm_user_states")])
    def score(self, user_id, item_id, hist_ts, ppm_user_states):
        item = tf.cast(tf.strings.to_hash_bucket_fast(item_id, 7), tf.float32)
        user = (tf.reduce_mean(ppm_user_states, axis=[1, 2])
                + tf.cast(tf.reduce_max(hist_ts, axis=1), tf.float32)
                + tf.cast(tf.strings.length(user_id), tf.float32))
        return {"click_prob": tf.sigmoid(item + user), "order_prob": tf.sigmoid(item - user)}


def save_ranker(path) -> None:
    ranker = _Ranker()
    tf.saved_model.save(ranker, str(path), signatures={"serving_default": ranker.score})


def ranker_inputs(candidates: int = 3, user_rows: int = 1) -> dict[str, np.ndarray]:
    return {"user_id": np.array([b"u1"] * user_rows, object),
            "item_id": np.array([f"i{n}".encode() for n in range(candidates)], object),
            "hist_ts": np.arange(user_rows * LENGTH, dtype=np.int64).reshape(user_rows, LENGTH),
            "ppm_user_states": np.full((user_rows, LENGTH, DIM), 0.5, np.float32)}


def predict_request(inputs, model: str = "ranker", **claimed) -> predict_pb2.PredictRequest:
    """A PredictRequest; ``claimed={alias: shape}`` replaces a tensor by one value that claims
    that shape, as TF Serving's proto decoding would pad it out."""
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for alias, value in inputs.items():
        request.inputs[alias].CopyFrom(ndarray_to_tensor_proto(value))
    for alias, shape in claimed.items():
        proto = tensor_pb2.TensorProto(dtype=request.inputs[alias].dtype)
        for size in shape:
            proto.tensor_shape.dim.add(size=size)
        if proto.dtype == types_pb2.DT_STRING:
            proto.string_val.append(b"i0")
        else:
            proto.float_val.append(0.5)
        request.inputs[alias].CopyFrom(proto)
    return request


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base = tmp_path_factory.mktemp("ranker")
    save_ranker(base / "1")
    with running_server(model_name="ranker", model_base_path=str(base),
                        file_system_poll_wait_seconds=0,
                        max_unknown_dim_size=MAX_CANDIDATES) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _grpc_error(stub, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=10)
    return error.value


def _rest(server, document) -> tuple[int, dict]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{server.rest_port}/v1/models/ranker:predict",
        data=json.dumps(document).encode(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def _columnar(inputs) -> dict:
    return {"inputs": {alias: tensors.ndarray_to_json(alias, value)
                       for alias, value in inputs.items()}}


def test_well_formed_requests_are_scored_in_both_apis(server, stub):
    response = stub.Predict(predict_request(ranker_inputs(3)), timeout=10)
    scores = tensors.tensor_proto_to_ndarray(response.outputs["click_prob"])
    assert scores.shape == (3,)
    status, body = _rest(server, _columnar(ranker_inputs(3)))
    assert status == 200 and np.allclose(body["outputs"]["click_prob"], scores)


# --- issue 13 item 9: a claimed size is refused before anything is built --------------------

@pytest.mark.parametrize("alias, shape, elements", [
    ("item_id", [100_000], 100_000),  # a 1.6 KB message TensorFlow pads to 100,000 strings
    ("ppm_user_states", [250_000, LENGTH, DIM], 250_000 * LENGTH * DIM),
    ("item_id", [10 ** 12], 10 ** 12),  # was INTERNAL MemoryError
])
def test_oversized_claims_are_invalid_argument_before_decoding(stub, monkeypatch, alias, shape,
                                                               elements):
    decoded = []
    decode = tensors.tensor_proto_to_ndarray
    monkeypatch.setattr(tensors, "tensor_proto_to_ndarray",
                        lambda proto, name="": decoded.append(name) or decode(proto, name))
    request = predict_request(ranker_inputs(), **{alias: shape})
    assert request.ByteSize() < 2000
    error = _grpc_error(stub, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"Tensor {alias} of shape {signature_inputs.shape_text(shape)} has {elements} " \
           f"elements" in error.details()
    assert f"at most {MAX_CANDIDATES} per unknown dimension (--max_unknown_dim_size)" in \
           error.details()
    assert alias not in decoded


def test_max_unknown_dim_size_is_the_largest_candidate_count_taken(server, stub):
    stub.Predict(predict_request(ranker_inputs(MAX_CANDIDATES)), timeout=10)
    error = _grpc_error(stub, predict_request(ranker_inputs(MAX_CANDIDATES + 1)))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert f"Tensor item_id of shape [{MAX_CANDIDATES + 1}]" in error.details()
    status, body = _rest(server, _columnar(ranker_inputs(MAX_CANDIDATES + 1)))
    assert status == 400 and f"Tensor item_id of shape [{MAX_CANDIDATES + 1}]" in body["error"]


def test_a_shape_claim_must_be_fully_defined(stub):
    error = _grpc_error(stub, predict_request(ranker_inputs(), item_id=[-1]))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "item_id: the shape of a request tensor must be fully defined" in error.details()


def test_size_is_limited_even_where_shapes_are_not_enforced():
    signature = meta_graph_pb2.SignatureDef()  # half_plus_two's: x [-1, 1]
    signature.inputs["x"].CopyFrom(meta_graph_pb2.TensorInfo(
        name="x:0", dtype=types_pb2.DT_FLOAT,
        tensor_shape=tf.TensorShape([None, 1]).as_proto()))
    lenient = InputRules(enforce_signature_shapes=False, max_unknown_dim_size=10)
    signature_inputs.check_input(signature, "x", types_pb2.DT_FLOAT, [3], lenient)  # TF Serving
    with pytest.raises(ServingError, match=r"Tensor x of shape \[11\] has 11 elements"):
        signature_inputs.check_input(signature, "x", types_pb2.DT_FLOAT, [11], lenient)
    with pytest.raises(ServingError, match=r"Shape of tensor x \[3\] is not compatible"):
        signature_inputs.check_input(signature, "x", types_pb2.DT_FLOAT, [3], InputRules())


# --- issue 13 item 10: dtype, shape and names, in gRPC and both REST forms -------------------

@pytest.mark.parametrize("alias, value, message", [
    ("hist_ts", np.zeros((1, 100_000), np.int64),
     "Shape of tensor hist_ts [1,100000] is not compatible with expected shape [?,5]."),
    ("ppm_user_states", np.zeros((1, 200, DIM), np.float32),
     "Shape of tensor ppm_user_states [1,200,4] is not compatible with expected shape [?,5,4]."),
    ("item_id", np.array([[b"i1", b"i2"]], object),
     "Shape of tensor item_id [1,2] is not compatible with expected shape [?]."),
    ("hist_ts", np.zeros(LENGTH, np.int64),
     "Shape of tensor hist_ts [5] is not compatible with expected shape [?,5]."),
    ("hist_ts", np.zeros((1, LENGTH), np.int32), "Expects arg[0] to be int64 but int32 is provided"),
])
def test_wrong_shapes_and_dtypes_are_refused_in_grpc(stub, alias, value, message):
    error = _grpc_error(stub, predict_request({**ranker_inputs(), alias: value}))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == message


def test_wrong_shapes_are_refused_in_both_rest_forms(server):
    wrong = {**ranker_inputs(), "ppm_user_states": np.zeros((1, 20, DIM), np.float32)}
    status, body = _rest(server, _columnar(wrong))
    assert (status, body) == (400, {"error": "Shape of tensor ppm_user_states [1,20,4] is not "
                                             "compatible with expected shape [?,5,4]."})
    row = {alias: tensors.ndarray_to_json(alias, value[0])
           for alias, value in ranker_inputs().items()}
    status, _ = _rest(server, {"instances": [row]})
    assert status == 200
    status, body = _rest(server, {"instances": [{**row, "hist_ts": list(range(LENGTH + 1))}]})
    assert (status, body) == (400, {"error": "Shape of tensor hist_ts [1,6] is not compatible "
                                             "with expected shape [?,5]."})


def test_extra_inputs_are_refused_in_grpc_and_columnar_rest(server, stub):
    extra = {**ranker_inputs(), "bogus": np.array([1.0], np.float32)}
    message = ("input size does not match signature: 5!=4 len({bogus,hist_ts,item_id,"
               "ppm_user_states,user_id}) != len({hist_ts,item_id,ppm_user_states,user_id}). "
               "Sent extra: {bogus}. Missing but required: {}.")
    error = _grpc_error(stub, predict_request(extra))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, message)
    assert _rest(server, _columnar(extra)) == (400, {"error": message})
