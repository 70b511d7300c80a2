"""The production deployment read from ``serving/docker-compose.yml`` (what the demo and the
end-to-end tests run), and the client's batch-safe request form."""
from pathlib import Path

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
from ppm_tf.serving.client import candidate_rows
from ppm_tf.serving.config import ConfigError, load_batching_parameters
from ppm_tf.serving.deployment import COMPOSE_FILE, host_path, production_options, volume_mounts

SERVING = Path(__file__).resolve().parents[2] / "serving"


def test_the_compose_file_is_the_repositorys_and_its_mounts_resolve_on_the_host():
    assert Path(COMPOSE_FILE) == SERVING / "docker-compose.yml"
    mounts = volume_mounts()
    assert mounts == {"/models": str(SERVING.parent / "saved_models"), "/config": str(SERVING)}
    assert host_path("/config/models.config", mounts) == str(SERVING / "models.config")
    with pytest.raises(ConfigError, match="not inside any volume"):
        host_path("/etc/models.config", mounts)


def test_production_options_are_the_compose_commands_flags_on_host_paths(tmp_path):
    options = production_options({"/models": str(tmp_path)})
    assert options.enable_batching is True
    assert options.batching_parameters_file == str(SERVING / "batching.config")
    assert options.monitoring_config_file == str(SERVING / "monitoring.config")
    assert options.allow_version_labels_for_unavailable_models is True
    assert options.file_system_poll_wait_seconds == 30
    assert load_batching_parameters(options.batching_parameters_file).max_batch_size.value == 1024
    models = {model.name: model for model in options.model_config.model_config_list.config}
    assert {name: model.base_path for name, model in models.items()} == {
        "urm": str(tmp_path / "urm"), "base": str(tmp_path / "base")}
    assert models["urm"].model_version_policy.latest.num_versions == 1
    # Local differences: free loopback ports, the model list applied once.
    assert (options.port, options.rest_api_port, options.bind_address) == (0, 0, "127.0.0.1")
    assert options.model_config_file == ""


def test_a_production_flag_the_local_server_does_not_take_is_an_error(tmp_path):
    compose = tmp_path / "docker-compose.yml"
    compose.write_text((SERVING / "docker-compose.yml").read_text().replace(
        "- --enable_batching=true", "- --enable_batching=true\n      - --xla_cpu_compilation_enabled=true"))
    with pytest.raises(ConfigError, match="--xla_cpu_compilation_enabled"):
        production_options(compose_file=str(compose))


def test_candidate_rows_repeat_the_per_request_inputs_per_candidate():
    rows = candidate_rows({"user_id": np.array([b"u1"], object),
                           "hist_ts": np.array([[3, 2, 0]], np.int64)},
                          {"item_id": np.array([b"a", b"b"], object)})
    assert rows["user_id"].tolist() == [b"u1", b"u1"]
    assert rows["hist_ts"].tolist() == [[3, 2, 0], [3, 2, 0]]
    assert rows["item_id"].tolist() == [b"a", b"b"]


@pytest.mark.parametrize("per_request, per_candidate, message", [
    ({"user_id": np.array([b"u1", b"u2"], object)}, {"item_id": [b"a"]},
     "'user_id' needs a leading dimension of 1"),
    ({"user_id": [b"u1"]}, {"item_id": [b"a"], "ppm_item_vec": np.zeros((2, 3))},
     "same number of rows"),
    ({"item_id": [b"a"]}, {"item_id": [b"a"]}, "both per request and per candidate"),
])
def test_candidate_rows_refuse_what_is_not_one_user_and_n_candidates(per_request,
                                                                     per_candidate, message):
    with pytest.raises(ValueError, match=message):
        candidate_rows(per_request, per_candidate)
