"""Served arms on the tiny demo run, through a real model-server process started with the
production configs (serving/): the served scores are what the offline evaluation scored, a
model that ignores the user ranks like the popularity arm, and a served arm's failed requests
are counted and reported, never dropped."""
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.ab.experiment import AbSettings, run_ab
from ppm_tf.ab.production_server import ProductionServer, production_flags
from ppm_tf.ab.replay import eval_days, replay_eval_days
from ppm_tf.ab.served_arms import (ServedArm, make_clients, request_contexts,
                                   score_served_arms)
from ppm_tf.ab.table import ab_table_lines
from ppm_tf.data import raw_files
from ppm_tf.data.tfrecords import load_preprocess_metadata, read_split
from ppm_tf.errors import StageError
from ppm_tf.export.requests import LoggedItemCounts
from ppm_tf.serving.deployment import REPOSITORY_SERVING_DIR

pytestmark = pytest.mark.slow
NEEDS_HISTORY = "this ranker needs a behaviour history"


@pytest.fixture(scope="module")
def run(tiny_demo_run):
    out = tiny_demo_run[0]
    return {"data": str(out / "data"), "work": str(out / "work"),
            "saved_models": str(out / "saved_models")}


class ItemOnlyRanker(tf.Module):
    """A ranker whose scores ignore the user: a fixed score per item, served with the
    ``serving_with_item_counts`` inputs of ``base`` (counts ignored). Optionally it refuses
    (INVALID_ARGUMENT, raised by the graph inside the server) requests of users without a
    behaviour history."""

    def __init__(self, item_scores: dict[str, float], max_seq_len: int, needs_history: bool):
        super().__init__()
        self.table = tf.lookup.StaticHashTable(tf.lookup.KeyValueTensorInitializer(
            tf.constant(list(item_scores)), tf.constant(list(item_scores.values()), tf.float32)),
            default_value=0.0)
        self.needs_history = needs_history
        self.serve = tf.function(self._serve, input_signature=[
            tf.TensorSpec([None], tf.string, name=features.USER_ID),
            tf.TensorSpec([None], tf.string, name=features.ITEM_ID),
            tf.TensorSpec([None, max_seq_len], tf.string, name=features.HIST_ITEM_IDS),
            tf.TensorSpec([None, max_seq_len], tf.int64, name=features.HIST_TS),
            tf.TensorSpec([None, max_seq_len], tf.int64, name=features.HIST_ACTIONS),
            tf.TensorSpec([None], tf.int64, name=features.TS),
            *(tf.TensorSpec([None, features.COUNT_SIZE], tf.float32, name=name)
              for name in features.COUNT_FEATURES)])

    def _serve(self, user_id, item_id, hist_item_ids, hist_ts, hist_actions, ts, *counts):
        scores = self.table.lookup(item_id)
        if self.needs_history:
            check = tf.debugging.assert_positive(hist_ts[:, 0], message=NEEDS_HISTORY)
            with tf.control_dependencies([check]):
                scores = tf.identity(scores)
        return {"click_prob": scores, "order_prob": scores}


def _export_item_only(run, saved_models, needs_history: bool) -> None:
    """Scores = log(1 + logged clicks before the first eval day): the popularity arm's ranking
    of that day, counted here from the raw events."""
    world = raw_files.read_world(run["data"])
    first_eval = eval_days(world)[0]
    clicks = defaultdict(int)
    for event in raw_files.read_jsonl(raw_files.RawLayout(run["data"]).events_pattern):
        if int(event["request_id"][1:4]) < first_eval:
            clicks[event["item_id"]] += event["click"]
    ranker = ItemOnlyRanker({item: float(np.log1p(count)) for item, count in clicks.items()},
                            load_preprocess_metadata(run["work"])["max_seq_len"], needs_history)
    tf.saved_model.save(ranker, str(saved_models / "base" / "1"),
                        signatures={"serving_with_item_counts": ranker.serve})


def test_served_scores_are_the_evaluated_ones_over_grpc_and_rest_sent_one_or_several_at_once(
        run, tmp_path):
    world = raw_files.read_world(run["data"])
    requests = replay_eval_days(world, days=1, pool_size=30, seed=0)
    contexts = request_contexts(run["work"], set(requests.request_ids.tolist()))
    daily_counts = LoggedItemCounts(
        run["data"], load_preprocess_metadata(run["work"])["count_lookback_days"])
    with ProductionServer(REPOSITORY_SERVING_DIR, run["saved_models"], ["urm", "base"],
                          str(tmp_path)) as server:
        for transport in ("grpc", "rest"):
            scoring, metadata = make_clients(transport, server.grpc_target, server.rest_url)
            for name in ("urm", "base"):
                arm = ServedArm(name, scoring, metadata, daily_counts)
                assert arm.uses_user_states == (name == "urm")
                offline = np.load(f"{run['work']}/predictions/{name}.npz")
                offline = dict(zip(zip(offline["request_id"], offline["item_id"]),
                                   offline["click_prob"]))
                for row in range(20):
                    request_id = requests.request_ids[row]
                    scores = arm.scores(contexts[request_id], requests.pool_item_ids[row])
                    assert scores.shape == (30,)
                    logged = requests.pool_item_ids[row, :5]
                    np.testing.assert_allclose(
                        scores[:5], [offline[(request_id, item)] for item in logged],
                        rtol=1e-5, atol=1e-6, err_msg=f"{name} over {transport}")
            arms = [ServedArm(name, scoring, metadata, daily_counts) for name in ("urm", "base")]
            sent = [score_served_arms(arms, requests.request_ids[:20],
                                      [contexts[request_id]
                                       for request_id in requests.request_ids[:20]],
                                      requests.pool_item_ids[:20], clients)
                    for clients in (1, 3)]
            for name in ("urm", "base"):
                np.testing.assert_allclose(sent[1][0][name], sent[0][0][name], rtol=1e-5,
                                           atol=1e-6, err_msg=f"{name} over {transport}")
                assert np.isfinite(sent[1][1][name]).all()  # a latency for every request


def test_the_server_runs_the_compose_flags_and_configs(run, tmp_path):
    flags = production_flags(REPOSITORY_SERVING_DIR, run["saved_models"], ["base"],
                             str(tmp_path))
    values = dict(flag[2:].split("=", 1) for flag in flags)
    assert values["enable_batching"] == "true"
    assert values["batching_parameters_file"] == str(tmp_path / "batching.config")
    assert values["monitoring_config_file"] == str(tmp_path / "monitoring.config")
    model_list = (tmp_path / "models.config").read_text()
    assert f'base_path: "{run["saved_models"]}/base"' in model_list
    assert '"urm"' not in model_list  # only the arms' entries are served
    shipped = Path(REPOSITORY_SERVING_DIR)
    assert (tmp_path / "batching.config").read_text() == \
        (shipped / "batching.config").read_text()
    with pytest.raises(StageError, match=r"does not serve \['qm_ep'\]"):
        production_flags(REPOSITORY_SERVING_DIR, run["saved_models"], ["qm_ep"],
                         str(tmp_path / "again"))


def test_a_model_that_ignores_the_user_ranks_like_popularity(run, tmp_path):
    _export_item_only(run, tmp_path, needs_history=False)
    result = run_ab(AbSettings(work=run["work"], data=run["data"], out=str(tmp_path / "ab"),
                               saved_models=str(tmp_path), arms=("base", "popularity", "random"),
                               control="popularity", days=1, pool=50, resamples=300))
    assert result["errors"]["base"]["failed_requests"] == 0
    assert result["latency_ms"]["base"]["requests"] == result["requests"]
    for metric, difference in result["comparison"]["differences"]["base"].items():
        assert difference["value"] == pytest.approx(0, abs=1e-9), metric
    low, high = result["comparison"]["differences"]["random"]["clicks_per_request"]["ci"]
    assert high < 0


def test_a_served_arm_that_fails_some_requests_counts_and_reports_them(run, tmp_path):
    _export_item_only(run, tmp_path, needs_history=True)
    result = run_ab(AbSettings(work=run["work"], data=run["data"], out=str(tmp_path / "ab"),
                               saved_models=str(tmp_path), arms=("base", "oracle"), days=2,
                               pool=20, resamples=200))
    replayed = set()
    world = raw_files.read_world(run["data"])
    first = eval_days(world)[0]
    without_history = set()
    for batch in read_split(run["work"], "eval", 1024,
                            features=(features.REQUEST_ID, features.HIST_LEN)):
        for request_id, length in zip(batch[features.REQUEST_ID].numpy().tolist(),
                                      batch[features.HIST_LEN].numpy().tolist()):
            request_id = request_id.decode()
            if int(request_id[1:4]) < first + 2:
                replayed.add(request_id)
                if length == 0:
                    without_history.add(request_id)
    errors = result["errors"]["base"]
    assert 0 < len(without_history) < len(replayed)
    assert result["requests"] == errors["requests"] == len(replayed)  # none dropped
    assert errors["failed_requests"] == len(without_history)
    assert errors["by_code"] == {"INVALID_ARGUMENT": len(without_history)}
    assert NEEDS_HISTORY in errors["examples"][0]
    assert errors["examples"][0].split(":")[0] in without_history
    assert result["latency_ms"]["base"]["requests"] == len(replayed) - len(without_history)
    text = "\n".join(ab_table_lines(result))
    assert f"{len(without_history)}/{len(replayed)}" in text and "INVALID_ARGUMENT" in text
