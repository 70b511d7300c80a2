"""The production TF Serving assets in serving/ and the config-file readers.

Each text-format config must parse with TF Serving's own messages (what tensorflow_model_server
does at start-up), and docker-compose.yml must run the official image with the right ports,
flags and mounts. TF Serving's fixture configs check the readers, bad input included.
"""
from pathlib import Path

import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import yaml
from google.protobuf import text_format

from ppm_tf.serving import config

REPO = Path(__file__).resolve().parents[2]
SERVING = REPO / "serving"
FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "tf_serving"


@pytest.fixture(scope="module")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.skip(f"TF Serving test fixtures not found at {FIXTURES}")
    return FIXTURES


def test_models_config_serves_urm_and_base_from_models_with_a_version_policy():
    parsed = config.load_model_server_config(str(SERVING / "models.config"))
    models = {model.name: model for model in parsed.model_config_list.config}
    assert sorted(models) == ["base", "urm"]
    for name, model in models.items():
        assert model.base_path == f"/models/{name}"
        assert model.model_platform == "tensorflow"
        assert model.model_version_policy.WhichOneof("policy_choice") == "latest"
        assert model.model_version_policy.latest.num_versions == 1


def test_models_config_is_the_text_format_tf_serving_reads():
    from tensorflow_serving.config import model_server_config_pb2

    text = (SERVING / "models.config").read_text()
    parsed = text_format.Parse(text, model_server_config_pb2.ModelServerConfig())
    assert len(parsed.model_config_list.config) == 2


def test_batching_config_parses_as_batching_parameters():
    params = config.load_batching_parameters(str(SERVING / "batching.config"))
    assert params.max_batch_size.value >= 100  # one request scores ~100 candidates
    assert params.num_batch_threads.value >= 1
    assert params.HasField("batch_timeout_micros")
    assert params.HasField("max_enqueued_batches")


def test_monitoring_config_enables_prometheus_on_the_standard_path():
    monitoring = config.load_monitoring_config(str(SERVING / "monitoring.config"))
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def _compose_service() -> dict:
    compose = yaml.safe_load((SERVING / "docker-compose.yml").read_text())
    (service,) = compose["services"].values()
    return service


def _flags(service: dict) -> dict:
    return dict(argument.lstrip("-").split("=", 1) for argument in service["command"])


def test_compose_runs_the_official_image_with_rest_and_grpc_ports():
    service = _compose_service()
    assert service["image"].split(":")[0] == "tensorflow/serving"
    assert service["entrypoint"] == ["tensorflow_model_server"]
    assert {"8500:8500", "8501:8501"} <= set(service["ports"])
    flags = _flags(service)
    assert flags["port"] == "8500" and flags["rest_api_port"] == "8501"


def test_compose_passes_every_config_file_and_mounts_saved_models():
    service = _compose_service()
    flags = _flags(service)
    for flag in ("model_config_file", "model_config_file_poll_wait_seconds", "enable_batching",
                 "batching_parameters_file", "monitoring_config_file"):
        assert flag in flags, flag
    assert flags["enable_batching"] == "true"
    assert int(flags["model_config_file_poll_wait_seconds"]) > 0
    mounts = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
    assert mounts["/models"] == "../saved_models"
    config_dir = SERVING / mounts["/config"]
    for flag in ("model_config_file", "batching_parameters_file", "monitoring_config_file"):
        in_container = Path(flags[flag])
        assert in_container.parent == Path("/config"), flag
        assert (config_dir / in_container.name).is_file(), f"{flag}: {in_container.name} missing"


def test_flags_in_compose_are_flags_the_local_server_also_takes():
    from ppm_tf.serving.server import build_parser

    known = {action.dest for action in build_parser()._actions}
    assert set(_flags(_compose_service())) <= known


def test_fixture_configs_parse(fixtures):
    batching = config.load_batching_parameters(str(fixtures / "batching_config.txt"))
    assert batching.max_batch_size.value == 128 and batching.num_batch_threads.value == 8
    monitoring = config.load_monitoring_config(str(fixtures / "monitoring_config.txt"))
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"
    good = config.read_text_proto(str(fixtures / "good_model_config.txt"),
                                  config.ModelServerConfig)
    assert [m.name for m in good.model_config_list.config] == ["half_plus_two", "half_plus_three"]


def test_bad_model_config_is_refused_with_the_file_and_the_parse_error(fixtures):
    path = str(fixtures / "bad_model_config.txt")
    with pytest.raises(config.ConfigError) as error:
        config.load_model_server_config(path)
    message = str(error.value)
    assert path in message
    assert "1:1" in message and "improperly" in message
    assert error.value.http_status == 400


def test_missing_config_file_says_which(tmp_path):
    with pytest.raises(config.ConfigError, match="nope.config"):
        config.load_model_server_config(str(tmp_path / "nope.config"))


@pytest.mark.parametrize("body, message", [
    ('config { name: "a" base_path: "/a" model_platform: "tensorflow" }'
     'config { name: "a" base_path: "/b" model_platform: "tensorflow" }',
     "Illegal to list model a multiple times"),
    ('config { name: "a" base_path: "/a" }', "neither ModelServerConfig::model_type"),
    ('config { name: "a" base_path: "/a" model_platform: "tensorflow_lite" }',
     "only \"tensorflow\""),
    ('config { name: "a" model_platform: "tensorflow" }', "empty base_path"),
    ('config { name: "a" base_path: "/a" model_platform: "tensorflow" '
     'model_version_policy { specific {} } }', "lists no versions"),
])
def test_model_configs_tf_serving_refuses_are_refused(tmp_path, body, message):
    path = tmp_path / "models.config"
    path.write_text(f"model_config_list {{ {body} }}")
    with pytest.raises(config.ConfigError, match=message):
        config.load_model_server_config(str(path))


def test_batching_sizes_must_end_at_max_batch_size(tmp_path):
    path = tmp_path / "batching.config"
    path.write_text("max_batch_size { value: 64 } allowed_batch_sizes: 8 allowed_batch_sizes: 32")
    with pytest.raises(config.ConfigError, match="must equal max_batch_size"):
        config.load_batching_parameters(str(path))


def test_single_model_flags_build_tf_servings_default_config():
    built = config.single_model_config("default", "/models/x")
    (model,) = built.model_config_list.config
    assert (model.name, model.base_path, model.model_platform) == ("default", "/models/x",
                                                                   "tensorflow")
