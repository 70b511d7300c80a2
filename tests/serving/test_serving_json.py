"""TF Serving's REST JSON rules (json_tensor.cc), tensor conversions and version folders.

No server here: the request parser and response writer are pure functions, checked against
the behaviour and messages of TF Serving's own handler tests.
"""
import base64
import json
import os

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow_serving.config import model_server_config_pb2

from ppm_tf.serving import json_api, tensors, versions
from ppm_tf.serving.errors import ServingError


def _infos(**dtypes):
    return {name: meta_graph_pb2.TensorInfo(name=f"{name}:0", dtype=dtype)
            for name, dtype in dtypes.items()}


ONE_FLOAT = _infos(x=types_pb2.DT_FLOAT)
MIXED = _infos(ids=types_pb2.DT_INT64, scores=types_pb2.DT_FLOAT, tags=types_pb2.DT_STRING)


def _parse(document, infos=ONE_FLOAT):
    body = document if isinstance(document, bytes) else json.dumps(document).encode()
    return json_api.parse_predict_request(body, lambda signature_name: infos)


def _error(document, infos=ONE_FLOAT) -> ServingError:
    with pytest.raises(ServingError) as error:
        _parse(document, infos)
    return error.value


def test_row_format_batches_instances_along_a_new_first_dimension():
    signature, inputs, request_format = _parse({"instances": [1.0, 2.0, 5.0]})
    assert (signature, request_format) == ("", json_api.ROW)
    assert inputs["x"].dtype == np.float32 and inputs["x"].tolist() == [1.0, 2.0, 5.0]
    _, inputs, _ = _parse({"instances": [[1.0], [2.0]]})
    assert inputs["x"].shape == (2, 1)


def test_row_format_with_named_inputs_needs_every_name_in_every_instance():
    _, inputs, _ = _parse({"instances": [{"ids": 1, "scores": [0.5, 1], "tags": "a"},
                                         {"ids": 2, "scores": [1.5, 2], "tags": "b"}]}, MIXED)
    assert inputs["ids"].dtype == np.int64 and inputs["ids"].tolist() == [1, 2]
    assert inputs["scores"].shape == (2, 2)
    assert inputs["tags"].tolist() == [b"a", b"b"]
    error = _error({"instances": [{"ids": 1, "scores": [0.5], "tags": "a"}, {"ids": 2}]}, MIXED)
    assert "keys must be equal to: ids,scores,tags" in error.message


def test_columnar_format_keeps_each_inputs_own_shape():
    signature, inputs, request_format = _parse(
        {"signature_name": "s", "inputs": {"ids": [1, 2, 3], "scores": [[0.5]], "tags": "t"}},
        MIXED)
    assert (signature, request_format) == ("s", json_api.COLUMNAR)
    assert inputs["ids"].shape == (3,) and inputs["scores"].shape == (1, 1)
    assert inputs["tags"].shape == () and inputs["tags"].item() == b"t"


def test_base64_objects_carry_binary_strings():
    payload = bytes(range(256))
    _, inputs, _ = _parse({"inputs": {"ids": [1], "scores": [1.0],
                                      "tags": [{"b64": base64.b64encode(payload).decode()}]}},
                          MIXED)
    assert inputs["tags"][0] == payload
    error = _error({"inputs": {"ids": [1], "scores": [1.0], "tags": [{"b64": "%%%"}]}}, MIXED)
    assert error.message.endswith("Unable to base64 decode")


def test_nan_and_infinity_are_accepted_as_tf_serving_does():
    _, inputs, _ = _parse(b'{"inputs": [NaN, Infinity, -Infinity]}')
    assert np.isnan(inputs["x"][0]) and np.isposinf(inputs["x"][1])


@pytest.mark.parametrize("document, message", [
    (b"", "JSON Parse error: The document is empty"),
    (b"instances = [1, 2]", "JSON Parse error: Invalid value"),
    (b"[1, 2]", "Is not object"),
    ({"signature_name": 100}, "'signature_name' key must be a string value."),
    ({"foo": 1}, "Missing 'inputs' or 'instances' key"),
    ({"instances": [1.0], "inputs": [1.0]}, "expecting only one of 'inputs' or 'instances'"),
    ({"instances": 1.0}, "to be an list/array"),
    ({"instances": []}, "No values in 'instances' array"),
    ({"instances": ["x", "y"]}, "not of expected type: float"),
    ({"instances": [True]}, "Type: True is not of expected type: float"),
    ({"instances": [[1.0], [1.0, 2.0]]}, "Expecting tensor size: 1 but got: 2"),
    ({"instances": [[[1.0, 2.0]], [[1.0], [2.0]]]}, "Expecting shape [1,2] but got: [2,1]"),
    ({"inputs": [[1.0], 2.0]}, "found at incorrect level"),
    ({"inputs": [[1.0], [2.0, 3.0]]}, "Encountered list at unexpected size: 2"),
    ({"instances": [16777217]}, "to float without loss of precision"),
    ({"instances": [1e39]}, "to float without loss of precision"),
    ({"instances": [{"y": 1.0}]}, "does not have named input: y"),
])
def test_malformed_predict_bodies_get_tf_servings_message(document, message):
    error = _error(document)
    assert error.code_name == "INVALID_ARGUMENT" and error.http_status == 400
    assert message in error.message


def test_multiple_inputs_need_named_instances_or_an_inputs_object():
    assert "instances is a plain list" in _error({"instances": [1]}, MIXED).message
    assert "inputs is a plain value/list" in _error({"inputs": [1]}, MIXED).message
    assert "Missing named input: tags in 'inputs' object." in _error(
        {"inputs": {"ids": [1], "scores": [1.0]}}, MIXED).message


def test_integer_inputs_refuse_decimals_and_out_of_range_values():
    infos = _infos(n=types_pb2.DT_INT32)
    assert "not of expected type: int32" in _error({"instances": [1.5]}, infos).message
    assert "not of expected type: int32" in _error({"instances": [2 ** 31]}, infos).message
    _, inputs, _ = _parse({"instances": [-(2 ** 31)]}, infos)
    assert inputs["n"].dtype == np.int32


def test_unsupported_input_dtypes_are_unimplemented():
    half = _infos(h=types_pb2.DT_HALF)
    error = _error({"inputs": [1.0]}, half)
    assert error.http_status == 501 and "to type: half" in error.message
    # The row format wraps every element's error as INVALID_ARGUMENT, as TF Serving does.
    error = _error({"instances": [1.0]}, half)
    assert error.http_status == 400 and "UNIMPLEMENTED: Conversion" in error.message


def test_row_response_is_predictions_and_columnar_is_outputs():
    y = np.array([[2.5], [3.0]], np.float32)
    assert json_api.predict_response({"y": y}, json_api.ROW) == {"predictions": [[2.5], [3.0]]}
    assert json_api.predict_response({"y": y}, json_api.COLUMNAR) == {"outputs": [[2.5], [3.0]]}
    two = {"a": np.array([1, 2]), "b": np.array([0.5, 1.5], np.float32)}
    assert json_api.predict_response(two, json_api.ROW) == {
        "predictions": [{"a": 1, "b": 0.5}, {"a": 2, "b": 1.5}]}
    assert json_api.predict_response(two, json_api.COLUMNAR) == {
        "outputs": {"a": [1, 2], "b": [0.5, 1.5]}}


def test_row_response_needs_one_batch_size():
    with pytest.raises(ServingError, match="inconsistent batch size"):
        json_api.predict_response({"a": np.zeros(2), "b": np.zeros(3)}, json_api.ROW)
    with pytest.raises(ServingError, match="has no shape information"):
        json_api.predict_response({"a": np.float32(1)}, json_api.ROW)


def test_float32_outputs_are_written_in_their_shortest_form():
    text = json.dumps(tensors.ndarray_to_json("p", np.array([0.1, 1 / 3, 3.0, np.nan],
                                                            np.float32)))
    assert text == "[0.1, 0.33333334, 3.0, NaN]"


def test_string_outputs_are_text_unless_named_bytes():
    assert tensors.ndarray_to_json("name", np.array([b"abc"], object)) == ["abc"]
    assert tensors.ndarray_to_json("image_bytes", np.array([b"\x00\xff"], object)) == [
        {"b64": base64.b64encode(b"\x00\xff").decode()}]


@pytest.mark.parametrize("value", [
    np.array([[1.5, -2.0]], np.float32), np.arange(6, dtype=np.int64).reshape(2, 3),
    np.array([True, False]), np.array([b"a", b"\x00"], object), np.array([0.5], np.float16),
    np.array(7, np.int32), np.array([1 + 2j], np.complex64),
])
@pytest.mark.parametrize("packed", [False, True])
def test_tensor_protos_round_trip(value, packed):
    proto = tensors.ndarray_to_tensor_proto(value, use_tensor_content=packed)
    back = tensors.tensor_proto_to_ndarray(proto)
    assert back.shape == value.shape and back.dtype == value.dtype
    assert back.tolist() == value.tolist()


def test_classify_regress_bodies_become_examples_with_context():
    signature, request_input = json_api.parse_examples_request(json.dumps({
        "signature_name": "regress_x_to_y", "context": {"user": "u1"},
        "examples": [{"x": 1.0, "ids": [1, 2], "flag": True, "raw": {"b64": "aGk="}}]}).encode(),
        "regress")
    assert signature == "regress_x_to_y"
    example = request_input.example_list_with_context.examples[0].features.feature
    assert list(example["x"].float_list.value) == [1.0]
    assert list(example["ids"].int64_list.value) == [1, 2]
    assert list(example["flag"].int64_list.value) == [1]
    assert list(example["raw"].bytes_list.value) == [b"hi"]
    context = request_input.example_list_with_context.context.features.feature
    assert list(context["user"].bytes_list.value) == [b"u1"]


@pytest.mark.parametrize("document, message", [
    ({"signature_name": "s"}, "key 'examples' is expected"),
    ({"examples": []}, "'examples' value is an empty array"),
    ({"examples": [1]}, "Example must be JSON object"),
    ({"examples": [{"x": [1, "a"]}]}, "Unexpected element type in feature: x"),
    ({"examples": [{"x": None}]}, "unexpected JSON type: Null"),
])
def test_bad_examples_are_refused(document, message):
    with pytest.raises(ServingError, match=message):
        json_api.parse_examples_request(json.dumps(document).encode(), "regress")


def _saved_model_dir(path, shards=1, index=True):
    os.makedirs(os.path.join(path, "variables"))
    open(os.path.join(path, "saved_model.pb"), "wb").close()
    if index:
        open(os.path.join(path, "variables", "variables.index"), "wb").close()
    for shard in range(shards):
        open(os.path.join(path, "variables", f"variables.data-{shard:05d}-of-00002"), "wb").close()
    return str(path)


def test_only_numeric_folders_with_a_whole_saved_model_are_versions(tmp_path):
    _saved_model_dir(tmp_path / "00000007", shards=2)
    _saved_model_dir(tmp_path / "8", shards=1)  # shard 1 of 2 is still being written
    _saved_model_dir(tmp_path / "9", shards=2, index=False)
    _saved_model_dir(tmp_path / ".tmp-10", shards=2)
    _saved_model_dir(tmp_path / "11.partial", shards=2)
    found = versions.list_version_dirs(str(tmp_path))
    assert sorted(found) == [7, 8, 9]
    complete = [v for v, path in found.items() if versions.is_complete_saved_model(path)]
    assert complete == [7]


def test_version_policies_pick_latest_all_or_specific():
    policy = model_server_config_pb2.ModelConfig().model_version_policy
    assert versions.aspired_versions([1, 3, 2], policy) == {3}
    policy.latest.num_versions = 2
    assert versions.aspired_versions([1, 3, 2], policy) == {2, 3}
    policy.all.SetInParent()
    assert versions.aspired_versions([1, 3, 2], policy) == {1, 2, 3}
    policy.specific.versions.extend([1, 5])
    assert versions.aspired_versions([1, 3, 2], policy) == {1}
