"""Prometheus metrics for the local server, named as TF Serving names them.

``:tensorflow:serving:request_count`` (by model and status code),
``:tensorflow:serving:request_latency`` (a histogram in microseconds, by model, API and entry
point) and ``:tensorflow:cc:saved_model:load_attempt_count`` (by model path and outcome), served
in the Prometheus text format on the REST port at the ``--monitoring_config_file`` path, so one
dashboard reads both servers. Only configured model names become label values: a client asking
for made-up models cannot grow the metric set without bound.
"""
from __future__ import annotations

import threading
from collections.abc import Callable

_LATENCY_BUCKETS_US = (100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000,
                       250_000, 500_000, 1_000_000, 2_500_000, 5_000_000, 10_000_000)

REQUEST_COUNT = ":tensorflow:serving:request_count"
REQUEST_LATENCY = ":tensorflow:serving:request_latency"
LOAD_ATTEMPT_COUNT = ":tensorflow:cc:saved_model:load_attempt_count"


def _labels(pairs) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace("\"", "\\\"").replace("\n", "\\n")
    return "{" + ",".join(f'{key}="{escape(str(value))}"' for key, value in pairs) + "}"


class Metrics:
    """Thread-safe counters and latency histograms, rendered in Prometheus text format."""

    def __init__(self, known_model: Callable[[str], bool] = lambda name: True):
        self._known_model = known_model
        self._lock = threading.Lock()
        self._requests: dict[tuple, int] = {}
        self._latency: dict[tuple, list] = {}  # key -> [cumulative bucket counts, sum_us, count]
        self._loads: dict[tuple, int] = {}

    def record_request(self, model_name: str, api: str, entrypoint: str, status: str,
                       seconds: float) -> None:
        model_name = model_name if self._known_model(model_name) else ""
        micros = seconds * 1e6
        with self._lock:
            key = (model_name, status)
            self._requests[key] = self._requests.get(key, 0) + 1
            histogram = self._latency.setdefault((model_name, api, entrypoint),
                                                 [0] * (len(_LATENCY_BUCKETS_US) + 2))
            for index, bound in enumerate(_LATENCY_BUCKETS_US):
                if micros <= bound:
                    histogram[index] += 1
            histogram[-2] += micros
            histogram[-1] += 1

    def record_load(self, model_path: str, ok: bool) -> None:
        with self._lock:
            key = (model_path, "success" if ok else "fail")
            self._loads[key] = self._loads.get(key, 0) + 1

    def render(self) -> str:
        """The metrics page (Prometheus exposition format 0.0.4)."""
        with self._lock:
            requests = dict(self._requests)
            latency = {key: list(value) for key, value in self._latency.items()}
            loads = dict(self._loads)
        lines = [f"# TYPE {REQUEST_COUNT} counter"]
        for (model, status), count in sorted(requests.items()):
            lines.append(f"{REQUEST_COUNT}{_labels([('model_name', model), ('status', status)])}"
                         f" {count}")
        lines.append(f"# TYPE {REQUEST_LATENCY} histogram")
        for (model, api, entry), values in sorted(latency.items()):
            base = [("model_name", model), ("API", api), ("entrypoint", entry)]
            for bound, count in zip(_LATENCY_BUCKETS_US, values):
                lines.append(f"{REQUEST_LATENCY}_bucket{_labels(base + [('le', bound)])} {count}")
            lines.append(f"{REQUEST_LATENCY}_bucket{_labels(base + [('le', '+Inf')])} "
                         f"{values[-1]}")
            lines.append(f"{REQUEST_LATENCY}_sum{_labels(base)} {values[-2]:.0f}")
            lines.append(f"{REQUEST_LATENCY}_count{_labels(base)} {values[-1]}")
        lines.append(f"# TYPE {LOAD_ATTEMPT_COUNT} counter")
        for (path, status), count in sorted(loads.items()):
            labels = _labels([("model_path", path), ("status", status)])
            lines.append(f"{LOAD_ATTEMPT_COUNT}{labels} {count}")
        return "\n".join(lines) + "\n"
