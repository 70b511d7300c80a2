"""The local server's REST API against TF Serving's own test models, over real HTTP.

One server on 127.0.0.1 (ephemeral port) serves TF Serving's half_plus_two (both versions,
with labels), half_plus_three, half_plus_two_cpu as "default", and a small TF2 SavedModel with
several typed inputs and outputs. Answers must match what TF Serving answers: values,
JSON shapes, metadata (the fixture files), status codes and ``{"error": …}`` bodies.
"""
import base64
import http.client
import json
import socket
import threading
import time
from pathlib import Path

import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf.serving import config
from ppm_tf.serving.testing import running_server

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "tf_serving"
TWO_VERSIONS = "saved_model_half_plus_two_2_versions"
BATCHING_CONFIG = Path(__file__).resolve().parents[2] / "serving" / "batching.config"


class _Toy(tf.Module):
    """A TF2 SavedModel with int64/float/string inputs and several outputs."""

    @tf.function(input_signature=[tf.TensorSpec([None], tf.int64, name="ids"),
                                  tf.TensorSpec([None, 2], tf.float32, name="features"),
                                  tf.TensorSpec([None], tf.string, name="tags")])
    def serve(self, ids, features, tags):
        return {"score": tf.reduce_sum(features, axis=1) + tf.cast(ids, tf.float32),
                "tag_bytes": tags, "tag_length": tf.strings.length(tags)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.float16, name="h")])
    def half(self, h):
        return {"doubled": h * 2}


def _model(name: str, base_path, policy: str = "", labels: dict | None = None) -> str:
    label_text = "".join(f' version_labels {{ key: "{k}" value: {v} }}'
                         for k, v in (labels or {}).items())
    return (f'config {{ name: "{name}" base_path: "{base_path}" model_platform: "tensorflow" '
            f'{policy}{label_text} }}')


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not FIXTURES.is_dir():
        pytest.skip(f"TF Serving test fixtures not found at {FIXTURES}")
    toy_base = tmp_path_factory.mktemp("toy")
    toy = _Toy()
    tf.saved_model.save(toy, str(toy_base / "1"),
                        signatures={"serving_default": toy.serve, "half": toy.half})
    path = tmp_path_factory.mktemp("config") / "models.config"
    path.write_text("model_config_list { " + " ".join([
        _model(TWO_VERSIONS, FIXTURES / TWO_VERSIONS, "model_version_policy { all {} }",
               {"stable": 123, "canary": 124}),
        _model("half_plus_three", FIXTURES / "saved_model_half_plus_three"),
        _model("default", FIXTURES / "saved_model_half_plus_two_cpu"),
        _model("toy", toy_base)]) + " }")
    monitoring = path.parent / "monitoring.config"
    monitoring.write_text('prometheus_config { enable: true path: "/metrics" }')
    with running_server(model_config_file=str(path), monitoring_config_file=str(monitoring),
                        file_system_poll_wait_seconds=0, max_request_bytes=1 << 20,
                        enable_batching=True,  # the production flags
                        batching_parameters_file=str(BATCHING_CONFIG)) as running:
        yield running


def _http(server, method: str, path: str, body=None, raw: bool = False):
    connection = http.client.HTTPConnection("127.0.0.1", server.rest_port, timeout=10)
    try:
        data = body if isinstance(body, bytes) or body is None else json.dumps(body).encode()
        connection.request(method, path, body=data)
        response = connection.getresponse()
        payload = response.read()
    finally:
        connection.close()
    if raw:
        return response.status, payload
    assert response.getheader("Content-Type") == "application/json"
    return response.status, json.loads(payload)


def _fixture_json(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


def test_row_format_predicts_half_plus_two(server):
    status, body = _http(server, "POST", f"/v1/models/{TWO_VERSIONS}:predict",
                         {"instances": [[1.0], [2.0], [5.0]]})
    assert (status, body) == (200, {"predictions": [[2.5], [3.0], [4.5]]})


def test_columnar_format_answers_outputs(server):
    status, body = _http(server, "POST", f"/v1/models/{TWO_VERSIONS}:predict",
                         {"inputs": {"x": [[1.0], [2.0], [5.0]]}})
    assert (status, body) == (200, {"outputs": [[2.5], [3.0], [4.5]]})
    assert _http(server, "POST", "/v1/models/default:predict", {"inputs": [[4.0]]}) == (
        200, {"outputs": [[4.0]]})


def test_signature_name_selects_another_signature(server):
    status, body = _http(server, "POST", f"/v1/models/{TWO_VERSIONS}:predict",
                         {"signature_name": "regress_x2_to_y3", "instances": [[1.0], [2.0]]})
    assert (status, body) == (200, {"predictions": [[3.5], [4.0]]})


def test_versions_and_labels_route_to_that_version(server):
    for version in (123, 124):
        status, body = _http(server, "POST",
                             f"/v1/models/{TWO_VERSIONS}/versions/{version}:predict",
                             {"instances": [[1.0]]})
        assert (status, body) == (200, {"predictions": [[2.5]]})
    assert _http(server, "GET", f"/v1/models/{TWO_VERSIONS}/metadata")[1]["model_spec"][
        "version"] == "124"  # latest
    assert _http(server, "GET", f"/v1/models/{TWO_VERSIONS}/labels/stable/metadata")[1][
        "model_spec"]["version"] == "123"
    assert _http(server, "POST", f"/v1/models/{TWO_VERSIONS}/labels/canary:predict",
                 {"instances": [[3.0]]}) == (200, {"predictions": [[3.5]]})


def test_second_model_is_served_side_by_side(server):
    assert _http(server, "POST", "/v1/models/half_plus_three:predict",
                 {"instances": [1.0, 2.0]}) == (200, {"predictions": [3.5, 4.0]})


def test_metadata_equals_tf_servings_answer(server):
    status, body = _http(server, "GET", f"/v1/models/{TWO_VERSIONS}/versions/123/metadata")
    assert status == 200
    assert body == _fixture_json(f"{TWO_VERSIONS}_metadata.json")
    assert _http(server, "GET", "/v1/models/default/metadata") == (
        200, _fixture_json("half_plus_two_model_metadata.json"))


def test_status_lists_available_versions_newest_first(server):
    assert _http(server, "GET", "/v1/models/default") == (200, {"model_version_status": [
        {"version": "123", "state": "AVAILABLE",
         "status": {"error_code": "OK", "error_message": ""}}]})
    status, body = _http(server, "GET", f"/v1/models/{TWO_VERSIONS}")
    assert [(v["version"], v["state"]) for v in body["model_version_status"]] == [
        ("124", "AVAILABLE"), ("123", "AVAILABLE")]
    status, body = _http(server, "GET", f"/v1/models/{TWO_VERSIONS}/versions/123")
    assert [v["version"] for v in body["model_version_status"]] == ["123"]


def test_classify_and_regress(server):
    assert _http(server, "POST", f"/v1/models/{TWO_VERSIONS}:regress",
                 {"signature_name": "regress_x_to_y", "examples": [{"x": 2.0}, {"x": 4.0}]}) == (
        200, {"results": [3.0, 4.0]})
    assert _http(server, "POST", f"/v1/models/{TWO_VERSIONS}:classify",
                 {"signature_name": "classify_x_to_y", "examples": [{"x": 2.0}]}) == (
        200, {"results": [[["", 3.0]]]})


@pytest.mark.parametrize("method, path, body, code, message", [
    ("POST", "/v1/models/nope:predict", {"instances": [1.0]}, 404,
     "Servable not found for request: Latest(nope)"),
    ("POST", f"/v1/models/{TWO_VERSIONS}/versions/99:predict", {"instances": [1.0]}, 404,
     f"Servable not found for request: Specific({TWO_VERSIONS}, 99)"),
    ("GET", "/v1/models/nope", None, 404, "Could not find any versions of model nope"),
    ("GET", f"/v1/models/{TWO_VERSIONS}/versions/99", None, 404,
     f"Could not find version 99 of model {TWO_VERSIONS}"),
    ("GET", "/v1/models/nope/metadata", None, 404, "Servable not found for request"),
    ("POST", f"/v1/models/{TWO_VERSIONS}:predict", b"", 400,
     "JSON Parse error: The document is empty"),
    ("POST", f"/v1/models/{TWO_VERSIONS}:predict", b"instances = [1, 2]", 400,
     "JSON Parse error: Invalid value"),
    ("POST", f"/v1/models/{TWO_VERSIONS}:predict", {"instances": ["x", "y"]}, 400,
     "not of expected type: float"),
    ("POST", f"/v1/models/{TWO_VERSIONS}:predict", {"signature_name": "nope", "inputs": [1.0]},
     400, 'Serving signature name: "nope" not found in signature def'),
    ("POST", f"/v1/models/{TWO_VERSIONS}:predict", {"signature_name": 100}, 400,
     "'signature_name' key must be a string value."),
    ("POST", f"/v1/models/{TWO_VERSIONS}:predict", {"instances": [{"y": 1.0}]}, 400,
     "does not have named input: y"),
    ("POST", "/v1/models/toy:predict", {"inputs": {"ids": [1], "features": [[1.0, 2.0]]}},
     400, "Missing named input: tags in 'inputs' object."),
    ("POST", f"/v1/models/{TWO_VERSIONS}/labels/nope:predict", {"instances": [1.0]}, 400,
     "Unrecognized servable version label: nope"),
    ("POST", "/v1/models/toy:predict", {"signature_name": "half", "inputs": [1.0]}, 501,
     "Conversion of JSON Value: 1.0 to type: half"),
    ("GET", "/v1/models", None, 400, "Missing model name in request."),
    ("GET", "/v1/foo", None, 400, "Malformed request: GET /v1/foo"),
    ("GET", f"/v1/models/{TWO_VERSIONS}:predict", None, 400, "Malformed request"),
    ("POST", f"/v1/models/{TWO_VERSIONS}/versions/HELLO:regress", None, 400,
     "Malformed request"),
    ("POST", f"/v1/models/{TWO_VERSIONS}:PREDICT", {"instances": [1.0]}, 400,
     "Malformed request"),
    ("POST", f"/v1/models/{TWO_VERSIONS}/versions/18446744073709551615:predict", None, 400,
     "Failed to convert version"),
    ("DELETE", f"/v1/models/{TWO_VERSIONS}", None, 400, "Malformed request"),
    ("GET", "/index.html", None, 404, "Not found"),
])
def test_errors_have_tf_servings_code_and_shape(server, method, path, body, code, message):
    status, document = _http(server, method, path, body)
    assert status == code
    assert list(document) == ["error"] and message in document["error"]


def test_typed_inputs_and_several_outputs_in_both_formats(server):
    status, body = _http(server, "POST", "/v1/models/toy:predict", {"instances": [
        {"ids": 1, "features": [0.5, 0.25], "tags": "ab"},
        {"ids": 2, "features": [1.0, 1.0], "tags": {"b64": base64.b64encode(b"\x00\xff").decode()}},
    ]})
    assert status == 200
    assert body == {"predictions": [
        {"score": 1.75, "tag_bytes": {"b64": "YWI="}, "tag_length": 2},
        {"score": 4.0, "tag_bytes": {"b64": "AP8="}, "tag_length": 2}]}
    status, body = _http(server, "POST", "/v1/models/toy:predict", {"inputs": {
        "ids": [3], "features": [[0.1, 0.2]], "tags": ["xyz"]}})
    assert status == 200
    assert body["outputs"]["tag_length"] == [3] and body["outputs"]["tag_bytes"] == [
        {"b64": "eHl6"}]
    assert body["outputs"]["score"] == [3.3]  # float32 in its shortest form


def test_int64_input_refuses_decimals(server):
    status, body = _http(server, "POST", "/v1/models/toy:predict", {"inputs": {
        "ids": [1.5], "features": [[0.0, 0.0]], "tags": ["a"]}})
    assert status == 400 and "not of expected type: int64" in body["error"]


def test_body_over_the_limit_is_refused_without_reading_it(server):
    status, payload = _http(server, "POST", f"/v1/models/{TWO_VERSIONS}:predict",
                            b" " * (2 << 20), raw=True)
    assert status == 413 and b"exceeds the limit" in payload


def test_prometheus_metrics_count_requests(server):
    _http(server, "POST", f"/v1/models/{TWO_VERSIONS}:predict", {"instances": [[1.0]]})
    _http(server, "POST", "/v1/models/made_up_model:predict", {"instances": [1.0]})
    status, payload = _http(server, "GET", "/metrics", raw=True)
    text = payload.decode()
    assert status == 200
    assert f':tensorflow:serving:request_count{{model_name="{TWO_VERSIONS}",status="OK"}}' in text
    assert 'entrypoint="REST"' in text and "made_up_model" not in text
    assert ":tensorflow:cc:saved_model:load_attempt_count" in text


def test_a_slow_client_does_not_block_others(server):
    slow = socket.create_connection(("127.0.0.1", server.rest_port))
    slow.sendall(b"POST /v1/models/default:predict HTTP/1.1\r\nContent-Length: 100\r\n\r\n{")
    try:
        started = time.monotonic()
        assert _http(server, "POST", "/v1/models/default:predict", {"instances": [[2.0]]}) == (
            200, {"predictions": [[3.0]]})
        assert time.monotonic() - started < 5
        assert _http(server, "GET", "/v1/models/default")[0] == 200
    finally:
        slow.close()


def test_concurrent_requests_all_succeed(server):
    failures = []

    def worker(offset: int):
        for i in range(20):
            x = float(offset * 100 + i)
            status, body = _http(server, "POST", "/v1/models/half_plus_three:predict",
                                 {"instances": [x]})
            if (status, body) != (200, {"predictions": [x / 2 + 3]}):
                failures.append((status, body))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []


def test_config_file_fixture_serves_both_models(tmp_path):
    if not FIXTURES.is_dir():
        pytest.skip(f"TF Serving test fixtures not found at {FIXTURES}")
    text = (FIXTURES / "good_model_config.txt").read_text()
    for variable, folder in (("${TEST_HALF_PLUS_TWO_DIR}", "saved_model_half_plus_two_cpu"),
                             ("${TEST_HALF_PLUS_THREE_DIR}", "saved_model_half_plus_three")):
        text = text.replace(variable, str(FIXTURES / folder))
    path = tmp_path / "good_model_config.txt"
    path.write_text(text)
    assert config.load_model_server_config(str(path))
    with running_server(model_config_file=str(path), port=None,
                        file_system_poll_wait_seconds=0) as running:
        assert running.grpc_port is None
        assert _http(running, "POST", "/v1/models/half_plus_two:predict",
                     {"instances": [[1.0]]}) == (200, {"predictions": [[2.5]]})
        assert _http(running, "POST", "/v1/models/half_plus_three:predict",
                     {"instances": [1.0]}) == (200, {"predictions": [3.5]})


@pytest.mark.parametrize("request_line", [
    b"\x16\x03\x01 not http at all\r\n\r\n",  # a TLS hello, or any garbage
    b"GET /v1/models/default\r\n\r\n",  # HTTP/0.9's two-word form
    b"GET\r\n\r\n",
    b"GET /v1/models/default HTTP/x.y\r\n\r\n",
    b"\r\n\r\n",
])
def test_garbage_request_line_gets_400_with_a_status_line(server, request_line):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as garbage:
        garbage.sendall(request_line)
        answer = b""
        while chunk := garbage.recv(4096):  # the server closes the connection after it
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Type: application/json" in head
    assert list(json.loads(body)) == ["error"]


def test_one_empty_line_before_a_request_line_is_skipped(server):
    with socket.create_connection(("127.0.0.1", server.rest_port), timeout=10) as client:
        client.sendall(b"\r\nGET /v1/models/default HTTP/1.1\r\nConnection: close\r\n\r\n")
        answer = b""
        while chunk := client.recv(4096):
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200 ")


def test_slow_clients_holding_every_connection_cannot_lock_out_a_request():
    """As many trickling (one byte at a time) and silent clients as the connection limit; each
    would keep its connection forever under a per-read timeout. The read deadline cuts them
    off, so a normal request is still answered within its client's timeout."""
    if not FIXTURES.is_dir():
        pytest.skip(f"TF Serving test fixtures not found at {FIXTURES}")
    limit = 4
    with running_server(model_name="default",
                        model_base_path=str(FIXTURES / "saved_model_half_plus_two_cpu"),
                        port=None, file_system_poll_wait_seconds=0,
                        rest_api_max_connections=limit, rest_api_read_timeout_in_ms=1000) as running:
        stop = threading.Event()
        cut_off = []

        def slow_client(trickle: bool) -> None:
            with socket.create_connection(("127.0.0.1", running.rest_port)) as connection:
                request = b"POST /v1/models/default:predict HTTP/1.1\r\nContent-Length: 20\r\n"
                for position in range(300):  # 30 s of trickling at most
                    if stop.wait(0.1):
                        return
                    try:
                        if trickle:
                            connection.sendall(request[position % len(request):][:1])
                        elif connection.recv(1, socket.MSG_DONTWAIT) == b"":
                            raise ConnectionResetError
                    except BlockingIOError:
                        continue
                    except OSError:
                        cut_off.append(trickle)
                        return

        clients = [threading.Thread(target=slow_client, args=(n % 2 == 0,)) for n in range(limit)]
        for client in clients:
            client.start()
        try:
            time.sleep(0.3)  # let the slow clients take every connection slot first
            connection = http.client.HTTPConnection("127.0.0.1", running.rest_port, timeout=8)
            connection.request("POST", "/v1/models/default:predict",
                               body=json.dumps({"instances": [[2.0]]}))
            response = connection.getresponse()
            assert (response.status, json.loads(response.read())) == (
                200, {"predictions": [[3.0]]})
            connection.close()
            wait_for = time.monotonic() + 10
            while len(cut_off) < limit and time.monotonic() < wait_for:
                time.sleep(0.05)
            assert sorted(cut_off) == [False] * (limit // 2) + [True] * (limit // 2)
        finally:
            stop.set()
            for client in clients:
                client.join(timeout=5)
