"""Which ``tf.distribute`` strategy a training stage runs under (``--strategy``), and the
few rules every fit and save follows under it.

- ``default``: one process, the default strategy;
- ``mirrored``: one process, every local GPU (``MirroredStrategy``);
- ``multi_worker``: several processes, each told its place by ``TF_CONFIG``
  (``MultiWorkerMirroredStrategy``, synchronous all-reduce). Workers that lose a peer fail
  after ``collective_timeout_seconds`` instead of hanging, so a restarted cluster resumes
  from the last backup (Keras' ``BackupAndRestore``, see ``fitting``).

Under several workers every worker runs the same steps and the same saves: a save reads
synchronised variables (metrics), which is a collective op, so a worker that skipped it
would leave its peers waiting. Only the chief's copy is kept (``save_path``).

It sits on the ground floor: the encoders and the CTR models train under it alike.
"""
from __future__ import annotations

import contextlib
import tempfile
from typing import Iterator

STRATEGIES = ("default", "mirrored", "multi_worker")


def make_strategy(name: str = "default", collective_timeout_seconds: float | None = 300.0):
    """The ``tf.distribute.Strategy`` ``name`` names. ``multi_worker`` must be made before
    any other TensorFlow op runs in the process (TensorFlow's rule for collective ops)."""
    import tensorflow as tf  # here, so that the CLI lists STRATEGIES without TensorFlow

    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        options = tf.distribute.experimental.CommunicationOptions(
            timeout_seconds=collective_timeout_seconds)
        return tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
    raise ValueError(f"unknown --strategy {name!r}; expected one of {STRATEGIES}")


def is_chief(strategy) -> bool:
    """Whether this worker writes the run's outputs (one writer per cluster)."""
    return bool(strategy.extended.should_checkpoint)


@contextlib.contextmanager
def save_path(path: str, strategy) -> Iterator[str]:
    """Where this worker saves what the chief saves to ``path``: ``path`` itself on the
    chief, a scratch folder removed afterwards on every other worker (TensorFlow's
    multi-worker saving pattern)."""
    if is_chief(strategy):
        yield path
        return
    with tempfile.TemporaryDirectory(prefix="ppm-worker-save-") as scratch:
        yield f"{scratch}/{path.rstrip('/').rpartition('/')[2]}"


def global_loss(logs: dict) -> dict:
    """A ``tfrs.Model`` step's logs with ``loss`` over the global batch.

    Each replica's loss is its share of the global batch's mean (``compute_average_loss``)
    or sum, so the global loss is their sum. Metrics are already synchronised across
    replicas, so ``fitting`` reports the first replica's logs (``distribute_reduction_method
    = "first"``); Keras' default sums every log over replicas, which multiplies an AUC by
    the number of workers (keras-team/keras#16664).
    """
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return logs
    loss = context.all_reduce(tf.distribute.ReduceOp.SUM, logs["loss"])
    return {**logs, "loss": loss, "total_loss": loss + logs["regularization_loss"]}
