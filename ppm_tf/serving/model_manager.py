"""The model manager: which versions of which models are loaded, and swapping them safely.

It does what TF Serving's ServerCore does for a ``model_config_list``. Every model's base path is
polled; the version policy picks the aspired versions among the complete version folders; new
aspired versions are loaded (and warmed up) *before* the versions they replace are unloaded, and
an unloaded version is closed only after its in-flight requests finish, so a rollout never fails
a request. A version that fails to load is reported in the model's status (state END with the
error) and the versions already serving keep serving; it is retried when its folder changes.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterator, Sequence

import grpc
from tensorflow.core.protobuf import config_pb2

from ppm_tf.serving import versions, warmup
from ppm_tf.serving.config import (ConfigError, ModelConfig, ModelServerConfig,
                                   resolve_base_path, validate_model_server_config)
from ppm_tf.serving.errors import from_exception, invalid_argument, not_found
from ppm_tf.serving.servable import Servable
from ppm_tf.serving.signature_inputs import InputRules

log = logging.getLogger(__name__)

LOADING, AVAILABLE, UNLOADING, END = "LOADING", "AVAILABLE", "UNLOADING", "END"


@dataclasses.dataclass(frozen=True)
class VersionStatus:
    """One version's state, as in TF Serving's ``ModelVersionStatus``."""
    version: int
    state: str
    error_code: grpc.StatusCode = grpc.StatusCode.OK
    error_message: str = ""


def _check_config(config: ModelServerConfig) -> None:
    """Refuses a config TF Serving would refuse, or one with paths this server cannot read."""
    for model in validate_model_server_config(config):
        resolve_base_path(model.base_path)


class _Model:
    """One configured model: its config, the published versions and every version's state."""

    def __init__(self, config: ModelConfig):
        self.config: ModelConfig | None = None
        self.base_path = ""
        self.servables: dict[int, Servable] = {}  # the routing table: AVAILABLE versions only
        self.states: dict[int, VersionStatus] = {}
        self.failed: dict[int, tuple] = {}  # version -> (path, fingerprint) of a failed load
        self.labels: dict[str, int] = {}
        self.configure(config)

    def configure(self, config: ModelConfig | None) -> None:
        self.config = config
        if config is not None:
            self.base_path = resolve_base_path(config.base_path)


class ModelManager:
    """Loads, serves and swaps the versions of the models in a ``ModelServerConfig``.

    Args:
      config: TF Serving's ``ModelServerConfig`` (``model_config_list``).
      file_system_poll_wait_seconds: how often base paths are polled; 0 or less polls once.
      saved_model_tags: the MetaGraphDef tag set to load (TF Serving: ``serve``).
      session_config: TensorFlow ``ConfigProto`` for each version's session.
      enable_model_warmup: replay ``assets.extra/tf_serving_warmup_requests`` before serving.
      allow_version_labels_for_unavailable_models: as TF Serving's flag of that name.
      run_timeout_ms: per-run deadline inside TensorFlow (0: none).
      input_rules: how requests' inputs are checked (shapes, sizes, the batching rule).
      drain_timeout_s: how long an unloaded version waits for its in-flight requests.
      on_load: called as ``on_load(path, ok)`` after each load attempt (metrics).
    """

    def __init__(self, config: ModelServerConfig, *, file_system_poll_wait_seconds: float = 1.0,
                 saved_model_tags: Sequence[str] = ("serve",),
                 session_config: config_pb2.ConfigProto | None = None,
                 enable_model_warmup: bool = True,
                 allow_version_labels_for_unavailable_models: bool = False,
                 run_timeout_ms: int = 0, input_rules: InputRules = InputRules(),
                 drain_timeout_s: float = 30.0, on_load: Callable[[str, bool], None] | None = None):
        _check_config(config)
        self._config = config
        self._poll_wait = file_system_poll_wait_seconds
        self._tags = tuple(saved_model_tags)
        self._session_config = session_config
        self._warmup = enable_model_warmup
        self._allow_unavailable_labels = allow_version_labels_for_unavailable_models
        self._run_timeout_ms = run_timeout_ms
        self._input_rules = input_rules
        self._drain_timeout_s = drain_timeout_s
        self._on_load = on_load
        self._models: dict[str, _Model] = {}
        self._lock = threading.Lock()  # guards routing tables, states and labels
        self._sync_lock = threading.Lock()  # one poll or reload at a time
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self._warned_missing: set[str] = set()

    # Life cycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Loads the initial aspired versions (blocking), then polls in the background."""
        with self._sync_lock:
            self._apply_config(self._config)
            self._sync_all()
            self._update_labels()
        if self._poll_wait > 0:
            self._poller = threading.Thread(target=self._poll_loop, name="model-manager-poll",
                                            daemon=True)
            self._poller.start()

    def stop(self) -> None:
        """Stops polling and unloads every version (waiting for in-flight requests)."""
        self._stopping.set()
        if self._poller is not None:
            self._poller.join()
        with self._sync_lock:
            for model in self._models.values():
                for version in list(model.servables):
                    self._unload(model, version)

    def reload_config(self, config: ModelServerConfig) -> None:
        """Applies a new model list (HandleReloadConfigRequest): add, change, remove models."""
        _check_config(config)
        with self._sync_lock:
            self._config = config
            self._apply_config(config)
            self._sync_all()
            self._update_labels()

    def poll(self) -> None:
        """One pass over every base path: load new aspired versions, unload the rest."""
        with self._sync_lock:
            self._sync_all()

    def _poll_loop(self) -> None:
        while not self._stopping.wait(self._poll_wait):
            try:
                self.poll()
            except Exception:  # a poll must never kill the poller; the next one retries
                log.exception("Polling the model base paths failed")

    # Requests -----------------------------------------------------------------------------

    @contextlib.contextmanager
    def servable(self, name: str, version: int | None = None,
                 label: str | None = None) -> Iterator[Servable]:
        """Holds one loaded version for the duration of a request (latest if no version)."""
        servable = self._acquire(name, version, label)
        try:
            yield servable
        finally:
            servable.release()

    def _acquire(self, name: str, version: int | None, label: str | None) -> Servable:
        with self._lock:
            model = self._models.get(name)
            if label is not None:
                version = model.labels.get(label) if model is not None else None
                if version is None:
                    raise invalid_argument(f"Unrecognized servable version label: {label}")
            published = model.servables if model is not None else {}
            if version is None:
                servable = published[max(published)] if published else None
                request = f"Latest({name})"
            else:
                servable = published.get(version)
                request = f"Specific({name}, {version})"
            if servable is None:
                raise not_found(f"Servable not found for request: {request}")
            servable.acquire()
            return servable

    def version_status(self, name: str, version: int | None = None) -> list[VersionStatus]:
        """States of one version or of all versions (newest first) ever seen for ``name``."""
        with self._lock:
            model = self._models.get(name)
            states = dict(model.states) if model is not None else {}
        if version is not None:
            if version not in states:
                raise not_found(f"Could not find version {version} of model {name}")
            return [states[version]]
        if not states:
            raise not_found(f"Could not find any versions of model {name}")
        return [states[v] for v in sorted(states, reverse=True)]

    def model_names(self) -> list[str]:
        """The models in the current config."""
        with self._lock:
            return sorted(name for name, model in self._models.items() if model.config)

    def is_configured(self, name: str) -> bool:
        model = self._models.get(name)
        return model is not None and model.config is not None

    def available_versions(self, name: str) -> list[int]:
        with self._lock:
            model = self._models.get(name)
            return sorted(model.servables) if model is not None else []

    # Syncing with the file system -----------------------------------------------------------

    def _apply_config(self, config: ModelServerConfig) -> None:
        wanted = {model.name: model for model in config.model_config_list.config}
        with self._lock:
            for name, model_config in wanted.items():
                if name in self._models:
                    self._models[name].configure(model_config)
                else:
                    self._models[name] = _Model(model_config)
            for name, model in self._models.items():
                if name not in wanted:
                    model.configure(None)
                    model.labels = {}

    def _sync_all(self) -> None:
        for model in list(self._models.values()):
            if self._stopping.is_set():
                return
            self._sync_model(model)

    def _sync_model(self, model: _Model) -> None:
        if model.config is None:  # removed from the config
            for version in list(model.servables):
                self._unload(model, version)
            return
        name = model.config.name
        try:
            on_disk = versions.list_version_dirs(model.base_path)
        except OSError as error:
            if model.base_path not in self._warned_missing:
                log.warning("No versions of model %s: cannot list base path %s (%s)", name,
                            model.base_path, error.strerror or error)
                self._warned_missing.add(model.base_path)
            return  # keep serving whatever is loaded
        self._warned_missing.discard(model.base_path)
        complete = {v: path for v, path in on_disk.items()
                    if versions.is_complete_saved_model(path)}
        aspired = versions.aspired_versions(complete, model.config.model_version_policy)
        for version in sorted(aspired, reverse=True):
            current = model.servables.get(version)
            if current is not None and current.path == complete[version]:
                continue
            failed = model.failed.get(version)
            if failed is not None and failed == (complete[version],
                                                 versions.fingerprint(complete[version])):
                continue  # same files that failed before: wait until they change
            self._load(model, version, complete[version])
        stale = [version for version in model.servables if version not in aspired]
        if not stale:
            return
        if aspired and not any(version in model.servables for version in aspired):
            # Availability first: never drop the last serving versions for ones that failed.
            log.warning("Model %s: keeping version(s) %s serving; no aspired version of %s is "
                        "available", name, stale, sorted(aspired))
            return
        for version in stale:
            self._unload(model, version)

    def _set_state(self, model: _Model, status: VersionStatus) -> None:
        with self._lock:
            model.states[status.version] = status

    def _load(self, model: _Model, version: int, path: str) -> None:
        name = model.config.name
        log.info("Loading servable: {name: %s version: %d} from %s", name, version, path)
        self._set_state(model, VersionStatus(version, LOADING))
        servable = None
        try:
            servable = Servable.load(name, version, path, self._tags, self._session_config,
                                     self._run_timeout_ms, self._input_rules)
            if self._warmup:
                warmup.replay(servable)
        except Exception as exception:  # any load failure is this version's, not the server's
            error = from_exception(exception)
            if servable is not None:
                servable.close(drain_timeout_s=0)
            with self._lock:
                model.failed[version] = (path, versions.fingerprint(path))
                model.states[version] = VersionStatus(version, END, error.code, error.message)
            log.error("Loading servable: {name: %s version: %d} failed: %s: %s", name, version,
                      error.code.name, error.message)
            self._report_load(path, ok=False)
            return
        with self._lock:
            replaced = model.servables.get(version)
            model.servables[version] = servable
            model.states[version] = VersionStatus(version, AVAILABLE)
            model.failed.pop(version, None)
        if replaced is not None:
            replaced.close(self._drain_timeout_s)
        log.info("Successfully loaded servable version {name: %s version: %d}", name, version)
        self._report_load(path, ok=True)

    def _unload(self, model: _Model, version: int) -> None:
        with self._lock:
            servable = model.servables.pop(version)
            model.states[version] = VersionStatus(version, UNLOADING)
        servable.close(self._drain_timeout_s)
        self._set_state(model, VersionStatus(version, END))
        log.info("Unloaded servable version {name: %s version: %d}", servable.name, version)

    def _report_load(self, path: str, ok: bool) -> None:
        if self._on_load is not None:
            self._on_load(path, ok)

    def _update_labels(self) -> None:
        """Version labels from the config; each must name an AVAILABLE version (ServerCore)."""
        new_labels: dict[str, dict[str, int]] = {}
        for name, model in self._models.items():
            if model.config is None:
                continue
            for label, version in model.config.version_labels.items():
                moved = model.labels.get(label, version) != version
                allowed = self._allow_unavailable_labels and not moved
                if not allowed and version not in model.servables:
                    raise ConfigError(f"Request to assign label to version {version} of model "
                                      f"{name}, which is not currently available for inference",
                                      grpc.StatusCode.FAILED_PRECONDITION)
                new_labels.setdefault(name, {})[label] = version
        with self._lock:
            for name, model in self._models.items():
                model.labels = new_labels.get(name, {})
