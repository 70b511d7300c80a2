"""Clients for TensorFlow Serving's REST and gRPC APIs (the real server or our local one).

Both are written against TF Serving's public API only: the ``/v1/models`` JSON endpoints, and
the ``PredictionService``/``ModelService`` stubs from ``tensorflow-serving-api``. They send named
tensors (numpy arrays or nested lists), return named numpy arrays, time out, and retry a request
a bounded number of times while the server is UNAVAILABLE (connection refused or reset, HTTP
503) — for instance while a server restarts.

With TF Serving's ``--enable_batching`` every input of a request must share its 0th
dimension, so one user's request for n candidates sends every input with n rows:
``predict_candidates`` takes the per-request inputs once (leading size 1) and repeats them per
candidate.

    rest = RestClient("http://127.0.0.1:8501")
    rest.predict_candidates("base", {"user_id": ["u1"], "hist_item_ids": [hist_ids],
                                     "hist_ts": [hist_ts], "ts": [ts]},
                            {"item_id": ["i1", "i2"]})                  # every input [2, ...]
    grpc_client = GrpcClient("127.0.0.1:8500")
    grpc_client.predict("urm", {"hist_item_ids": [hist_ids], "hist_ts": [hist_ts], "ts": [ts]},
                        signature_name="user_states")                   # one user: [1, ...]
"""
from __future__ import annotations

import base64
import http.client
import json
import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote, urlsplit

import grpc
import numpy as np
from tensorflow_serving.apis import (get_model_metadata_pb2, get_model_status_pb2,
                                     model_management_pb2, model_service_pb2_grpc, predict_pb2,
                                     prediction_service_pb2_grpc)

from ppm_tf.serving import tensors

log = logging.getLogger(__name__)


class ServingClientError(Exception):
    """A request the server refused: ``code`` is the HTTP status (REST) or gRPC status code."""

    def __init__(self, code, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def _model_path(model: str, version: int | None, label: str | None) -> str:
    path = f"/v1/models/{quote(model, safe='')}"
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    if version is not None:
        path += f"/versions/{int(version)}"
    elif label is not None:
        path += f"/labels/{quote(label, safe='')}"
    return path


def _to_json(value):
    """Array-likes as JSON values; bytes become ``{"b64": …}`` (TF Serving's binary form)."""
    if isinstance(value, np.ndarray):
        return _to_json(value.tolist()) if value.dtype.kind in "OS" else value.tolist()
    if isinstance(value, (bytes, bytearray)):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value):
    if isinstance(value, dict) and set(value) == {"b64"}:
        return base64.b64decode(value["b64"])
    if isinstance(value, list):
        return [_from_json(item) for item in value]
    return value


def _leaf(value):
    while isinstance(value, list) and value:
        value = value[0]
    return value


def _json_to_array(value) -> np.ndarray:
    value = _from_json(value)
    if isinstance(_leaf(value), (bytes, str)):
        return np.array(value, dtype=object)
    return np.asarray(value)


def candidate_rows(per_request: Mapping[str, object],
                   per_candidate: Mapping[str, object]) -> dict[str, np.ndarray]:
    """Every input with one row per candidate, the form TF Serving's batching accepts: each
    per-request input (leading size 1) is repeated to the candidates' count."""
    counts = {name: len(value) for name, value in per_candidate.items()}
    if len(set(counts.values())) != 1:
        raise ValueError(f"per-candidate inputs must have the same number of rows, got {counts}")
    candidates = next(iter(counts.values()))
    rows = {name: np.asarray(value) for name, value in per_candidate.items()}
    for name, value in per_request.items():
        array = np.asarray(value)
        if array.ndim == 0 or array.shape[0] != 1:
            raise ValueError(f"per-request input {name!r} needs a leading dimension of 1 (one "
                             f"user), got shape {list(array.shape)}")
        if name in rows:
            raise ValueError(f"input {name!r} is given both per request and per candidate")
        rows[name] = np.repeat(array, candidates, axis=0)
    return rows


def predict_document(inputs: Mapping[str, object], signature_name: str = "") -> dict:
    """The columnar ``:predict`` JSON document ``RestClient`` sends."""
    document = {"inputs": {name: _to_json(value) for name, value in inputs.items()}}
    if signature_name:
        document["signature_name"] = signature_name
    return document


class _CandidateRequests:
    """``predict_candidates``, shared by both clients."""

    def predict_candidates(self, model: str, per_request: Mapping[str, object],
                           per_candidate: Mapping[str, object], **kwargs
                           ) -> dict[str, np.ndarray]:
        """``predict`` for one user's candidates: per-request inputs are sent with one row per
        candidate (see :func:`candidate_rows`), so the request passes TF Serving's batching."""
        return self.predict(model, candidate_rows(per_request, per_candidate), **kwargs)


class _NoDelayMixin:
    """Sends small requests at once: no Nagle wait for the ACK of the headers' packet."""

    def connect(self) -> None:
        super().connect()
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _HTTPConnection(_NoDelayMixin, http.client.HTTPConnection):
    pass


class _HTTPSConnection(_NoDelayMixin, http.client.HTTPSConnection):
    pass


class RestClient(_CandidateRequests):
    """TF Serving's REST API over keep-alive HTTP connections (one per thread)."""

    def __init__(self, url: str = "http://127.0.0.1:8501", timeout_s: float = 10.0,
                 retries: int = 2, retry_backoff_s: float = 0.05):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise ValueError(f"url must be http:// or https://, got {url!r}")
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/")
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = retry_backoff_s
        self._local = threading.local()
        self._output_names: dict[tuple, str] = {}

    def _connection(self) -> http.client.HTTPConnection:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            factory = _HTTPSConnection if self._https else _HTTPConnection
            connection = factory(self._host, self._port, timeout=self._timeout_s)
            self._local.connection = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def request(self, method: str, path: str, document: dict | None = None) -> dict:
        """One JSON request with retries while UNAVAILABLE; returns the decoded JSON body."""
        body = None if document is None else json.dumps(document).encode("utf-8")
        headers = {"Content-Type": "application/json"} if body is not None else {}
        for attempt in range(self._retries + 1):
            try:
                connection = self._connection()
                connection.request(method, self._prefix + path, body=body, headers=headers)
                response = connection.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self._drop_connection()
            except (ConnectionError, http.client.RemoteDisconnected,
                    http.client.CannotSendRequest, http.client.BadStatusLine) as error:
                self._drop_connection()
                if attempt == self._retries:
                    raise ServingClientError(503, f"server unavailable: {error}") from error
            except TimeoutError as error:
                self._drop_connection()
                raise ServingClientError(504, f"no answer within {self._timeout_s} s") from error
            else:
                if response.status == 503 and attempt < self._retries:
                    pass  # UNAVAILABLE: try again after the back-off
                elif response.status != 200:
                    raise ServingClientError(response.status, self._error_text(payload))
                else:
                    return json.loads(payload)
            time.sleep(self._backoff_s * 2 ** attempt)
        raise ServingClientError(503, "server unavailable")

    @staticmethod
    def _error_text(payload: bytes) -> str:
        try:
            return json.loads(payload)["error"]
        except (ValueError, KeyError, TypeError):
            return payload.decode("utf-8", "replace")

    def status(self, model: str, version: int | None = None, label: str | None = None) -> dict:
        """``GET /v1/models/{model}[/versions/{v}]``: ``{"model_version_status": [...]}``."""
        return self.request("GET", _model_path(model, version, label))

    def metadata(self, model: str, version: int | None = None,
                 label: str | None = None) -> dict:
        """``GET …/metadata``: the model spec and its ``signature_def`` map."""
        return self.request("GET", _model_path(model, version, label) + "/metadata")

    def predict(self, model: str, inputs: Mapping[str, object], *, signature_name: str = "",
                version: int | None = None, label: str | None = None) -> dict[str, np.ndarray]:
        """Columnar ``:predict`` with named inputs; returns every output by name."""
        outputs = self.request("POST", _model_path(model, version, label) + ":predict",
                               predict_document(inputs, signature_name))["outputs"]
        if isinstance(outputs, dict):
            return {name: _json_to_array(value) for name, value in outputs.items()}
        # TF Serving drops the name of a lone output; the signature says what it is.
        name = self._single_output_name(model, version, label, signature_name)
        return {name: _json_to_array(outputs)}

    def _single_output_name(self, model: str, version, label, signature_name: str) -> str:
        key = (model, version, label, signature_name)
        if key not in self._output_names:
            signatures = self.metadata(model, version, label)["metadata"]["signature_def"]
            outputs = signatures["signature_def"][signature_name or "serving_default"]["outputs"]
            self._output_names[key] = next(iter(outputs))
        return self._output_names[key]

    def predict_instances(self, model: str, instances: Sequence, *, signature_name: str = "",
                          version: int | None = None, label: str | None = None) -> list:
        """Row-format ``:predict``: ``{"instances": […]}`` in, the ``predictions`` list out."""
        document = {"instances": _to_json(list(instances))}
        if signature_name:
            document["signature_name"] = signature_name
        return _from_json(self.request("POST", _model_path(model, version, label) + ":predict",
                                       document)["predictions"])

    def regress(self, model: str, examples: Sequence[Mapping], *, context: Mapping | None = None,
                signature_name: str = "", version: int | None = None,
                label: str | None = None) -> list[float]:
        return self._examples("regress", model, examples, context, signature_name, version, label)

    def classify(self, model: str, examples: Sequence[Mapping], *,
                 context: Mapping | None = None, signature_name: str = "",
                 version: int | None = None, label: str | None = None) -> list:
        return self._examples("classify", model, examples, context, signature_name, version,
                              label)

    def _examples(self, verb, model, examples, context, signature_name, version, label):
        document = {"examples": [_to_json(dict(example)) for example in examples]}
        if context is not None:
            document["context"] = _to_json(dict(context))
        if signature_name:
            document["signature_name"] = signature_name
        return self.request("POST", _model_path(model, version, label) + f":{verb}",
                            document)["results"]


def _model_spec(spec, model: str, version, label, signature_name: str = "") -> None:
    spec.name = model
    if version is not None and label is not None:
        raise ValueError("give a version or a label, not both")
    if version is not None:
        spec.version.value = int(version)
    elif label is not None:
        spec.version_label = label
    if signature_name:
        spec.signature_name = signature_name


def predict_message(model: str, inputs: Mapping[str, object], *, signature_name: str = "",
                    version: int | None = None, label: str | None = None,
                    output_filter: Sequence[str] = ()) -> predict_pb2.PredictRequest:
    """The ``PredictRequest`` ``GrpcClient`` sends (numeric tensors packed in
    ``tensor_content``)."""
    request = predict_pb2.PredictRequest(output_filter=list(output_filter))
    _model_spec(request.model_spec, model, version, label, signature_name)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(
            tensors.ndarray_to_tensor_proto(value, use_tensor_content=True))
    return request


class GrpcClient(_CandidateRequests):
    """TF Serving's gRPC ``PredictionService`` and ``ModelService`` on one channel."""

    def __init__(self, target: str = "127.0.0.1:8500", timeout_s: float = 10.0,
                 retries: int = 2, retry_backoff_s: float = 0.05,
                 max_message_bytes: int = 64 << 20,
                 reconnect_backoff_s: float | None = None):
        """``reconnect_backoff_s``: the wait between connection attempts while the server
        cannot be reached, for a client polling a server that is starting (gRPC's default
        grows from 1 s by 1.6x an attempt, so a server up after 20 s is seen at about 26 s)."""
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        if reconnect_backoff_s is not None:
            milliseconds = max(int(reconnect_backoff_s * 1000), 1)
            options += [(f"grpc.{bound}_reconnect_backoff_ms", milliseconds)
                        for bound in ("initial", "min", "max")]
        self._channel = grpc.insecure_channel(target, options=options)
        self._prediction = prediction_service_pb2_grpc.PredictionServiceStub(self._channel)
        self._models = model_service_pb2_grpc.ModelServiceStub(self._channel)
        self._timeout_s = timeout_s
        self._retries = retries
        self._backoff_s = retry_backoff_s

    def call(self, method: Callable, request):
        """One RPC with the client's deadline, retried while the server is UNAVAILABLE."""
        for attempt in range(self._retries + 1):
            try:
                return method(request, timeout=self._timeout_s)
            except grpc.RpcError as error:
                if error.code() != grpc.StatusCode.UNAVAILABLE or attempt == self._retries:
                    raise ServingClientError(error.code(), error.details()) from error
            time.sleep(self._backoff_s * 2 ** attempt)
        raise AssertionError("unreachable")

    def predict_request(self, model: str, inputs: Mapping[str, object], *,
                        signature_name: str = "", version: int | None = None,
                        label: str | None = None,
                        output_filter: Sequence[str] = ()) -> predict_pb2.PredictResponse:
        """``Predict`` with named array-likes; returns the whole ``PredictResponse``."""
        return self.call(self._prediction.Predict, predict_message(
            model, inputs, signature_name=signature_name, version=version, label=label,
            output_filter=output_filter))

    def predict(self, model: str, inputs: Mapping[str, object], **kwargs) -> dict[str, np.ndarray]:
        """``Predict``; returns the outputs by name as numpy arrays (see ``predict_request``)."""
        response = self.predict_request(model, inputs, **kwargs)
        return {name: tensors.tensor_proto_to_ndarray(proto, name)
                for name, proto in response.outputs.items()}

    def metadata(self, model: str, version: int | None = None, label: str | None = None
                 ) -> get_model_metadata_pb2.GetModelMetadataResponse:
        request = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
        _model_spec(request.model_spec, model, version, label)
        return self.call(self._prediction.GetModelMetadata, request)

    def signature_defs(self, model: str, version: int | None = None,
                       label: str | None = None) -> dict:
        """The model's ``{name: SignatureDef}`` from ``GetModelMetadata``."""
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        self.metadata(model, version, label).metadata["signature_def"].Unpack(signature_defs)
        return dict(signature_defs.signature_def)

    def status(self, model: str, version: int | None = None
               ) -> get_model_status_pb2.GetModelStatusResponse:
        request = get_model_status_pb2.GetModelStatusRequest()
        _model_spec(request.model_spec, model, version, None)
        return self.call(self._models.GetModelStatus, request)

    def reload_config(self, config) -> model_management_pb2.ReloadConfigResponse:
        """``HandleReloadConfigRequest`` with a ``ModelServerConfig`` (a new model list)."""
        return self.call(self._models.HandleReloadConfigRequest,
                         model_management_pb2.ReloadConfigRequest(config=config))

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "GrpcClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
