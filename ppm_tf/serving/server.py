"""The local TF-Serving-compatible model server: ``main(argv)`` and the ``ModelServer`` class.

It takes ``tensorflow_model_server``'s flags (``--port``, ``--rest_api_port``, ``--model_name``,
``--model_base_path``, ``--model_config_file``, …) with their defaults and meanings, serves gRPC
and REST over one :class:`ModelManager`, and stops cleanly on SIGTERM/SIGINT. Differences from
TF Serving: it binds ``--bind_address`` (127.0.0.1 by default, where TF Serving binds all
interfaces), bounds REST bodies (``--max_request_bytes``) and connections, checks every input's
shape and claimed size against its signature (``--enforce_signature_shapes``,
``--max_unknown_dim_size``), and with ``--enable_batching`` refuses what TF Serving's batching
refuses (unequal 0th dimensions, more than ``max_batch_size`` rows) without merging requests.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import threading

from tensorflow.core.protobuf import config_pb2

from ppm_tf.serving import config as config_files
from ppm_tf.serving.errors import ServingError
from ppm_tf.serving.grpc_service import create_grpc_server
from ppm_tf.serving.metrics import Metrics
from ppm_tf.serving.model_manager import ModelManager
from ppm_tf.serving.rest import RestApi, RestServer
from ppm_tf.serving.signature_inputs import DEFAULT_MAX_BATCH_SIZE, InputRules

log = logging.getLogger(__name__)

_CPUS = os.cpu_count() or 1


@dataclasses.dataclass
class ServerOptions:
    """What the server runs. Ports: ``None`` disables that API, ``0`` picks a free port."""
    port: int | None = 8500
    rest_api_port: int | None = None
    bind_address: str = "127.0.0.1"
    model_name: str = "default"
    model_base_path: str = ""
    model_config_file: str = ""
    model_config: config_files.ModelServerConfig | None = None  # instead of a file (library use)
    model_config_file_poll_wait_seconds: float = 0.0
    file_system_poll_wait_seconds: float = 1.0
    rest_api_num_threads: int = 4 * _CPUS
    rest_api_timeout_in_ms: int = 30_000
    rest_api_max_connections: int = 256
    rest_api_read_timeout_in_ms: int = 10_000
    grpc_max_threads: int = 4 * _CPUS
    monitoring_config_file: str = ""
    enable_batching: bool = False
    batching_parameters_file: str = ""
    saved_model_tags: str = "serve"
    tensorflow_intra_op_parallelism: int = 0
    tensorflow_inter_op_parallelism: int = 0
    allow_version_labels_for_unavailable_models: bool = False
    enable_model_warmup: bool = True
    max_request_bytes: int = 32 << 20
    enforce_signature_shapes: bool = True
    max_unknown_dim_size: int = 4096


def request_input_rules(options: ServerOptions) -> InputRules:
    """How requests' inputs are checked: signature shapes, claimed sizes and, with
    ``--enable_batching``, TF Serving's batching rule with the file's ``max_batch_size``."""
    if options.max_unknown_dim_size < 1:
        raise config_files.ConfigError("--max_unknown_dim_size must be positive")
    batch_size_limit = None
    if options.enable_batching:
        batch_size_limit = DEFAULT_MAX_BATCH_SIZE
        if options.batching_parameters_file:
            params = config_files.load_batching_parameters(options.batching_parameters_file,
                                                           allow_unknown_fields=True)
            if params.HasField("max_batch_size"):
                batch_size_limit = params.max_batch_size.value
        log.info("--enable_batching: requests are held to TF Serving's batching rule (equal 0th "
                 "dimensions, at most %d rows) and run one by one, not merged", batch_size_limit)
    return InputRules(enforce_signature_shapes=options.enforce_signature_shapes,
                      max_unknown_dim_size=options.max_unknown_dim_size,
                      batch_size_limit=batch_size_limit)


class ModelServer:
    """gRPC + REST + model manager + config-file watcher; ``start()``, then ``stop()``."""

    def __init__(self, options: ServerOptions):
        self.options = options
        self.manager: ModelManager | None = None
        self.metrics: Metrics | None = None
        self._grpc = None
        self._rest: RestServer | None = None
        self.grpc_port: int | None = None
        self.rest_port: int | None = None
        self._stopping = threading.Event()
        self._watcher: threading.Thread | None = None
        self._config_text: str | None = None

    def _model_config(self) -> config_files.ModelServerConfig:
        options = self.options
        if options.model_config is not None:
            return options.model_config
        if options.model_config_file:
            with open(options.model_config_file, encoding="utf-8") as handle:
                self._config_text = handle.read()
            return config_files.load_model_server_config(options.model_config_file)
        if not options.model_base_path:
            raise config_files.ConfigError(
                "Both server_options.model_base_path and server_options.model_config_file are "
                "empty!")
        return config_files.single_model_config(options.model_name, options.model_base_path)

    def start(self) -> "ModelServer":
        """Loads the models (blocking) and starts serving; raises if anything is misconfigured."""
        options = self.options
        if options.port is None and options.rest_api_port is None:
            raise config_files.ConfigError("Neither --port nor --rest_api_port is enabled")
        if options.rest_api_max_connections < 1 or options.rest_api_read_timeout_in_ms <= 0:
            raise config_files.ConfigError(
                "--rest_api_max_connections and --rest_api_read_timeout_in_ms must be positive")
        model_config = self._model_config()
        metrics_path = None
        if options.monitoring_config_file:
            monitoring = config_files.load_monitoring_config(options.monitoring_config_file)
            if monitoring.prometheus_config.enable:
                metrics_path = monitoring.prometheus_config.path
        input_rules = request_input_rules(options)
        session_config = config_pb2.ConfigProto(
            intra_op_parallelism_threads=options.tensorflow_intra_op_parallelism,
            inter_op_parallelism_threads=options.tensorflow_inter_op_parallelism,
            allow_soft_placement=True)
        self.metrics = Metrics(known_model=lambda name: self.manager.is_configured(name))
        self.manager = ModelManager(
            model_config, file_system_poll_wait_seconds=options.file_system_poll_wait_seconds,
            saved_model_tags=[tag.strip() for tag in options.saved_model_tags.split(",")
                              if tag.strip()],
            session_config=session_config, enable_model_warmup=options.enable_model_warmup,
            allow_version_labels_for_unavailable_models=(
                options.allow_version_labels_for_unavailable_models),
            run_timeout_ms=options.rest_api_timeout_in_ms, input_rules=input_rules,
            on_load=self.metrics.record_load)
        try:
            self.manager.start()
            self._start_front_ends(metrics_path)
        except BaseException:
            self.stop()
            raise
        if options.model_config_file and options.model_config_file_poll_wait_seconds > 0:
            self._watcher = threading.Thread(target=self._watch_config_file,
                                             name="model-config-watch", daemon=True)
            self._watcher.start()
        return self

    def _start_front_ends(self, metrics_path: str | None) -> None:
        options = self.options
        if options.port is not None:
            self._grpc, self.grpc_port = create_grpc_server(
                self.manager, options.bind_address, options.port, options.grpc_max_threads,
                max(options.max_request_bytes, 4 << 20), self.metrics)
            log.info("Running gRPC ModelServer at %s:%d ...", options.bind_address,
                     self.grpc_port)
        if options.rest_api_port is not None:
            api = RestApi(self.manager, self.metrics, metrics_path)
            self._rest = RestServer(api, options.bind_address, options.rest_api_port,
                                    num_threads=options.rest_api_num_threads,
                                    max_connections=options.rest_api_max_connections,
                                    read_timeout_s=options.rest_api_read_timeout_in_ms / 1000,
                                    max_body_bytes=options.max_request_bytes).start()
            self.rest_port = self._rest.port
            log.info("Exporting HTTP/REST API at:%s:%d ...", options.bind_address,
                     self.rest_port)

    def _watch_config_file(self) -> None:
        """Re-reads ``--model_config_file`` and applies it when its text changed."""
        path = self.options.model_config_file
        while not self._stopping.wait(self.options.model_config_file_poll_wait_seconds):
            try:
                with open(path, encoding="utf-8") as handle:
                    text = handle.read()
                if text == self._config_text:
                    continue
                self._config_text = text
                self.manager.reload_config(config_files.load_model_server_config(path))
                log.info("Applied the changed model config file %s", path)
            except (OSError, ServingError) as error:
                log.error("Keeping the current models: cannot apply %s: %s", path, error)

    def stop(self, grace_s: float = 5.0) -> None:
        """Stops accepting requests, lets running ones finish, unloads the models."""
        self._stopping.set()
        if self._rest is not None:
            self._rest.stop(grace_s)
        if self._grpc is not None:
            self._grpc.stop(grace_s).wait()
        if self._watcher is not None:
            self._watcher.join()
        if self.manager is not None:
            self.manager.stop()

    def __enter__(self) -> "ModelServer":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _flag_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in ("1", "true", "t", "yes"):
        return True
    if value in ("0", "false", "f", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppm serve", description="A local TensorFlow-Serving-compatible model server "
        "(gRPC PredictionService/ModelService and the /v1 REST API).")
    add = parser.add_argument

    def add_bool(name: str, default: bool, help_text: str) -> None:
        add(name, type=_flag_bool, nargs="?", const=True, default=default, help=help_text)

    add("--port", type=int, default=8500, help="gRPC port (0 disables gRPC)")
    add("--rest_api_port", type=int, default=0, help="REST port (0 disables REST)")
    add("--bind_address", default="127.0.0.1",
        help="interface to bind (ppm extension; TF Serving binds 0.0.0.0)")
    add("--model_name", default="default", help="model name (ignored with --model_config_file)")
    add("--model_base_path", default="",
        help="folder holding numeric version sub-folders (ignored with --model_config_file)")
    add("--model_config_file", default="", help="text-format ModelServerConfig")
    add("--model_config_file_poll_wait_seconds", type=float, default=0.0,
        help="re-read --model_config_file this often (0: never)")
    add("--file_system_poll_wait_seconds", type=float, default=1.0,
        help="poll base paths for new versions this often (0: once, at start)")
    add("--rest_api_num_threads", type=int, default=4 * _CPUS,
        help="REST requests processed at once")
    add("--rest_api_timeout_in_ms", type=int, default=30_000, help="per-request run deadline")
    add("--rest_api_max_connections", type=int, default=256,
        help="REST connections open at once; more wait to be accepted (ppm extension)")
    add("--rest_api_read_timeout_in_ms", type=int, default=10_000,
        help="a REST request must arrive whole (line, headers, body) within this time of the "
             "server starting to wait for it, else its connection is closed (ppm extension)")
    add("--grpc_max_threads", type=int, default=4 * _CPUS, help="gRPC worker threads")
    add("--monitoring_config_file", default="",
        help="text-format MonitoringConfig (Prometheus metrics on the REST port)")
    add_bool("--enable_batching", False,
             "refuse what TF Serving's batching refuses: inputs of unequal 0th dimension, more "
             "than max_batch_size rows (requests are not merged)")
    add("--batching_parameters_file", default="", help="text-format BatchingParameters")
    add("--saved_model_tags", default="serve", help="comma-separated MetaGraphDef tags")
    add("--tensorflow_intra_op_parallelism", type=int, default=0,
        help="threads within one op (0: TensorFlow chooses)")
    add("--tensorflow_inter_op_parallelism", type=int, default=0,
        help="ops run at once (0: TensorFlow chooses)")
    add_bool("--allow_version_labels_for_unavailable_models", False,
             "allow labels on versions that are not loaded yet")
    add_bool("--enable_model_warmup", True,
             "replay assets.extra/tf_serving_warmup_requests before serving a version")
    add("--max_request_bytes", type=int, default=32 << 20,
        help="largest REST body / gRPC message accepted (ppm extension)")
    add_bool("--enforce_signature_shapes", True,
             "refuse inputs whose rank or known dimensions differ from the signature's "
             "(ppm extension; TF Serving feeds any shape to the graph)")
    add("--max_unknown_dim_size", type=int, default=4096,
        help="largest size a request may give a dimension its signature leaves unknown, e.g. "
             "the candidate count; checked on the claimed shape before decoding (ppm extension)")
    return parser


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    values = {field.name: getattr(args, field.name)
              for field in dataclasses.fields(ServerOptions) if hasattr(args, field.name)}
    values["port"] = args.port or None  # TF Serving: port 0 means "off"
    values["rest_api_port"] = args.rest_api_port or None
    return ServerOptions(**values)


def main(argv: list[str] | None = None) -> int:
    """Runs the server until SIGTERM/SIGINT; returns the process exit code."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    tf_logger = logging.getLogger("tensorflow")
    for handler in list(tf_logger.handlers):  # TensorFlow's own handler would print twice
        tf_logger.removeHandler(handler)
    try:
        server = ModelServer(options_from_args(args)).start()
    except (ServingError, OSError) as error:
        log.error("Failed to start server. Error: %s", error)
        return 1
    # Installed only now: loading TensorFlow and gRPC may install native handlers of their
    # own (absl's failure handler covers SIGTERM), which would replace earlier ones.
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGTERM, signal.SIGINT):
            previous[signum] = signal.signal(signum, lambda *_: stop.set())
    try:
        while not stop.wait(0.5):
            pass
        log.info("Shutting down the model server")
        server.stop()
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
