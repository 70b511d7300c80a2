"""With ``--enable_batching`` the local server refuses what TF Serving's batching refuses.

The server runs with the production flags and configs (``serving/docker-compose.yml``, its
``batching.config`` and ``models.config``), the toy ranker published as ``urm``:
every input of a batched run must share its 0th dimension (TF Serving's ``batching_util.h``),
and that size may not exceed ``max_batch_size`` (``shared_batch_scheduler.h``). A user row sent
once beside many candidate rows, which our signatures broadcast, is refused there, as it is by
TF Serving with batching on (tensorflow/serving#1682).
"""
from pathlib import Path

import grpc
import pytest

from test_serving_inputs import predict_request, ranker_inputs, save_ranker

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
from ppm_tf.serving import config, tensors
from ppm_tf.serving.client import RestClient, ServingClientError
from ppm_tf.serving.deployment import production_options
from ppm_tf.serving.server import ModelServer, ServerOptions, request_input_rules
from ppm_tf.serving.testing import running_server
from tensorflow_serving.apis import prediction_service_pb2_grpc

BATCHING_CONFIG = Path(__file__).resolve().parents[2] / "serving" / "batching.config"
MAX_BATCH_SIZE = config.load_batching_parameters(str(BATCHING_CONFIG)).max_batch_size.value
UNEQUAL = "Batching Run() input tensors must have equal 0th-dimension size"


MODEL = "urm"  # a name serving/models.config serves


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("saved_models")
    for name in ("urm", "base"):
        save_ranker(root / name / "1")
    return root


@pytest.fixture(scope="module")
def server(saved_models):
    with ModelServer(production_options({"/models": str(saved_models)})) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def _grpc_error(stub, request) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as error:
        stub.Predict(request, timeout=10)
    return error.value


def test_one_user_row_beside_many_candidates_is_refused_over_grpc_and_rest(server, stub):
    broadcast = ranker_inputs(candidates=3, user_rows=1)
    error = _grpc_error(stub, predict_request(broadcast, MODEL))
    assert (error.code(), error.details()) == (grpc.StatusCode.INVALID_ARGUMENT, UNEQUAL)
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", retries=0)
    with pytest.raises(ServingClientError) as refused:
        rest.predict(MODEL, broadcast)
    assert (refused.value.code, refused.value.message) == (400, UNEQUAL)


def test_user_rows_repeated_per_candidate_are_served(server, stub):
    repeated = ranker_inputs(candidates=3, user_rows=3)
    response = stub.Predict(predict_request(repeated, MODEL), timeout=10)
    assert tensors.tensor_proto_to_ndarray(response.outputs["click_prob"]).shape == (3,)
    rest = RestClient(f"http://127.0.0.1:{server.rest_port}", retries=0)
    assert rest.predict(MODEL, repeated)["click_prob"].shape == (3,)


def test_a_request_over_max_batch_size_is_refused(stub):
    rows = MAX_BATCH_SIZE + 1
    error = _grpc_error(stub, predict_request(ranker_inputs(candidates=rows, user_rows=rows),
                                              MODEL))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == (f"Task size {rows} is larger than maximum input batch size "
                               f"{MAX_BATCH_SIZE}")
    stub.Predict(predict_request(ranker_inputs(MAX_BATCH_SIZE, MAX_BATCH_SIZE), MODEL),
                 timeout=30)


def test_a_run_fetching_fewer_than_all_outputs_bypasses_the_batcher_as_in_tf_serving(stub):
    """TF Serving batches only runs whose feeds and fetches are all of one signature's."""
    request = predict_request(ranker_inputs(candidates=3, user_rows=1), MODEL)
    request.output_filter.append("click_prob")
    response = stub.Predict(request, timeout=10)
    assert list(response.outputs) == ["click_prob"]
    request.output_filter.append("order_prob")
    assert _grpc_error(stub, request).details() == UNEQUAL


def test_without_batching_the_broadcast_form_is_served(saved_models):
    with running_server(model_name="ranker", model_base_path=str(saved_models / "urm"),
                        port=None, file_system_poll_wait_seconds=0) as running:
        rest = RestClient(f"http://127.0.0.1:{running.rest_port}", retries=0)
        scores = rest.predict("ranker", ranker_inputs(candidates=3, user_rows=1))["click_prob"]
        assert scores.shape == (3,)


def test_batch_size_limit_comes_from_the_batching_file_or_tensorflows_default(tmp_path):
    assert request_input_rules(ServerOptions()).batch_size_limit is None
    assert request_input_rules(ServerOptions(enable_batching=True)).batch_size_limit == 1000
    assert request_input_rules(ServerOptions(
        enable_batching=True, batching_parameters_file=str(BATCHING_CONFIG))
    ).batch_size_limit == MAX_BATCH_SIZE
    no_max = tmp_path / "batching.config"
    no_max.write_text("batch_timeout_micros { value: 0 }\n")
    assert request_input_rules(ServerOptions(
        enable_batching=True, batching_parameters_file=str(no_max))).batch_size_limit == 1000
