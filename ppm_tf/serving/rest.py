"""The REST front end: TF Serving's ``/v1/models/…`` HTTP/JSON API over the model manager.

``RestApi`` maps (method, path, body) to (HTTP status, body) exactly as TF Serving's
``http_rest_api_handler.cc`` does: the same URL patterns (case-insensitive, URL-decoded model
names and labels), JSON bodies, ``{"error": "…"}`` on failure with TF Serving's HTTP code for
the error. ``RestServer`` serves it with the standard library's threading HTTP server, bounded:
a cap on running requests and on open connections, a deadline for each request to arrive whole
(a client that trickles bytes or sits idle is cut off at it, so it cannot hold a connection
slot for long), a request size limit (413), a 400 with a proper status line for a request line
that is not HTTP/1.x, and a graceful stop that lets running requests finish.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

from google.protobuf import json_format
from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2

from ppm_tf.serving import inference, json_api, tensors
from ppm_tf.serving.errors import ServingError, invalid_argument

log = logging.getLogger(__name__)

_API_PATH = re.compile(r"/v1/.*", re.IGNORECASE)
_PREDICTION_PATH = re.compile(
    r"/v1/models/([^/:]+)(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?:(classify|regress|predict)",
    re.IGNORECASE)
_STATUS_PATH = re.compile(
    r"/v1/models(?:/([^/:]+))?(?:(?:/versions/(\d+))|(?:/labels/([^/:]+)))?(?:/(metadata))?",
    re.IGNORECASE)
_MAX_VERSION = (1 << 63) - 1
JSON_TYPE = "application/json"


def _proto_json(message) -> dict:
    return json_format.MessageToDict(message, preserving_proto_field_name=True,
                                     always_print_fields_with_no_presence=True)


def _body(document: dict) -> bytes:
    return json.dumps(document).encode("utf-8")


class RestApi:
    """TF Serving's REST API as a function of (method, path, body); no sockets involved."""

    def __init__(self, manager, metrics=None, metrics_path: str | None = None):
        self._manager = manager
        self._metrics = metrics
        self._metrics_path = metrics_path

    def handle(self, method: str, path: str, body: bytes) -> tuple[int, str, bytes]:
        """Returns (HTTP status, content type, body) for one request."""
        path = urlsplit(path).path
        if self._metrics_path and path == self._metrics_path and self._metrics is not None:
            if method != "GET":
                return 405, JSON_TYPE, _body({"error": f"Unsupported method {method} for {path}"})
            return 200, "text/plain; version=0.0.4", self._metrics.render().encode("utf-8")
        if not _API_PATH.fullmatch(path):
            return 404, JSON_TYPE, _body({"error": f"Not found: {path}"})
        started = time.perf_counter()
        seen = {"api": "unknown", "model": ""}  # filled in by _dispatch as it parses the path
        status = "OK"
        try:
            return 200, JSON_TYPE, _body(self._dispatch(method, path, body, seen))
        except ServingError as error:
            status = error.code_name
            return error.http_status, JSON_TYPE, _body({"error": error.message})
        except Exception as error:  # a bug must cost one request, never the server
            log.exception("REST request %s %s failed", method, path)
            status = "INTERNAL"
            return 500, JSON_TYPE, _body({"error": f"Internal error: {type(error).__name__}: "
                                                   f"{error}"})
        finally:
            if self._metrics is not None:
                self._metrics.record_request(seen["model"], seen["api"], "REST", status,
                                             time.perf_counter() - started)

    def _dispatch(self, method: str, path: str, body: bytes, seen: dict) -> dict:
        malformed = invalid_argument(f"Malformed request: {method} {path}")
        if method == "POST":
            match = _PREDICTION_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label = self._model_info(match)
            verb = match.group(4)
            handlers: dict[str, Callable] = {"predict": self._predict,
                                             "classify": self._classify, "regress": self._regress}
            if verb not in handlers:  # the pattern ignores case; TF Serving's verbs do not
                raise malformed
            seen.update(api=verb, model=name)
            return handlers[verb](name, version, label, body)
        if method == "GET":
            match = _STATUS_PATH.fullmatch(path)
            if match is None:
                raise malformed
            name, version, label = self._model_info(match)
            if not name:
                raise invalid_argument("Missing model name in request.")
            if match.group(4) == "metadata":
                seen.update(api="GetModelMetadata", model=name)
                return self._metadata(name, version, label)
            seen.update(api="GetModelStatus", model=name)
            return self._status(name, version, label)
        raise malformed

    @staticmethod
    def _model_info(match: re.Match) -> tuple[str, int | None, str | None]:
        name = unquote(match.group(1) or "")
        version = None
        if match.group(2):
            version = int(match.group(2))
            if version > _MAX_VERSION:
                raise invalid_argument(f"Failed to convert version: {match.group(2)} to numeric.")
        label = unquote(match.group(3)) if match.group(3) else None
        return name, version, label

    def _predict(self, name: str, version, label, body: bytes) -> dict:
        with contextlib.ExitStack() as stack:
            held = []

            def input_infos(signature_name: str):
                # TF Serving parses the JSON first and looks the model up only now.
                servable = stack.enter_context(self._manager.servable(name, version, label))
                held.append(servable)
                key = signature_name or inference.DEFAULT_SIGNATURE
                signature = servable.signature_defs.get(key)
                if signature is None:
                    raise invalid_argument(f"Serving signature name: \"{key}\" not found in "
                                           "signature def")
                return signature.inputs

            signature_name, inputs, request_format = json_api.parse_predict_request(
                body, input_infos)
            _, outputs = inference.run_predict(held[0], signature_name, inputs)
        return json_api.predict_response(outputs, request_format)

    def _classify(self, name: str, version, label, body: bytes) -> dict:
        signature_name, request_input = json_api.parse_examples_request(body, "classify")
        with self._manager.servable(name, version, label) as servable:
            _, result = inference.run_classify(servable, signature_name, request_input)
        if not result.classifications:
            raise invalid_argument("Cannot convert empty ClassificationResults to JSON")
        return {"results": [[[entry.label, tensors.scalar_to_json(entry.score)]
                             for entry in classifications.classes]
                            for classifications in result.classifications]}

    def _regress(self, name: str, version, label, body: bytes) -> dict:
        signature_name, request_input = json_api.parse_examples_request(body, "regress")
        with self._manager.servable(name, version, label) as servable:
            _, result = inference.run_regress(servable, signature_name, request_input)
        if not result.regressions:
            raise invalid_argument("Cannot convert empty RegressionResults to JSON")
        return {"results": [tensors.scalar_to_json(regression.value)
                            for regression in result.regressions]}

    def _metadata(self, name: str, version, label) -> dict:
        request = get_model_metadata_pb2.GetModelMetadataRequest(
            metadata_field=[inference.SIGNATURE_DEF_FIELD])
        _fill_spec(request.model_spec, name, version, label)
        response = inference.model_metadata(self._manager, request)
        signature_defs = get_model_metadata_pb2.SignatureDefMap()
        response.metadata[inference.SIGNATURE_DEF_FIELD].Unpack(signature_defs)
        return {"model_spec": _proto_json(response.model_spec),
                "metadata": {"signature_def": _proto_json(signature_defs)}}

    def _status(self, name: str, version, label) -> dict:
        request = get_model_status_pb2.GetModelStatusRequest()
        _fill_spec(request.model_spec, name, version, label)
        return _proto_json(inference.model_status(self._manager, request))


def _fill_spec(spec, name: str, version: int | None, label: str | None) -> None:
    spec.name = name
    if version is not None:
        spec.version.value = version
    elif label is not None:
        spec.version_label = label


class _DeadlineReader(io.RawIOBase):
    """A connection's incoming bytes, read under a deadline rather than a per-read timeout.

    A per-read timeout never fires for a client that sends one byte every few seconds; a
    deadline does, so a trickling client holds its connection slot for a bounded time.
    """

    def __init__(self, connection: socket.socket):
        super().__init__()
        self._connection = connection
        self.deadline = time.monotonic()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the request did not arrive before its deadline")
        self._connection.settimeout(remaining)
        return self._connection.recv_into(buffer)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so clients reuse connections
    server_version = "ppm-tf-serving"

    def setup(self) -> None:
        self.timeout = self.server.read_timeout_s  # read by StreamRequestHandler.setup
        super().setup()
        self.rfile.close()  # replaced: an open makefile() would keep the socket from closing
        self._reader = _DeadlineReader(self.connection)
        self.rfile = io.BufferedReader(self._reader)
        # Headers and body leave in separate writes; without this, Nagle's algorithm holds the
        # body back until the client's delayed ACK (about 40 ms per request).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.track(self.connection, add=True)

    def handle_one_request(self) -> None:
        """One request under one deadline: the wait for it (keep-alive idle time included),
        its request line, headers and body must all fit in ``read_timeout_s``."""
        self._reader.deadline = time.monotonic() + self.server.read_timeout_s
        super().handle_one_request()

    def parse_request(self) -> bool:
        """http.server's parser, but only ``METHOD TARGET HTTP/x.y`` request lines: anything
        else (HTTP/0.9's two-word form, garbage) gets a 400 with a status line and a JSON
        body. One empty line before a request line is skipped (RFC 9112, section 2.2)."""
        if self.raw_requestline in (b"\r\n", b"\n"):
            self.raw_requestline = self.rfile.readline(65537)
            if not self.raw_requestline:
                self.close_connection = True
                return False
        line = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n")
        if len(line.split()) != 3:
            self.command, self.requestline = None, line
            self.request_version = self.protocol_version  # so the answer has a status line
            self.send_error(400, f"Bad request syntax ({line!r})")
            return False
        return super().parse_request()

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.track(self.connection, add=False)

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        self._serve()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _serve(self) -> None:
        body = self._read_body()
        if body is None:
            return
        with self.server.busy():
            status, content_type, payload = self.server.api.handle(self.command, self.path, body)
        self._send(status, content_type, payload)

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self._refuse(411, "Chunked request bodies are not supported; send Content-Length")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            self._refuse(400, "Invalid Content-Length header")
            return None
        if length < 0:
            self._refuse(400, "Invalid Content-Length header")
            return None
        if length > self.server.max_body_bytes:
            self._refuse_too_large(length)
            self._discard_input(length)
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:  # the client hung up mid-body
            self.close_connection = True
            return None
        return body

    def handle_expect_100(self) -> bool:
        """Answers ``Expect: 100-continue`` with 413 when the announced body is too large."""
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = 0
        if length > self.server.max_body_bytes:
            self._refuse_too_large(length)
            return False
        return super().handle_expect_100()

    def _refuse_too_large(self, length: int) -> None:
        self._refuse(413, f"Request body of {length} bytes exceeds the limit of "
                          f"{self.server.max_body_bytes} bytes")

    def _discard_input(self, length: int, deadline_s: float = 2.0) -> None:
        """Reads (and drops) a refused body for a moment, so the client can finish sending
        and read the answer instead of seeing its connection reset mid-upload."""
        self._reader.deadline = time.monotonic() + deadline_s
        with contextlib.suppress(OSError):
            while length > 0:
                chunk = self.rfile.read1(min(length, 1 << 16))
                if not chunk:
                    break
                length -= len(chunk)

    def _refuse(self, status: int, message: str) -> None:
        self.close_connection = True  # the unread body makes the connection unusable
        self._send(status, JSON_TYPE, _body({"error": message}))

    def _send(self, status: int, content_type: str, payload: bytes) -> None:
        self.connection.settimeout(self.server.read_timeout_s)  # a client must take its answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        if self.close_connection or self.server.stopping.is_set():
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(payload)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None):
        """http.server's own refusals (bad request line, oversized headers) as JSON errors."""
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # an unparsed request line: http.server would
            self.request_version = self.protocol_version  # leave out the status line
        text = message or explain or "Bad request"
        self._send(code, JSON_TYPE, _body({"error": text}))

    def log_message(self, format: str, *args) -> None:  # noqa: A002 (http.server's signature)
        log.debug("%s - %s", self.address_string(), format % args)


class _BoundedHTTPServer(ThreadingHTTPServer):
    """A thread per connection, at most ``max_connections`` of them (the rest wait in the
    listen backlog, in order), and at most ``num_threads`` requests running at once."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], api: RestApi, num_threads: int,
                 max_connections: int, read_timeout_s: float, max_body_bytes: int):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.api = api
        self.read_timeout_s = read_timeout_s
        self.max_body_bytes = max_body_bytes
        self.stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(max_connections)
        self._workers = threading.BoundedSemaphore(num_threads)
        self._busy = 0
        self._idle = threading.Condition()
        self._connections: set[socket.socket] = set()
        super().__init__(address, _Handler)

    def process_request(self, request, client_address) -> None:
        while not self._slots.acquire(timeout=0.25):
            if self.stopping.is_set():
                self.shutdown_request(request)
                return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def track(self, connection: socket.socket, add: bool) -> None:
        with self._idle:
            (self._connections.add if add else self._connections.discard)(connection)

    @contextlib.contextmanager
    def busy(self):
        """Holds one of the ``num_threads`` request slots while a request runs."""
        with self._workers:
            with self._idle:
                self._busy += 1
            try:
                yield
            finally:
                with self._idle:
                    self._busy -= 1
                    self._idle.notify_all()

    def drain(self, grace_s: float) -> None:
        """Waits for running requests, then cuts idle keep-alive connections."""
        with self._idle:
            self._idle.wait_for(lambda: self._busy == 0, timeout=grace_s)
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class RestServer:
    """Serves a :class:`RestApi` over HTTP on ``host:port`` (port 0: any free port).

    ``num_threads`` requests run at once; up to ``max_connections`` connections stay open
    (keep-alive clients hold theirs between requests; further ones wait to be accepted). Each
    request must arrive whole within ``read_timeout_s`` of the server starting to wait for it,
    else its connection is closed, so slow or idle clients free their slots within that time;
    bodies over ``max_body_bytes`` are refused with 413.
    """

    def __init__(self, api: RestApi, host: str = "127.0.0.1", port: int = 8501,
                 num_threads: int = 16, max_connections: int = 256,
                 read_timeout_s: float = 10.0, max_body_bytes: int = 32 << 20):
        self._server = _BoundedHTTPServer((host, port), api, num_threads, max_connections,
                                          read_timeout_s, max_body_bytes)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        kwargs={"poll_interval": 0.25}, name="rest-server",
                                        daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def start(self) -> "RestServer":
        self._thread.start()
        return self

    def stop(self, grace_s: float = 5.0) -> None:
        """Stops accepting, lets running requests finish (up to ``grace_s``), closes."""
        self._server.stopping.set()
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.drain(grace_s)
        self._server.server_close()
        self._thread.join(timeout=grace_s)
