"""One function run in a second Python process while this one goes on (``ppm demo`` trains
the rows that need only preprocess's outputs there, beside precompute, single-core Beam work
that leaves a core of a 2-core machine idle, and the cached rows).

A fresh interpreter (``spawn``): the parent's TensorFlow state and threads are not forked.
``result()`` returns the function's value or raises its exception; used as a context
manager, it ends the process when the parent fails first (``stop()``), so nothing keeps
training behind a failed run.
"""
from __future__ import annotations

import multiprocessing
import os
from typing import Any, Callable


def side_process_worthwhile() -> bool:
    """True on a machine with at least 2 CPU cores and no GPU: on one core the two processes
    only take turns, and on a GPU each TensorFlow process would claim the whole device's
    memory."""
    import tensorflow as tf

    return (os.cpu_count() or 1) >= 2 and not tf.config.list_physical_devices("GPU")


class SideProcess:
    """``function(*args)`` running in a spawned process from construction on."""

    def __init__(self, function: Callable[..., Any], *args: Any):
        self._pool = multiprocessing.get_context("spawn").Pool(processes=1)
        self._pending = self._pool.apply_async(function, args)

    def __enter__(self) -> "SideProcess":
        return self

    def __exit__(self, error_type, *_) -> None:
        if error_type is not None:
            self.stop()

    def result(self) -> Any:
        """Waits for the function; its value, or its exception raised here."""
        try:
            return self._pending.get()
        finally:
            self._pool.close()
            self._pool.join()

    def stop(self) -> None:
        """Ends the process whatever it is doing."""
        self._pool.terminate()
        self._pool.join()
