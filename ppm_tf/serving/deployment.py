"""The production deployment, as the local server runs it: the flags and config files of
``serving/docker-compose.yml``, read from the files themselves, so that the demo and the tests
run what production runs (batching rule, model list, version policies, monitoring).

The compose service's ``tensorflow_model_server`` command is parsed with the local server's
own flag parser (a production flag it does not know is an error, not skipped). Container paths
(``/config/models.config``, the models' ``base_path: "/models/urm"``) become host paths through
the service's volume mounts; ``mounts`` replaces a mount's host side, e.g. to serve a run's own
``saved_models/``. Three things differ on purpose: ports (free loopback ports by default),
the bind address (127.0.0.1), and the model list, which is the file's with host paths, applied
once (the config-file poll would re-read container paths).
"""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path

import yaml

from ppm_tf.serving import config as config_files
from ppm_tf.serving.server import ServerOptions, build_parser, options_from_args

REPOSITORY_SERVING_DIR = str(Path(__file__).resolve().parents[2] / "serving")
COMPOSE_FILE_NAME = "docker-compose.yml"
COMPOSE_FILE = os.path.join(REPOSITORY_SERVING_DIR, COMPOSE_FILE_NAME)
SERVICE = "tf-serving"
MODELS_MOUNT = "/models"  # where the compose service mounts the export folder (saved_models/)
MODEL_SERVER = "tensorflow_model_server"
_PATH_OPTIONS = ("model_config_file", "batching_parameters_file", "monitoring_config_file",
                 "model_base_path")


def compose_service(compose_file: str = COMPOSE_FILE, service: str = SERVICE) -> dict:
    """The service's definition in the compose file, checked to run the model server."""
    if not os.path.isfile(compose_file):
        raise config_files.ConfigError(
            f"{compose_file} not found: the production serving configs live in the repository's "
            "serving/ folder (run from a checkout, or pass compose_file)")
    with open(compose_file, encoding="utf-8") as handle:
        services = (yaml.safe_load(handle) or {}).get("services", {})
    if service not in services:
        raise config_files.ConfigError(f"{compose_file} has no service {service!r}; it has "
                                       f"{sorted(services)}")
    definition = services[service]
    entrypoint = definition.get("entrypoint") or []
    if MODEL_SERVER not in (entrypoint if isinstance(entrypoint, list) else [entrypoint]):
        raise config_files.ConfigError(f"service {service!r} of {compose_file} does not run "
                                       f"{MODEL_SERVER} (entrypoint {entrypoint!r})")
    return definition


def volume_mounts(compose_file: str = COMPOSE_FILE, service: str = SERVICE) -> dict[str, str]:
    """The service's bind mounts: {container path: host path}."""
    base = os.path.dirname(os.path.abspath(compose_file))
    mounts = {}
    for volume in compose_service(compose_file, service).get("volumes", []):
        host, container = str(volume).split(":")[:2]
        mounts[container.rstrip("/") or "/"] = os.path.normpath(os.path.join(base, host))
    return mounts


def host_path(path: str, mounts: Mapping[str, str]) -> str:
    """A container path on the host, through the mount that holds it (the longest match)."""
    for container in sorted(mounts, key=len, reverse=True):
        if path == container or path.startswith(container.rstrip("/") + "/"):
            return os.path.join(mounts[container], os.path.relpath(path, container))
    raise config_files.ConfigError(f"{path} is not inside any volume the service mounts "
                                   f"({sorted(mounts)})")


def production_options(mounts: Mapping[str, str] | None = None, *,
                       compose_file: str = COMPOSE_FILE, service: str = SERVICE,
                       port: int | None = 0, rest_api_port: int | None = 0) -> ServerOptions:
    """``ServerOptions`` of the compose service's command, on host paths.

    Args:
        mounts: {container path: host path} replacing the compose file's own mounts, e.g.
            ``{MODELS_MOUNT: "runs/demo/saved_models"}``.
        port, rest_api_port: gRPC and REST ports (0: a free port; None: off).
    """
    command = [str(flag) for flag in compose_service(compose_file, service).get("command", [])]
    args, unknown = build_parser().parse_known_args(command)
    if unknown:
        raise config_files.ConfigError(f"{compose_file}: flags the local server does not take: "
                                       f"{unknown}")
    options = options_from_args(args)
    all_mounts = {**volume_mounts(compose_file, service),
                  **{container.rstrip("/"): os.path.abspath(host)
                     for container, host in (mounts or {}).items()}}
    paths = {name: host_path(getattr(options, name), all_mounts)
             for name in _PATH_OPTIONS if getattr(options, name)}
    options = dataclasses.replace(options, **paths, port=port, rest_api_port=rest_api_port)
    if options.model_config_file:
        model_config = config_files.load_model_server_config(options.model_config_file)
        for model in model_config.model_config_list.config:
            model.base_path = host_path(model.base_path, all_mounts)
        options = dataclasses.replace(options, model_config=model_config, model_config_file="")
    return options
