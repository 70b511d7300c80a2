"""The local server's gRPC services, called through tensorflow-serving-api's own stubs.

PredictionService (Predict, Classify, Regress, GetModelMetadata) and ModelService
(GetModelStatus, HandleReloadConfigRequest) on TF Serving's test models, with TF Serving's
status codes for every refusal; then our clients, which use only that public API.
"""
import json
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
from google.protobuf import json_format
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                     get_model_status_pb2, inference_pb2, model_management_pb2,
                                     model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc, regression_pb2)
from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

from ppm_tf.serving import config
from ppm_tf.serving.client import GrpcClient, RestClient, ServingClientError
from ppm_tf.serving.tensors import ndarray_to_tensor_proto, tensor_proto_to_ndarray
from ppm_tf.serving.testing import free_port, running_server

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "tf_serving"
TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
BATCHING_CONFIG = Path(__file__).resolve().parents[2] / "serving" / "batching.config"


def _config(*models) -> config.ModelServerConfig:
    server_config = config.ModelServerConfig()
    for name, folder, policy in models:
        model = server_config.model_config_list.config.add(
            name=name, base_path=str(FIXTURES / folder), model_platform="tensorflow")
        if policy == "all":
            model.model_version_policy.all.SetInParent()
    return server_config


@pytest.fixture(scope="module")
def server():
    if not FIXTURES.is_dir():
        pytest.skip(f"TF Serving test fixtures not found at {FIXTURES}")
    model_config = _config((TWO_VERSIONS, TWO_VERSIONS, "all"),
                           ("default", "saved_model_half_plus_two_cpu", ""))
    model_config.model_config_list.config[0].version_labels["stable"] = 123
    with running_server(model_config=model_config, file_system_poll_wait_seconds=0,
                        enable_batching=True,  # the production flags
                        batching_parameters_file=str(BATCHING_CONFIG)) as running:
        yield running


@pytest.fixture(scope="module")
def channel(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as opened:
        yield opened


@pytest.fixture(scope="module")
def predictions(channel):
    return prediction_service_pb2_grpc.PredictionServiceStub(channel)


@pytest.fixture(scope="module")
def models(channel):
    return model_service_pb2_grpc.ModelServiceStub(channel)


def _predict_request(model=TWO_VERSIONS, x=((1.0,), (2.0,), (5.0,)), dtype=np.float32, **spec):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model
    for field, value in spec.items():
        if field == "version":
            request.model_spec.version.value = value
        else:
            setattr(request.model_spec, field, value)
    request.inputs["x"].CopyFrom(ndarray_to_tensor_proto(np.array(x, dtype)))
    return request


def _code(call, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        call(request, timeout=10)
    return error.value


def test_predict_half_plus_two(predictions):
    response = predictions.Predict(_predict_request(), timeout=10)
    assert tensor_proto_to_ndarray(response.outputs["y"]).tolist() == [[2.5], [3.0], [4.5]]
    assert list(response.outputs["y"].float_val) == [2.5, 3.0, 4.5]  # TF Serving's field form
    assert (response.model_spec.name, response.model_spec.version.value,
            response.model_spec.signature_name) == (TWO_VERSIONS, 124, "serving_default")


def test_predict_specific_version_and_label(predictions):
    assert predictions.Predict(_predict_request(version=123),
                               timeout=10).model_spec.version.value == 123
    assert predictions.Predict(_predict_request(version_label="stable"),
                               timeout=10).model_spec.version.value == 123


def test_predict_accepts_packed_tensor_content(predictions):
    request = _predict_request()
    request.inputs["x"].CopyFrom(ndarray_to_tensor_proto(np.array([[4.0]], np.float32),
                                                         use_tensor_content=True))
    response = predictions.Predict(request, timeout=10)
    assert tensor_proto_to_ndarray(response.outputs["y"]).tolist() == [[4.0]]


@pytest.mark.parametrize("request_kwargs, code, message", [
    (dict(model="nope"), grpc.StatusCode.NOT_FOUND,
     "Servable not found for request: Latest(nope)"),
    (dict(version=99), grpc.StatusCode.NOT_FOUND,
     f"Servable not found for request: Specific({TWO_VERSIONS}, 99)"),
    (dict(version_label="nope"), grpc.StatusCode.INVALID_ARGUMENT,
     "Unrecognized servable version label: nope"),
    (dict(dtype=np.int32, x=(1, 2)), grpc.StatusCode.INVALID_ARGUMENT,
     "Expects arg[0] to be float but int32 is provided"),
    (dict(signature_name="nope"), grpc.StatusCode.FAILED_PRECONDITION,
     'Serving signature key "nope" not found.'),
])
def test_predict_refusals_have_tf_servings_codes(predictions, request_kwargs, code, message):
    error = _code(predictions.Predict, _predict_request(**request_kwargs))
    assert error.code() == code and message in error.details()


def test_predict_input_and_output_names_are_checked(predictions):
    request = _predict_request()
    request.inputs["extra"].CopyFrom(ndarray_to_tensor_proto(np.array([1.0], np.float32)))
    error = _code(predictions.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "input size does not match signature: 2!=1" in error.details()
    assert "Sent extra: {extra}" in error.details()
    request = _predict_request()
    del request.inputs["x"]
    assert "Missing but required: {x}" in _code(predictions.Predict, request).details()
    request = _predict_request()
    request.output_filter.append("z")
    error = _code(predictions.Predict, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: z" in error.details()
    error = _code(predictions.Predict, predict_pb2.PredictRequest())
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Missing ModelSpec" in error.details()


def test_get_model_metadata_equals_tf_servings_answer(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    request.model_spec.name = TWO_VERSIONS
    request.model_spec.version.value = 123
    response = predictions.GetModelMetadata(request, timeout=10)
    signature_defs = get_model_metadata_pb2.SignatureDefMap()
    assert response.metadata["signature_def"].Unpack(signature_defs)
    expected = json.loads((FIXTURES / f"{TWO_VERSIONS}_metadata.json").read_text())
    as_json = json_format.MessageToDict(signature_defs, preserving_proto_field_name=True,
                                        always_print_fields_with_no_presence=True)
    assert as_json == expected["metadata"]["signature_def"]
    assert (response.model_spec.name, response.model_spec.version.value) == (TWO_VERSIONS, 123)


def test_get_model_metadata_refusals(predictions):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = TWO_VERSIONS
    error = _code(predictions.GetModelMetadata, request)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "must specify at least one metadata_field" in error.details()
    request.metadata_field.append("signature_def")
    request.model_spec.name = "nope"
    assert _code(predictions.GetModelMetadata, request).code() == grpc.StatusCode.NOT_FOUND


def test_get_model_status(models):
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = TWO_VERSIONS
    response = models.GetModelStatus(request, timeout=10)
    states = [(status.version, get_model_status_pb2.ModelVersionStatus.State.Name(status.state),
               status.status.error_code) for status in response.model_version_status]
    assert states == [(124, "AVAILABLE", 0), (123, "AVAILABLE", 0)]
    request.model_spec.name = "nope"
    error = _code(models.GetModelStatus, request)
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "Could not find any versions of model nope" in error.details()


def test_classify_and_regress(predictions):
    regression = regression_pb2.RegressionRequest()
    regression.model_spec.name = TWO_VERSIONS
    regression.model_spec.signature_name = "regress_x_to_y"
    for x in (2.0, 4.0):
        example = regression.input.example_list.examples.add()
        example.features.feature["x"].float_list.value.append(x)
    response = predictions.Regress(regression, timeout=10)
    assert [r.value for r in response.result.regressions] == [3.0, 4.0]
    classification = classification_pb2.ClassificationRequest(input=regression.input)
    classification.model_spec.name = TWO_VERSIONS
    classification.model_spec.signature_name = "classify_x_to_y"
    response = predictions.Classify(classification, timeout=10)
    assert [[c.score for c in row.classes] for row in response.result.classifications] == [
        [3.0], [4.0]]
    regression.model_spec.signature_name = "serving_default"  # takes x, not tf.Examples
    assert _code(predictions.Regress, regression).code() == grpc.StatusCode.INVALID_ARGUMENT


def test_multi_inference_is_unimplemented(predictions):
    error = _code(predictions.MultiInference, inference_pb2.MultiInferenceRequest())
    assert error.code() == grpc.StatusCode.UNIMPLEMENTED


def test_reload_config_adds_changes_and_removes_models(server):
    with running_server(model_config=_config(("a", "saved_model_half_plus_two_cpu", "")),
                        rest_api_port=None, file_system_poll_wait_seconds=0) as running, \
            GrpcClient(f"127.0.0.1:{running.grpc_port}") as client:
        both = _config(("a", "saved_model_half_plus_two_cpu", ""),
                       ("b", "saved_model_half_plus_three", ""))
        assert client.reload_config(both).status.error_code == 0
        assert client.predict("b", {"x": np.array([1.0], np.float32)})["y"].tolist() == [3.5]
        client.reload_config(_config(("b", "saved_model_half_plus_three", "")))
        with pytest.raises(ServingClientError) as error:
            client.predict("a", {"x": np.array([1.0], np.float32)})
        assert error.value.code == grpc.StatusCode.NOT_FOUND
        assert [s.state for s in client.status("a").model_version_status] == [
            get_model_status_pb2.ModelVersionStatus.END]
        labelled = _config(("b", "saved_model_half_plus_three", ""))
        labelled.model_config_list.config[0].version_labels["stable"] = 999
        with pytest.raises(ServingClientError) as error:
            client.reload_config(labelled)
        assert error.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert "Request to assign label to version 999 of model b" in error.value.message
        with pytest.raises(ServingClientError) as error:
            client.call(client._models.HandleReloadConfigRequest,
                        model_management_pb2.ReloadConfigRequest())
        assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT


def test_grpc_client_speaks_tf_servings_public_api(server):
    x = np.array([[1.0], [3.0]], np.float32)
    with GrpcClient(f"127.0.0.1:{server.grpc_port}") as client:
        assert client.predict(TWO_VERSIONS, {"x": x}, version=123)["y"].tolist() == [[2.5], [3.5]]
        assert client.status("default").model_version_status[0].version == 123
        assert "serving_default" in client.signature_defs("default")
        with pytest.raises(ServingClientError) as error:
            client.predict("nope", {"x": x})
        assert error.value.code == grpc.StatusCode.NOT_FOUND


def test_rest_client_round_trips_and_reports_errors(tmp_path):
    if not FIXTURES.is_dir():
        pytest.skip(f"TF Serving test fixtures not found at {FIXTURES}")
    with running_server(model_name="hp2", model_base_path=str(FIXTURES / TWO_VERSIONS),
                        file_system_poll_wait_seconds=0) as running:
        rest = RestClient(f"http://127.0.0.1:{running.rest_port}")
        outputs = rest.predict("hp2", {"x": np.array([[1.0], [2.0]], np.float32)})
        assert list(outputs) == ["y"] and outputs["y"].tolist() == [[2.5], [3.0]]
        assert rest.predict_instances("hp2", [[1.0], [5.0]]) == [[2.5], [4.5]]
        assert rest.regress("hp2", [{"x": 2.0}], signature_name="regress_x_to_y") == [3.0]
        assert rest.status("hp2")["model_version_status"][0]["state"] == "AVAILABLE"
        assert rest.metadata("hp2")["model_spec"]["version"] == "124"
        with pytest.raises(ServingClientError) as error:
            rest.predict("hp2", {"x": [1.0]}, version=123)  # latest-only policy: not loaded
        assert error.value.code == 404 and "Specific(hp2, 123)" in error.value.message
    down = RestClient(f"http://127.0.0.1:{running.rest_port}", timeout_s=1, retries=1,
                      retry_backoff_s=0.01)
    with pytest.raises(ServingClientError) as error:
        down.status("hp2")
    assert error.value.code == 503


def test_grpc_client_gives_up_on_an_unavailable_server_after_its_retries():
    with GrpcClient(f"127.0.0.1:{free_port()}", timeout_s=2, retries=2,
                    retry_backoff_s=0.01) as client:
        with pytest.raises(ServingClientError) as error:
            client.status("hp2")
    assert error.value.code == grpc.StatusCode.UNAVAILABLE


def test_a_polling_client_reaches_a_server_that_starts_after_its_first_calls():
    """gRPC waits ever longer between connection attempts (1 s, 1.6 s, 2.6 s, ... by
    default); a client with ``reconnect_backoff_s`` keeps trying at that pace, so a server
    that comes up late is reached on the next poll, not seconds later."""
    if not FIXTURES.is_dir():
        pytest.skip(f"TF Serving test fixtures not found at {FIXTURES}")
    port = free_port()
    with GrpcClient(f"127.0.0.1:{port}", timeout_s=2, retries=0,
                    reconnect_backoff_s=0.05) as client:
        for _ in range(40):  # 4 s of failed polls: gRPC's own backoff would be ~4 s by now
            with pytest.raises(ServingClientError):
                client.status("hp2")
            time.sleep(0.1)
        with running_server(model_name="hp2", model_base_path=str(FIXTURES / TWO_VERSIONS),
                            port=port, file_system_poll_wait_seconds=0):
            polls = 0
            while True:
                polls += 1
                try:
                    state = client.status("hp2").model_version_status[0].state
                    break
                except ServingClientError:
                    assert polls < 20, "not reached within 20 polls 0.05 s apart"
                    time.sleep(0.05)
    assert state == ModelVersionStatus.AVAILABLE
