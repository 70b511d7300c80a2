"""One loaded SavedModel version: its session, signatures and in-flight requests.

A version is loaded the way TF Serving loads it: the SavedModel's MetaGraphDef into its own graph
and session (TF1 and TF2 SavedModels alike, tables and init ops included), and signatures are run
by tensor name. Runs go through ``Session`` callables, which feed the C++ session directly, as
in TF Serving. A version carries the :class:`InputRules` its requests are checked by; with
batching on, a run that feeds and fetches exactly one signature's tensors is held to TF
Serving's batching rule here, where TF Serving's batching session applies it (requests are not
merged). Requests hold the version while they run; unloading waits for them to finish before
the session is closed.
"""
from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import config_pb2

from ppm_tf.serving.signature_inputs import InputRules, check_batch

log = logging.getLogger(__name__)

_MAX_CACHED_CALLABLES = 256


class Servable:
    """A loaded model version. Build with :meth:`load`; requests use :meth:`run`."""

    def __init__(self, name: str, version: int, path: str, session, meta_graph_def,
                 run_timeout_ms: int = 0, input_rules: InputRules = InputRules()):
        self.name = name
        self.version = version
        self.path = path
        self.meta_graph_def = meta_graph_def
        self.signature_defs = dict(meta_graph_def.signature_def)
        self.input_rules = input_rules
        # TF Serving batches a run whose feeds and fetches are one signature's, all of them.
        self._batched_runs = {
            (frozenset(info.name for info in signature.inputs.values()),
             frozenset(info.name for info in signature.outputs.values()))
            for signature in self.signature_defs.values()}
        self._session = session
        self._run_timeout_ms = run_timeout_ms
        self._callables: dict[tuple, object] = {}
        self._callables_lock = threading.Lock()
        self._in_flight = 0
        self._closing = False
        self._idle = threading.Condition()

    @classmethod
    def load(cls, name: str, version: int, path: str, tags: Sequence[str] = ("serve",),
             session_config: config_pb2.ConfigProto | None = None,
             run_timeout_ms: int = 0, input_rules: InputRules = InputRules()) -> "Servable":
        """Loads the MetaGraphDef tagged ``tags`` from ``path``, restoring variables/tables."""
        graph = tf.Graph()
        session = tf.compat.v1.Session(graph=graph, config=session_config)
        try:
            with graph.as_default():
                meta_graph_def = tf.compat.v1.saved_model.load(session, list(tags), path)
            graph.finalize()  # nothing may add ops to a serving graph after loading
        except BaseException:
            session.close()
            raise
        return cls(name, version, path, session, meta_graph_def, run_timeout_ms, input_rules)

    def run(self, feeds: dict[str, np.ndarray], fetches: Sequence[str]) -> list[np.ndarray]:
        """Runs the graph: ``feeds`` by tensor name (``"x:0"``), returns ``fetches`` in order."""
        limit = self.input_rules.batch_size_limit
        if limit is not None and (frozenset(feeds), frozenset(fetches)) in self._batched_runs:
            check_batch([np.shape(array) for array in feeds.values()], limit)
        key = (tuple(feeds), tuple(fetches))
        runner = self._callables.get(key)
        if runner is None:
            runner = self._make_callable(key)
        return runner(*feeds.values())

    def _make_callable(self, key: tuple):
        options = config_pb2.CallableOptions(feed=list(key[0]), fetch=list(key[1]))
        if self._run_timeout_ms > 0:
            options.run_options.timeout_in_ms = self._run_timeout_ms
        # Session._make_callable_from_options is the C++ MakeCallable binding (the public
        # make_callable(feed_list=...) re-checks shapes in Python, which TF Serving does not).
        make_callable = self._session._make_callable_from_options  # pylint: disable=W0212
        runner = make_callable(options)
        with self._callables_lock:
            if len(self._callables) >= _MAX_CACHED_CALLABLES:
                self._callables.clear()
            self._callables[key] = runner
        return runner

    @property
    def prepared_runs(self) -> frozenset[tuple]:
        """The (feeds, fetches) runs prepared so far. Preparing one prunes and optimises the
        graph and builds its executors (TF Serving's session caches them by the same key);
        warm-up prepares each signature's before the version serves."""
        with self._callables_lock:
            return frozenset(self._callables)

    def acquire(self) -> None:
        """Counts a request in; the manager calls this while the version is published."""
        with self._idle:
            if self._closing:
                raise RuntimeError(f"{self.name} version {self.version} is unloading")
            self._in_flight += 1

    def release(self) -> None:
        with self._idle:
            self._in_flight -= 1
            if self._in_flight == 0:
                self._idle.notify_all()

    def close(self, drain_timeout_s: float = 30.0) -> None:
        """Waits for in-flight requests (up to ``drain_timeout_s``), then frees the session."""
        with self._idle:
            self._closing = True
            if not self._idle.wait_for(lambda: self._in_flight == 0, timeout=drain_timeout_s):
                log.warning("Closing %s version %d with %d requests still running after %.0f s",
                            self.name, self.version, self._in_flight, drain_timeout_s)
        with self._callables_lock:
            self._callables.clear()
        self._session.close()

    def __repr__(self) -> str:
        return f"Servable({self.name!r}, version={self.version}, path={self.path!r})"
