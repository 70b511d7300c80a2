"""The local model server run as production runs TF Serving: a separate process on 127.0.0.1
with ``serving/docker-compose.yml``'s flags and ``serving/``'s config files.

The compose file's mounts say where each container path lives: ``/config`` is the ``serving/``
folder (its files are copied as they are) and ``/models`` is the export folder, so the shipped
``models.config`` is rewritten only where a base path names ``/models``. Only the arms' entries
of the model list are kept; the ports are free ones on loopback. The compose file is read the
way ``serving.deployment`` reads it for the in-process server.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time

from google.protobuf import text_format
from tensorflow_serving.apis.get_model_status_pb2 import ModelVersionStatus

from ppm_tf.errors import StageError
from ppm_tf.serving import config as config_files
from ppm_tf.serving.client import GrpcClient, ServingClientError
from ppm_tf.serving.deployment import (COMPOSE_FILE_NAME, MODELS_MOUNT, compose_service,
                                       volume_mounts)
from ppm_tf.serving.testing import free_port

log = logging.getLogger(__name__)

START_TIMEOUT_S = 600.0
POLL_INTERVAL_S = 0.5  # between status calls, and between connection attempts


def production_flags(serving_dir: str, saved_models: str, models: list[str],
                     config_dir: str) -> list[str]:
    """The compose command's flags for a local process: container paths mapped to host paths,
    ``config_dir`` filled with the configs (the model list narrowed to ``models``), free
    loopback ports."""
    compose_file = os.path.join(serving_dir, COMPOSE_FILE_NAME)
    if not os.path.isfile(compose_file):
        raise StageError(f"{compose_file} not found: --serving-dir must name the repository's "
                         "serving/ folder (the production TF Serving configs)")
    mounts = {**volume_mounts(compose_file), MODELS_MOUNT: os.path.abspath(saved_models)}
    flags = {}
    for argument in compose_service(compose_file)["command"]:
        name, _, value = str(argument).lstrip("-").partition("=")
        flags[name] = value
    for container, host in mounts.items():
        if container != MODELS_MOUNT and os.path.isdir(host):
            shutil.copytree(host, config_dir, dirs_exist_ok=True)
    for name, value in flags.items():
        for container in mounts:
            if value.startswith(container.rstrip("/") + "/") and container != MODELS_MOUNT:
                flags[name] = os.path.join(config_dir, os.path.relpath(value, container))
    _write_model_list(flags["model_config_file"], mounts, models)
    flags.update(port=str(free_port()), rest_api_port=str(free_port()),
                 bind_address="127.0.0.1")
    return [f"--{name}={value}" for name, value in flags.items()]


def _write_model_list(path: str, mounts: dict[str, str], models: list[str]) -> None:
    shipped = config_files.load_model_server_config(path)
    entries = {entry.name: entry for entry in shipped.model_config_list.config}
    missing = [name for name in models if name not in entries]
    if missing:
        raise StageError(f"the production model list (serving/models.config) does not serve "
                         f"{missing}; it serves {sorted(entries)}")
    narrowed = config_files.ModelServerConfig()
    for name in models:
        entry = narrowed.model_config_list.config.add()
        entry.CopyFrom(entries[name])
        for container, host in mounts.items():
            if entry.base_path.startswith(container.rstrip("/") + "/"):
                entry.base_path = os.path.join(host, os.path.relpath(entry.base_path, container))
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(text_format.MessageToString(narrowed))


class ProductionServer:
    """``python -m ppm_tf.serving`` with the production flags; a context manager that waits
    until every model is AVAILABLE and stops the process (SIGTERM) on exit."""

    def __init__(self, serving_dir: str, saved_models: str, models: list[str], run_dir: str):
        self.models = models
        config_dir = os.path.join(run_dir, "serving_config")
        shutil.rmtree(config_dir, ignore_errors=True)
        os.makedirs(config_dir)
        self.flags = production_flags(serving_dir, saved_models, models, config_dir)
        self.log_path = os.path.join(run_dir, "server.log")
        self.grpc_target = f"127.0.0.1:{self._flag('port')}"
        self.rest_url = f"http://127.0.0.1:{self._flag('rest_api_port')}"
        self._process: subprocess.Popen | None = None

    def _flag(self, name: str) -> str:
        prefix = f"--{name}="
        return next(flag[len(prefix):] for flag in self.flags if flag.startswith(prefix))

    def __enter__(self) -> "ProductionServer":
        log.info("starting the model server: %s", " ".join(self.flags))
        with open(self.log_path, "w", encoding="utf-8") as server_log:
            self._process = subprocess.Popen([sys.executable, "-m", "ppm_tf.serving", *self.flags],
                                             stdout=server_log, stderr=subprocess.STDOUT)
        try:
            self._wait_until_available()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_until_available(self) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        with GrpcClient(self.grpc_target, timeout_s=5.0, retries=0,
                        reconnect_backoff_s=POLL_INTERVAL_S) as client:
            waiting = list(self.models)
            while waiting:
                if self._process.poll() is not None:
                    raise StageError(f"the model server exited with {self._process.returncode}"
                                     f" before serving {waiting}:\n{self.log_tail()}")
                if time.monotonic() > deadline:
                    raise StageError(f"{waiting} not AVAILABLE within {START_TIMEOUT_S:.0f} s:\n"
                                     f"{self.log_tail()}")
                try:
                    states = [version.state for version in
                              client.status(waiting[0]).model_version_status]
                except ServingClientError:
                    states = []
                if ModelVersionStatus.AVAILABLE in states:
                    waiting.pop(0)
                else:
                    time.sleep(POLL_INTERVAL_S)

    def log_tail(self, lines: int = 30) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])

    def __exit__(self, *exc_info) -> None:
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
