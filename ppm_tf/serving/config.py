"""TF Serving's text-format config files: model list, monitoring, batching.

The same files drive the official ``tensorflow/serving`` image (``serving/*.config``) and our
local server, so they are parsed with TF Serving's own messages. ``ModelServerConfig`` ships in
``tensorflow-serving-api``; ``MonitoringConfig`` and ``BatchingParameters`` do not, so they are
mirrored here field for field (names, numbers, types) from TF Serving's ``monitoring_config.proto``
and ``session_bundle_config.proto``, in a private descriptor pool so a later release that ships
them cannot clash.
"""
from __future__ import annotations

import os

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format
from google.protobuf import wrappers_pb2
from tensorflow_serving.config import model_server_config_pb2

from ppm_tf.serving.errors import ServingError

ModelServerConfig = model_server_config_pb2.ModelServerConfig
ModelConfig = model_server_config_pb2.ModelConfig

TENSORFLOW_PLATFORM = "tensorflow"
DEFAULT_PROMETHEUS_PATH = "/monitoring/prometheus/metrics"  # PrometheusExporter::kPrometheusPath


class ConfigError(ServingError, ValueError):
    """A config file or config message that TF Serving would refuse (INVALID_ARGUMENT)."""

    def __init__(self, message: str, code: grpc.StatusCode = grpc.StatusCode.INVALID_ARGUMENT):
        super().__init__(code, message)


def _mirror_messages() -> dict[str, type]:
    """Builds MonitoringConfig/PrometheusConfig/BatchingParameters as in TF Serving's protos."""
    fdp = descriptor_pb2.FieldDescriptorProto
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    file = descriptor_pb2.FileDescriptorProto(
        name="ppm_tf/serving/tensorflow_serving_config_mirror.proto",
        package="tensorflow.serving", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])

    def add_field(message, name, number, type_, type_name="", repeated=False):
        field = message.field.add(name=name, number=number, type=type_,
                                  label=fdp.LABEL_REPEATED if repeated else fdp.LABEL_OPTIONAL)
        if type_name:
            field.type_name = type_name

    prometheus = file.message_type.add(name="PrometheusConfig")
    add_field(prometheus, "enable", 1, fdp.TYPE_BOOL)
    add_field(prometheus, "path", 2, fdp.TYPE_STRING)
    monitoring = file.message_type.add(name="MonitoringConfig")
    add_field(monitoring, "prometheus_config", 1, fdp.TYPE_MESSAGE,
              ".tensorflow.serving.PrometheusConfig")
    batching = file.message_type.add(name="BatchingParameters")
    for number, name in enumerate(("max_batch_size", "batch_timeout_micros",
                                   "max_enqueued_batches", "num_batch_threads"), start=1):
        add_field(batching, name, number, fdp.TYPE_MESSAGE, ".google.protobuf.Int64Value")
    add_field(batching, "thread_pool_name", 5, fdp.TYPE_MESSAGE, ".google.protobuf.StringValue")
    add_field(batching, "allowed_batch_sizes", 6, fdp.TYPE_INT64, repeated=True)
    add_field(batching, "pad_variable_length_inputs", 7, fdp.TYPE_BOOL)
    pool.Add(file)
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(
                f"tensorflow.serving.{name}"))
            for name in ("PrometheusConfig", "MonitoringConfig", "BatchingParameters")}


_MIRRORS = _mirror_messages()
PrometheusConfig = _MIRRORS["PrometheusConfig"]
MonitoringConfig = _MIRRORS["MonitoringConfig"]
BatchingParameters = _MIRRORS["BatchingParameters"]


def read_text_proto(path: str, message_class: type, allow_unknown_fields: bool = False):
    """Parses a text-format proto file; errors name the file and the parser's line:column."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as error:
        raise ConfigError(f"Cannot read {message_class.DESCRIPTOR.name} file '{path}': "
                          f"{error.strerror}") from error
    try:
        return text_format.Parse(text, message_class(), allow_unknown_field=allow_unknown_fields)
    except text_format.ParseError as error:
        raise ConfigError(f"Invalid protobuf file: '{path}': not a text-format "
                          f"{message_class.DESCRIPTOR.full_name}: {error}") from error


def load_model_server_config(path: str) -> ModelServerConfig:
    """Reads and validates a ``--model_config_file`` (``model_config_list { config { … } }``)."""
    config = read_text_proto(path, ModelServerConfig)
    validate_model_server_config(config, source=path)
    return config


def single_model_config(model_name: str, model_base_path: str) -> ModelServerConfig:
    """The config ``--model_name``/``--model_base_path`` stand for (TF Serving's default)."""
    config = ModelServerConfig()
    model = config.model_config_list.config.add()
    model.name = model_name
    model.base_path = model_base_path
    model.model_platform = TENSORFLOW_PLATFORM
    return config


def validate_model_server_config(config: ModelServerConfig, source: str = "config") -> list:
    """Checks what TF Serving's ServerCore checks; returns the ``ModelConfig`` list."""
    if config.WhichOneof("config") != "model_config_list":
        raise ConfigError(f"{source}: only model_config_list is supported "
                          "(custom_model_config is not)")
    seen: set[str] = set()
    for model in config.model_config_list.config:
        if not model.name:
            raise ConfigError(f"{source}: a model config has an empty name")
        if model.name in seen:
            raise ConfigError(f"{source}: Illegal to list model {model.name} multiple times "
                              "in config list")
        seen.add(model.name)
        if not model.base_path:
            raise ConfigError(f"{source}: model {model.name} has an empty base_path")
        if model.model_type and model.model_platform:
            raise ConfigError(f"{source}: model {model.name}: Illegal setting both "
                              "ModelServerConfig::model_type (deprecated) and "
                              "ModelServerConfig::model_platform.")
        platform = (TENSORFLOW_PLATFORM if model.model_type == model_server_config_pb2.TENSORFLOW
                    else model.model_platform)
        if not platform:
            raise ConfigError(f"{source}: model {model.name}: Illegal setting neither "
                              "ModelServerConfig::model_type (deprecated) nor "
                              "ModelServerConfig::model_platform.")
        if platform != TENSORFLOW_PLATFORM:
            raise ConfigError(f"{source}: model {model.name} requests model_platform "
                              f"\"{platform}\"; only \"{TENSORFLOW_PLATFORM}\" is served")
        policy = model.model_version_policy
        if policy.WhichOneof("policy_choice") == "specific" and not policy.specific.versions:
            raise ConfigError(f"{source}: model {model.name}: the specific version policy "
                              "lists no versions")
    return list(config.model_config_list.config)


def load_monitoring_config(path: str):
    """Reads a ``--monitoring_config_file``; an enabled Prometheus config gets its default path."""
    config = read_text_proto(path, MonitoringConfig)
    prometheus = config.prometheus_config
    if prometheus.enable and not prometheus.path:
        prometheus.path = DEFAULT_PROMETHEUS_PATH
    if prometheus.enable and not prometheus.path.startswith("/"):
        raise ConfigError(f"{path}: prometheus_config.path must start with '/': "
                          f"{prometheus.path!r}")
    return config


def load_batching_parameters(path: str, allow_unknown_fields: bool = False):
    """Reads a ``--batching_parameters_file`` and checks TF Serving's constraints on it."""
    params = read_text_proto(path, BatchingParameters, allow_unknown_fields)
    sizes = list(params.allowed_batch_sizes)
    if sizes and (sizes != sorted(set(sizes))):
        raise ConfigError(f"{path}: allowed_batch_sizes must be strictly increasing: {sizes}")
    if sizes and params.HasField("max_batch_size") and sizes[-1] != params.max_batch_size.value:
        raise ConfigError(f"{path}: the last allowed_batch_sizes entry ({sizes[-1]}) must "
                          f"equal max_batch_size ({params.max_batch_size.value})")
    if params.HasField("num_batch_threads") and params.num_batch_threads.value < 1:
        raise ConfigError(f"{path}: num_batch_threads must be >= 1")
    return params


def resolve_base_path(base_path: str) -> str:
    """An absolute local path for a config's ``base_path`` (remote file systems are not served)."""
    if "://" in base_path:
        raise ConfigError(f"base_path {base_path!r}: only local paths are served by the local "
                          "server (TF Serving itself also reads gs:// and s3://)")
    return os.path.abspath(os.path.expanduser(base_path))
