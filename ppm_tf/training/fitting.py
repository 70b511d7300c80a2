"""One way to fit any of our Keras models: progress bars, checkpoints with resume, NaN guard,
and the wall-clock time and throughput the evaluation reports."""
from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import tensorflow as tf

from ppm_tf.errors import StageError


class TrainingDiverged(StageError):
    """The loss became NaN or infinite: nothing from this run is kept."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    train_seconds: float
    examples: int
    epochs: int
    final_loss: float

    @property
    def examples_per_second(self) -> float:
        return self.examples / max(self.train_seconds, 1e-9)


def fit(model: tf.keras.Model, dataset: tf.data.Dataset, epochs: int, backup_dir: str,
        examples_per_epoch: int, verbose: int = 1) -> FitResult:
    """Fits ``model``; a run interrupted mid-training resumes from ``backup_dir`` (the last
    finished epoch) when called again with the same arguments. Throughput counts the epochs
    this call ran."""
    callbacks = [tf.keras.callbacks.BackupAndRestore(backup_dir),
                 tf.keras.callbacks.TerminateOnNaN()]
    started = time.perf_counter()
    history = model.fit(dataset, epochs=epochs, callbacks=callbacks, verbose=verbose)
    seconds = time.perf_counter() - started
    losses = history.history.get("loss", [float("nan")])
    if not losses or not all(math.isfinite(loss) for loss in losses):
        raise TrainingDiverged(
            f"training loss became {losses[-1] if losses else 'undefined'} after "
            f"{len(losses)} epoch(s); no model was written. Lower the learning rate or check "
            "the input features for NaN/inf values.")
    return FitResult(seconds, examples_per_epoch * len(losses), len(losses), float(losses[-1]))


def trainable_parameters(model: tf.keras.Model) -> int:
    return int(sum(np.prod(variable.shape) for variable in model.trainable_variables))
