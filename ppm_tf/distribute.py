"""Which ``tf.distribute`` strategy a training stage runs under (``--strategy``).

- ``default``: one process, the default strategy;
- ``mirrored``: one process, every local GPU (``MirroredStrategy``);
- ``multi_worker``: several processes, each told its place by ``TF_CONFIG``
  (``MultiWorkerMirroredStrategy``, synchronous all-reduce). Workers that lose a peer fail
  after ``collective_timeout_seconds`` instead of hanging, so a restarted cluster resumes
  from the last backup (Keras' ``BackupAndRestore``, see ``fitting``).

It sits on the ground floor: the encoders and the CTR models train under it alike.
"""
from __future__ import annotations

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
