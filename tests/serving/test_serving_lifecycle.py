"""Versions coming and going while the server serves: hot swap, partial copies, broken
versions, removal, warm-up, config-file reload, and the process entry point.

Versions are TF Serving's fixture models copied into a temporary base path: half_plus_two
(x/2 + 2) as version 123 and half_plus_three (x/2 + 3) as version 124, so every answer shows
which version produced it.
"""
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf
from tensorflow_serving.apis import predict_pb2, prediction_log_pb2, regression_pb2

from ppm_tf.serving import warmup
from ppm_tf.serving.client import GrpcClient, RestClient
from ppm_tf.serving.server import main
from ppm_tf.serving.tensors import ndarray_to_tensor_proto
from ppm_tf.serving.testing import free_port, publish_version, running_server, wait_until

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "tf_serving"
PLUS_TWO = FIXTURES / "saved_model_half_plus_two_2_versions" / "00000123"
PLUS_THREE = FIXTURES / "saved_model_half_plus_three" / "00000123"
ONE = {"x": np.array([[1.0]], np.float32)}  # half_plus_two: 2.5, half_plus_three: 3.5

pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(),
                                reason=f"TF Serving test fixtures not found at {FIXTURES}")


def _states(server, model="hp") -> dict[int, str]:
    return {status.version: status.state for status in server.manager.version_status(model)}


def _wait_for_states(server, expected: dict, model="hp", timeout_s=20.0) -> None:
    wait_until(lambda: all(_states(server, model).get(v) == s for v, s in expected.items()),
               timeout_s, what=f"states {expected} (now {_states(server, model)})")


@pytest.mark.slow
def test_new_version_swaps_in_under_load_without_a_failed_request(tmp_path):
    base = tmp_path / "hp"
    publish_version(str(PLUS_TWO), str(base), 123)
    with running_server(model_name="hp", model_base_path=str(base),
                        file_system_poll_wait_seconds=0.1) as server:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}", retries=0)
        stub = GrpcClient(f"127.0.0.1:{server.grpc_port}", retries=0)
        answers, failures = [], []
        swapped = threading.Event()

        def hammer(call, limit=3000, after_swap=30):
            for _ in range(limit):
                try:
                    answers.append(call())
                except Exception as error:  # every failure is a finding; keep counting
                    failures.append(repr(error))
                if swapped.is_set():
                    after_swap -= 1
                    if after_swap == 0:
                        return

        def over_rest():
            return "rest", None, rest.predict("hp", ONE)["y"].item()

        def over_grpc():
            response = stub.predict_request("hp", ONE)
            return "grpc", response.model_spec.version.value, response.outputs["y"].float_val[0]

        threads = [threading.Thread(target=hammer, args=(call,)) for call in
                   (over_rest, over_grpc, over_rest)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(answers) >= 30, what="requests before the swap")
        publish_version(str(PLUS_THREE), str(base), 124)  # copy aside, then one rename
        _wait_for_states(server, {124: "AVAILABLE", 123: "END"})
        swapped.set()
        for thread in threads:
            thread.join(timeout=60)
        stub.close()
    assert failures == []
    assert {value for _, _, value in answers} <= {2.5, 3.5}
    assert {(version, value) for api, version, value in answers if api == "grpc"} <= {
        (123, 2.5), (124, 3.5)}  # one version answers a whole request
    assert [value for _, _, value in answers[-10:]] == [3.5] * 10


@pytest.mark.slow
def test_half_written_version_is_ignored_until_complete(tmp_path):
    base = tmp_path / "hp"
    publish_version(str(PLUS_TWO), str(base), 123)
    with running_server(model_name="hp", model_base_path=str(base),
                        file_system_poll_wait_seconds=0.05) as server:
        partial = base / "124"
        (partial / "variables").mkdir(parents=True)
        shutil.copy(PLUS_THREE / "saved_model.pb", partial)
        for name in os.listdir(PLUS_THREE / "variables"):
            if name != "variables.index":
                shutil.copy(PLUS_THREE / "variables" / name, partial / "variables")
        time.sleep(0.5)  # ten polls
        assert _states(server) == {123: "AVAILABLE"}
        with server.manager.servable("hp") as servable:
            assert servable.version == 123
        shutil.copy(PLUS_THREE / "variables" / "variables.index", partial / "variables")
        _wait_for_states(server, {124: "AVAILABLE", 123: "END"})


@pytest.mark.slow
def test_broken_version_is_reported_and_the_old_one_keeps_serving(tmp_path):
    base = tmp_path / "hp"
    publish_version(str(PLUS_TWO), str(base), 123)
    staging = tmp_path / "broken"
    shutil.copytree(PLUS_THREE, staging)
    (staging / "saved_model.pb").write_bytes(b"not a SavedModel")
    with running_server(model_name="hp", model_base_path=str(base),
                        file_system_poll_wait_seconds=0.05) as server:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}")
        publish_version(str(staging), str(base), 124)
        wait_until(lambda: _states(server).get(124) == "END", what="the broken load")
        (broken,) = [s for s in server.manager.version_status("hp") if s.version == 124]
        assert broken.error_code != grpc.StatusCode.OK and broken.error_message
        status = {v["version"]: v for v in rest.status("hp")["model_version_status"]}
        assert status["124"]["state"] == "END" and status["124"]["status"]["error_code"] != "OK"
        assert status["123"]["state"] == "AVAILABLE"
        assert rest.predict("hp", ONE)["y"].item() == 2.5
        shutil.rmtree(base / "124")  # fix it: a good copy under the same number is retried
        publish_version(str(PLUS_THREE), str(base), 124)
        _wait_for_states(server, {124: "AVAILABLE", 123: "END"})
        assert rest.predict("hp", ONE)["y"].item() == 3.5


@pytest.mark.slow
def test_removing_a_version_unloads_it(tmp_path):
    base = tmp_path / "hp"
    publish_version(str(PLUS_TWO), str(base), 123)
    publish_version(str(PLUS_THREE), str(base), 124)
    config_file = tmp_path / "models.config"
    config_file.write_text(f'model_config_list {{ config {{ name: "all" base_path: "{base}" '
                           'model_platform: "tensorflow" model_version_policy { all {} } } '
                           f'config {{ name: "hp" base_path: "{base}" '
                           'model_platform: "tensorflow" } }')
    with running_server(model_config_file=str(config_file),
                        file_system_poll_wait_seconds=0.05) as server:
        rest = RestClient(f"http://127.0.0.1:{server.rest_port}")
        _wait_for_states(server, {123: "AVAILABLE", 124: "AVAILABLE"}, model="all")
        assert _states(server) == {124: "AVAILABLE"}
        shutil.rmtree(base / "124")
        _wait_for_states(server, {124: "END", 123: "AVAILABLE"}, model="all")
        _wait_for_states(server, {124: "END", 123: "AVAILABLE"})  # latest rolls back to 123
        assert rest.predict("all", ONE)["y"].item() == 2.5
        assert rest.predict("hp", ONE)["y"].item() == 2.5
        with pytest.raises(Exception, match="404"):
            rest.predict("all", ONE, version=124)


def _warmup_file(version_dir: Path, signature_name: str = "") -> None:
    path = version_dir / "assets.extra" / "tf_serving_warmup_requests"
    path.parent.mkdir()
    predict = predict_pb2.PredictRequest()
    predict.model_spec.signature_name = signature_name
    predict.inputs["x"].CopyFrom(ndarray_to_tensor_proto(np.array([[1.0]], np.float32)))
    regress = regression_pb2.RegressionRequest()
    regress.model_spec.signature_name = "regress_x_to_y"
    regress.input.example_list.examples.add().features.feature["x"].float_list.value.append(1.0)
    with tf.io.TFRecordWriter(str(path)) as writer:
        writer.write(prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=predict)).SerializeToString())
        writer.write(prediction_log_pb2.PredictionLog(
            regress_log=prediction_log_pb2.RegressLog(request=regress)).SerializeToString())


def test_warmup_requests_are_replayed_and_a_failing_warmup_fails_the_load(tmp_path):
    good, bad = tmp_path / "good", tmp_path / "bad"
    shutil.copytree(PLUS_TWO, good)
    shutil.copytree(PLUS_TWO, bad)
    _warmup_file(good)
    _warmup_file(bad, signature_name="nope")
    base = tmp_path / "hp"
    publish_version(str(good), str(base), 1)
    publish_version(str(bad), str(base), 2)
    config_file = tmp_path / "models.config"
    config_file.write_text(f'model_config_list {{ config {{ name: "hp" base_path: "{base}" '
                           'model_platform: "tensorflow" model_version_policy { all {} } } }')
    with running_server(model_config_file=str(config_file),
                        file_system_poll_wait_seconds=0) as server:
        assert _states(server) == {1: "AVAILABLE", 2: "END"}
        (failed,) = [s for s in server.manager.version_status("hp") if s.version == 2]
        assert 'Serving signature key "nope" not found.' in failed.error_message
        with server.manager.servable("hp", version=1) as servable:
            assert warmup.replay(servable) == 2


@pytest.mark.slow
def test_edited_model_config_file_is_applied(tmp_path):
    config_file = tmp_path / "models.config"
    line = ('config {{ name: "{}" base_path: "{}" model_platform: "tensorflow" }}')
    first = line.format("two", FIXTURES / "saved_model_half_plus_two_cpu")
    config_file.write_text(f"model_config_list {{ {first} }}")
    with running_server(model_config_file=str(config_file), rest_api_port=None,
                        model_config_file_poll_wait_seconds=0.1,
                        file_system_poll_wait_seconds=0) as server:
        assert server.manager.model_names() == ["two"]
        config_file.write_text("not a config")  # a broken edit is logged and ignored
        time.sleep(0.3)
        assert server.manager.model_names() == ["two"]
        second = line.format("three", FIXTURES / "saved_model_half_plus_three")
        config_file.write_text(f"model_config_list {{ {first} {second} }}")
        wait_until(lambda: server.manager.available_versions("three") == [123],
                   what="the added model")


def test_main_refuses_a_bad_model_config_with_a_clear_error(caplog):
    code = main([f"--model_config_file={FIXTURES / 'bad_model_config.txt'}",
                 f"--port={free_port()}"])
    assert code == 1
    assert "Failed to start server" in caplog.text and "Invalid protobuf file" in caplog.text
    assert "bad_model_config.txt" in caplog.text
    assert main([f"--port={free_port()}"]) == 1
    assert "model_base_path and server_options.model_config_file are empty" in caplog.text


@pytest.mark.slow
def test_main_serves_both_apis_and_stops_cleanly_on_sigterm():
    grpc_port, rest_port = free_port(), free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "ppm_tf.serving", f"--port={grpc_port}",
         f"--rest_api_port={rest_port}", "--model_name=hp",
         f"--model_base_path={PLUS_TWO.parent}", "--file_system_poll_wait_seconds=1"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        rest = RestClient(f"http://127.0.0.1:{rest_port}", retries=0, timeout_s=5)

        def ready() -> bool:
            assert process.poll() is None, "the server exited early"
            try:
                return rest.status("hp")["model_version_status"][0]["state"] == "AVAILABLE"
            except Exception:
                return False

        wait_until(ready, timeout_s=120, interval_s=0.25, what="server start")
        assert rest.predict("hp", ONE)["y"].item() == 2.5
        with GrpcClient(f"127.0.0.1:{grpc_port}") as client:
            assert client.predict("hp", ONE)["y"].item() == 2.5
        process.send_signal(signal.SIGTERM)
        _, log = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0, log
    assert "Shutting down the model server" in log and "Unloaded servable version" in log
