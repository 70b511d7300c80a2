"""The exported models as production serves them: the local server started with the flags and
configs of ``serving/docker-compose.yml`` (batching on), the tiny demo run's fresh exports, and
requests built from the raw log by ``ppm_tf.export.requests``.

- the documented form (every input one row per candidate) is served over REST and gRPC, and
  the size-1 form is refused with TF Serving's batching message;
- a request built from the raw log scores what the evaluation scored for that impression;
- warm-up covers every signature: no signature's first request prepares a new run.
"""
import grpc
import numpy as np
import pytest

import ppm_tf  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
from tensorflow_serving.apis import prediction_log_pb2

from ppm_tf import features
from ppm_tf.data.tfrecords import load_cached_metadata, load_preprocess_metadata
from ppm_tf.export.requests import (LoggedItemCounts, build_request, logged_request,
                                    score_candidates, score_user, user_events, user_states)
from ppm_tf.export.warmup import WARMUP_FILE
from ppm_tf.serving.client import GrpcClient, RestClient, ServingClientError, candidate_rows
from ppm_tf.serving.deployment import production_options
from ppm_tf.serving.server import ModelServer

pytestmark = pytest.mark.slow
UNEQUAL = "Batching Run() input tensors must have equal 0th-dimension size"
SIGNATURES = {"urm": {"serving_default", "serving_with_item_counts",
                      "serving_with_item_vectors", "user_states", "predict_examples"},
              "base": {"serving_default", "serving_with_item_counts", "predict_examples"}}


@pytest.fixture(scope="module")
def run(tiny_demo_run):
    return tiny_demo_run[0]


@pytest.fixture(scope="module")
def server(run):
    options = production_options({"/models": str(run / "saved_models")})
    assert options.enable_batching and options.batching_parameters_file.endswith(
        "serving/batching.config")
    with ModelServer(options) as running:
        yield running


@pytest.fixture(scope="module")
def clients(server):
    grpc_client = GrpcClient(f"127.0.0.1:{server.grpc_port}")
    yield {"rest": RestClient(f"http://127.0.0.1:{server.rest_port}", retries=0),
           "grpc": grpc_client}
    grpc_client.close()


@pytest.fixture(scope="module")
def request_from_log(run):
    return logged_request(str(run / "data"), str(run / "work"), candidates=30)


def _prepared_runs(server, model: str) -> frozenset:
    with server.manager.servable(model, None, None) as servable:
        return servable.prepared_runs


def test_warmup_prepares_every_signature_before_its_first_request(run, request_from_log):
    for model, signatures in SIGNATURES.items():
        path = next((run / "saved_models" / model).glob("[0-9]*")) / WARMUP_FILE
        logged = [prediction_log_pb2.PredictionLog.FromString(record).predict_log.request
                  for record in tf.data.TFRecordDataset(str(path)).as_numpy_iterator()]
        assert {request.model_spec.signature_name for request in logged} == signatures
    with ModelServer(production_options({"/models": str(run / "saved_models")})) as fresh, \
            GrpcClient(f"127.0.0.1:{fresh.grpc_port}") as client:
        prepared = {model: _prepared_runs(fresh, model) for model in SIGNATURES}
        assert len(prepared["urm"]) == 5 and len(prepared["base"]) == 3
        states = user_states(client, "urm", request_from_log)
        score_candidates(client, "urm", request_from_log, states)
        item_dim = load_cached_metadata(str(run / "work"))["item_dim"]
        score_candidates(client, "urm", request_from_log, states, item_vectors=np.ones(
            (request_from_log.item_ids.size, item_dim), np.float32))
        score_candidates(client, "base", request_from_log)
        counts = np.zeros((request_from_log.item_ids.size, features.COUNT_SIZE), np.float32)
        for model in SIGNATURES:
            score_candidates(client, model, request_from_log,
                             states if model == "urm" else None, item_counts={
                                 features.ITEM_COUNTS: counts, features.CATEGORY_COUNTS: counts})
        examples = next(iter(tf.data.TFRecordDataset(
            sorted(tf.io.gfile.glob(str(run / "work" / "cached" / "eval" / "*"))),
            compression_type="GZIP").batch(5))).numpy()
        client.predict("urm", {"examples": examples.astype(object)},
                       signature_name="predict_examples")
        assert {model: _prepared_runs(fresh, model) for model in SIGNATURES} == prepared
        # The observation can fail: a run fetching fewer outputs is a new run to prepare.
        client.predict_request("base", candidate_rows(request_from_log.user, {
            features.ITEM_ID: request_from_log.item_ids}), output_filter=["click_prob"])
        assert len(_prepared_runs(fresh, "base")) == 4


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_the_documented_form_is_served_with_batching_on(clients, protocol, request_from_log):
    client = clients[protocol]
    scores = score_user(client, "urm", request_from_log)
    assert scores["click_prob"].shape == (30,) and ((scores["click_prob"] > 0)
                                                   & (scores["click_prob"] < 1)).all()
    assert score_candidates(client, "base", request_from_log)["order_prob"].shape == (30,)


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
def test_one_user_row_beside_the_candidates_is_refused_as_tf_serving_does(
        clients, protocol, request_from_log):
    client = clients[protocol]
    states = user_states(client, "urm", request_from_log)
    with pytest.raises(ServingClientError) as refused:
        client.predict("urm", {**request_from_log.user, **states,
                               features.ITEM_ID: request_from_log.item_ids})
    code = 400 if protocol == "rest" else grpc.StatusCode.INVALID_ARGUMENT
    assert (refused.value.code, refused.value.message) == (code, UNEQUAL)


@pytest.mark.parametrize("model", ["urm", "base"])
def test_a_request_built_from_the_raw_log_scores_what_the_evaluation_scored(
        run, clients, model):
    work, data = str(run / "work"), str(run / "data")
    predictions = dict(np.load(run / "work" / "predictions" / f"{model}.npz"))
    with_history = np.flatnonzero(predictions[features.HIST_LEN] >= 3)
    checked = 0
    logged_counts = LoggedItemCounts(data, load_preprocess_metadata(work)["count_lookback_days"])
    for request_id in dict.fromkeys(predictions[features.REQUEST_ID][with_history][:40]):
        rows = np.flatnonzero(predictions[features.REQUEST_ID] == request_id)
        user_id = str(predictions[features.USER_ID][rows[0]])
        events = user_events(data, user_id)
        request_ts = next(event["ts"] for event in events if event["request_id"] == request_id)
        metadata = load_preprocess_metadata(work)
        request = build_request(user_id, events, str(request_id), request_ts,
                                predictions[features.ITEM_ID][rows], metadata["max_seq_len"],
                                metadata["count_lookback_days"])
        # The evaluation scored the item counts as of the request's day; the served table
        # holds them as of the log's end, so the logged day's counts are sent with the request.
        item_counts = logged_counts.as_of(predictions[features.ITEM_ID][rows], request_ts)
        assert int((request.user[features.HIST_ITEM_IDS] != b"").sum()) == \
            predictions[features.HIST_LEN][rows[0]]
        states = user_states(clients["grpc"], model, request) if model == "urm" else None
        scores = score_candidates(clients["grpc"], model, request, states,
                                  item_counts=item_counts)
        for output in ("click_prob", "order_prob"):
            np.testing.assert_allclose(scores[output], predictions[output][rows],
                                       rtol=1e-5, atol=1e-7)
        checked += 1
    assert checked >= 3

