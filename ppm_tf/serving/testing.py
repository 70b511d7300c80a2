"""Helpers for tests and notebooks that run a local server: start one, wait, publish versions."""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator

from ppm_tf.serving.server import ModelServer, ServerOptions


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (for a server in another process)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def running_server(**options) -> Iterator[ModelServer]:
    """A started :class:`ModelServer` on free loopback ports (``grpc_port``/``rest_port``)."""
    options.setdefault("port", 0)
    options.setdefault("rest_api_port", 0)
    server = ModelServer(ServerOptions(**options)).start()
    try:
        yield server
    finally:
        server.stop(grace_s=2.0)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 10.0,
               interval_s: float = 0.05, what: str = "condition") -> None:
    """Polls ``predicate`` until it is true; raises ``TimeoutError`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached within {timeout_s} s")
        time.sleep(interval_s)


def publish_version(source_dir: str, base_path: str, version: int) -> str:
    """Copies a SavedModel into ``base_path/<version>`` atomically: a polling server sees no
    half-written version (copy under a hidden temporary name, then one rename)."""
    os.makedirs(base_path, exist_ok=True)
    target = os.path.join(base_path, str(version))
    staging = os.path.join(base_path, f".tmp-{version}-{uuid.uuid4().hex[:8]}")
    shutil.copytree(source_dir, staging)
    os.rename(staging, target)
    return target
