"""The one way every Keras model here is fitted (encoders, PPM pre-training, the ablation
rows): progress bars, a checkpoint after every epoch with resume, a NaN guard, and the
wall-clock time and throughput the evaluation reports.

It sits on the ground floor because the encoders (an early stage) and the CTR models (a later
one) both use it.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from ppm_tf.errors import StageError


class TrainingDiverged(StageError):
    """The loss or the weights became NaN or infinite: nothing from this run is kept."""


@dataclasses.dataclass(frozen=True)
class FitResult:
    train_seconds: float
    examples: int
    epochs: int  # epochs this call ran (fewer than asked for after a resume)
    final_loss: float
    first_epoch: int = 0  # the epoch this call started at: > 0 when it resumed from a backup

    @property
    def examples_per_second(self) -> float:
        return self.examples / max(self.train_seconds, 1e-9)


def fit(model: tf.keras.Model, dataset: tf.data.Dataset | Callable[[int], tf.data.Dataset],
        epochs: int, backup_dir: str, examples_per_epoch: int = 0, verbose: int | str = 1,
        callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> FitResult:
    """Fits ``model`` epoch by epoch, checkpointing model, optimizer and epoch to
    ``backup_dir`` at each epoch's end (before ``callbacks`` see it, so a callback that stops
    the run keeps that epoch). Called again after a crash (even mid-epoch), it resumes from
    the last finished epoch and ends where an uninterrupted run ends: pass ``dataset`` as
    ``epoch -> Dataset`` (each epoch's own seeded order) so the resumed epochs read the same
    batches. The backup is removed once training completes or diverges.

    Throughput counts the epochs this call ran.
    """
    if model.trainable_variables:  # a built model: its optimizer slots now, or the first
        model.optimizer.build(model.trainable_variables)  # step traces the graph twice
    finished_epochs = tf.Variable(0, dtype=tf.int64, trainable=False)
    checkpoint = tf.train.Checkpoint(model=model, optimizer=model.optimizer,
                                     finished_epochs=finished_epochs)
    manager = tf.train.CheckpointManager(checkpoint, backup_dir, max_to_keep=1)
    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)  # restores lazily built variables too
    first_epoch = int(finished_epochs.numpy())
    losses: list[float] = []
    backup = _EpochBackup(manager, finished_epochs, losses, backup_dir)
    started = time.perf_counter()
    for epoch in range(first_epoch, epochs):
        epoch_data = dataset(epoch) if callable(dataset) else dataset
        # epochs=total so the progress bar says "Epoch 2/3"; _OneEpoch stops after one.
        model.fit(epoch_data, epochs=epochs, initial_epoch=epoch, verbose=verbose,
                  callbacks=[tf.keras.callbacks.TerminateOnNaN(), backup, *callbacks,
                             _OneEpoch()])
    seconds = time.perf_counter() - started
    if tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)
    final_loss = float(losses[-1]) if losses else float("nan")
    return FitResult(seconds, examples_per_epoch * len(losses), len(losses), final_loss,
                     first_epoch)


class _EpochBackup(tf.keras.callbacks.Callback):
    """At each epoch's end: the NaN guard, then the checkpoint of that epoch."""

    def __init__(self, manager: tf.train.CheckpointManager, finished_epochs: tf.Variable,
                 losses: list[float], backup_dir: str):
        super().__init__()
        self.manager = manager
        self.finished_epochs = finished_epochs
        self.losses = losses
        self.backup_dir = backup_dir

    def on_epoch_end(self, epoch, logs=None):
        self.losses.append(float((logs or {}).get("loss", float("nan"))))
        _check_finite(self.model, self.losses, self.backup_dir)
        self.finished_epochs.assign(epoch + 1)
        self.manager.save()


class _OneEpoch(tf.keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def _check_finite(model: tf.keras.Model, losses: list[float], backup_dir: str) -> None:
    """Raises ``TrainingDiverged`` (and drops the backup) on a non-finite loss or weight."""
    problem = None
    if not losses or not all(math.isfinite(loss) for loss in losses):
        problem = (f"training loss became {losses[-1] if losses else 'undefined'} after "
                   f"{len(losses)} epoch(s)")
    else:
        # NaN inputs can leave the loss finite: in graph mode the fused MatMul+ReLU kernel
        # maps NaN to 0 going forward, while the gradients still turn the weights into NaN.
        broken = [variable.name for variable in model.trainable_variables
                  if not bool(tf.reduce_all(tf.math.is_finite(variable)))]
        if broken:
            problem = (f"training left non-finite weights in {len(broken)} variable(s), first "
                       f"{broken[0]}, although the loss stayed {losses[-1]}")
    if problem:
        if tf.io.gfile.exists(backup_dir):
            tf.io.gfile.rmtree(backup_dir)
        raise TrainingDiverged(f"{problem}; no model was written. Lower the learning rate or "
                               "check the input features for NaN/inf values.")


def trainable_parameters(model: tf.keras.Model) -> int:
    return int(sum(np.prod(variable.shape) for variable in model.trainable_variables))
