"""The one way every Keras model here is fitted (encoders, PPM pre-training, the ablation
rows): one ``model.fit`` with Keras' own callbacks — ``BackupAndRestore`` for resume (at
every epoch's end and every ``save_every_steps`` steps, the multi-worker-safe mechanism),
``EarlyStopping`` on the validation click AUC with the best weights restored (optionally the
starting weights too, kept when no epoch beats them), and ``TerminateOnNaN`` plus a check of
the weights — and the cost the evaluation reports.

A resumed run ends where an uninterrupted one ends: each epoch's batches come from
``epoch -> Dataset`` (its own seeded, deterministic order), the run is read as one stream that
starts exactly at the step the backup was taken after, and early stopping's state (best
value, patience count, best weights, the validation curve) is backed up beside the model.

Under a ``tf.distribute`` strategy (``ppm_tf.distribute``) every worker runs the same fit on
its share of each global batch; only the chief writes the run state and removes the backup.

It sits on the ground floor because the encoders (an early stage) and the CTR models (a later
one) both use it.
"""
from __future__ import annotations

import dataclasses
import io
import json
import math
import time
from typing import Callable, Sequence

import numpy as np
import tensorflow as tf

from ppm_tf.distribute import is_chief
from ppm_tf.errors import StageError

VALIDATION_METRIC = "val_click_auc"
_KERAS_BACKUP = "keras"  # BackupAndRestore's folder inside the backup dir
_RUN_STATE = "run_state.json"  # cost and curve of the epochs already done
_BEST_WEIGHTS = "best_weights.npz"


class TrainingDiverged(StageError):
    """The loss or the weights became NaN or infinite: nothing from this run is kept."""


@dataclasses.dataclass(frozen=True)
class EarlyStoppingConfig:
    """Stop when the validation click AUC has not improved for ``patience`` epochs, never
    before ``min_epochs``; the best epoch's weights are restored. With ``keep_start`` the
    starting weights are scored first and kept when no epoch beats them: for a model that
    starts at a baseline (IDRec's ``count_offset``)."""

    patience: int
    min_epochs: int = 1
    keep_start: bool = False


@dataclasses.dataclass(frozen=True)
class FitResult:
    """The whole run's cost, resumed parts included."""

    train_seconds: float
    examples: int  # examples trained on, over all epochs of the run
    epochs: int  # epochs trained (fewer than the budget when early stopping ended the run)
    final_loss: float
    first_epoch: int = 0  # where this call started: (0, 0) unless it resumed from a backup
    first_step: int = 0
    best_epoch: int | None = None  # 1-based, chosen on validation (0: the starting weights,
    # which no epoch beat); None without validation
    validation_curve: tuple[float, ...] = ()  # validation click AUC after each epoch
    validation_start: float | None = None  # validation click AUC of the starting weights
    steps_per_epoch: int = 0

    @property
    def examples_per_second(self) -> float:
        return self.examples / max(self.train_seconds, 1e-9)


def fit(model: tf.keras.Model, data: tf.data.Dataset | Callable[[int], tf.data.Dataset],
        epochs: int, backup_dir: str, examples_per_epoch: int = 0, verbose: int | str = 1,
        callbacks: Sequence[tf.keras.callbacks.Callback] = (), *,
        steps_per_epoch: int | None = None, validation_data: tf.data.Dataset | None = None,
        early_stopping: EarlyStoppingConfig | None = None,
        save_every_steps: int | None = None) -> FitResult:
    """Fits ``model`` for up to ``epochs`` epochs, resuming from ``backup_dir`` when a
    backup is there (called again after a crash, even mid-epoch, it continues the run).

    Args:
        data: one epoch's batches, or ``epoch -> that epoch's batches``.
        steps_per_epoch: batches per epoch; default the dataset's known cardinality.
        validation_data: scored after every epoch (its ``click_auc`` becomes
            ``val_click_auc``); needed by ``early_stopping``.
        save_every_steps: also back up every so many steps (default: at epoch ends only).
        callbacks: extra callbacks, run after the backup of each epoch.

    The backup is removed once training completes or diverges.
    """
    epoch_data = data if callable(data) else (lambda epoch: data)
    steps_per_epoch = steps_per_epoch or _known_steps(epoch_data(0))
    if early_stopping is not None and validation_data is None:
        raise ValueError("early stopping needs validation_data")
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    keras_backup = f"{backup_dir}/{_KERAS_BACKUP}"
    first_epoch, first_step = resume_point(keras_backup, steps_per_epoch)
    state = _RunState.load(backup_dir)
    stream = _stream(epoch_data, first_epoch, first_step, epochs, steps_per_epoch)
    chief = is_chief(model.distribute_strategy)
    # Metrics are synchronised across replicas and losses reduced in the step
    # (``distribute.global_loss``): every replica's logs are the global ones.
    model.distribute_reduction_method = "first"
    if not model.built:  # BackupAndRestore restores into built variables
        with model.distribute_strategy.scope():
            model(placeholder_batch(stream.element_spec))
    scores_start = ((first_epoch, first_step) == (0, 0) and not state.stopped
                    and early_stopping is not None and early_stopping.keep_start)
    stopper = (ResumableEarlyStopping(
        backup_dir, early_stopping, writes=chief,
        score_start=_sharded_by_data(validation_data) if scores_start else None)
        if early_stopping is not None else None)
    if first_epoch >= epochs or state.stopped:
        # Training had ended when the run stopped, before its model was written.
        _restore_finished_run(model, keras_backup, stopper)
    else:
        run_callbacks = [_FiniteGuard(backup_dir if chief else None),
                         tf.keras.callbacks.TerminateOnNaN(),
                         *([stopper] if stopper else []), state.recorder(writes=chief),
                         _EpochEndBackup(keras_backup, save_every_steps, steps_per_epoch),
                         *callbacks]
        model.fit(_sharded_by_data(stream), epochs=epochs, initial_epoch=first_epoch,
                  steps_per_epoch=steps_per_epoch,
                  validation_data=validation_data and _sharded_by_data(validation_data),
                  verbose=verbose, callbacks=run_callbacks)
    if chief and tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)
    trained = len(state.losses)
    return FitResult(
        train_seconds=state.train_seconds, examples=examples_per_epoch * trained,
        epochs=trained, final_loss=float(state.losses[-1]) if trained else math.nan,
        first_epoch=first_epoch, first_step=first_step,
        best_epoch=stopper.best_epoch + 1 if stopper and stopper.best_weights is not None
        else None,
        validation_curve=tuple(state.validation_curve),
        validation_start=stopper.start if stopper else None, steps_per_epoch=steps_per_epoch)


def _restore_finished_run(model: tf.keras.Model, keras_backup: str,
                          stopper: "ResumableEarlyStopping | None") -> None:
    """The last backup's weights, or early stopping's best ones."""
    latest = tf.train.latest_checkpoint(f"{keras_backup}/chief")
    if latest is not None:
        tf.train.Checkpoint(model=model).read(latest).expect_partial()
    if stopper is not None:
        stopper.set_model(model)
        stopper.on_train_begin()
        stopper.on_train_end()


def resume_point(keras_backup: str, steps_per_epoch: int) -> tuple[int, int]:
    """(epoch, step) the run continues at: where Keras' ``BackupAndRestore`` will resume."""
    latest = tf.train.latest_checkpoint(f"{keras_backup}/chief")
    if latest is None:
        return 0, 0
    reader = tf.train.load_checkpoint(latest)
    epoch = int(reader.get_tensor("ckpt_saved_epoch/.ATTRIBUTES/VARIABLE_VALUE"))
    batch = int(reader.get_tensor("ckpt_saved_batch/.ATTRIBUTES/VARIABLE_VALUE"))
    if batch < 0 or batch >= steps_per_epoch - 1:
        return epoch + 1, 0
    return epoch, batch + 1


def placeholder_batch(spec) -> dict[str, tf.Tensor]:
    """A one-row batch of ``spec`` (zeros, empty strings): builds a model's variables without
    reading data."""
    def placeholder(tensor_spec: tf.TensorSpec) -> tf.Tensor:
        shape = [1 if size is None else size for size in tensor_spec.shape]
        if tensor_spec.dtype == tf.string:
            return tf.fill(shape, "")
        return tf.zeros(shape, tensor_spec.dtype)

    return tf.nest.map_structure(placeholder, spec)


def _known_steps(dataset: tf.data.Dataset) -> int:
    steps = int(dataset.cardinality())
    if steps < 1:
        raise ValueError("the training data's length is unknown: pass steps_per_epoch (or "
                         "give the dataset a known cardinality)")
    return steps


def _sharded_by_data(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Under several workers, each takes its share of every global batch: sharding by file
    would need at least one shard file per worker, and keeps the batches of a
    single-worker run only when files divide evenly."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _stream(epoch_data: Callable[[int], tf.data.Dataset], first_epoch: int, first_step: int,
            epochs: int, steps_per_epoch: int) -> tf.data.Dataset:
    """The epochs still to run as one dataset, starting at ``first_step`` of ``first_epoch``;
    each epoch takes exactly ``steps_per_epoch`` batches so epochs never drift."""
    parts = [epoch_data(epoch).take(steps_per_epoch) for epoch in range(first_epoch, epochs)]
    parts[0] = parts[0].skip(first_step)
    stream = parts[0]
    for part in parts[1:]:
        stream = stream.concatenate(part)
    return stream


class _EpochEndBackup(tf.keras.callbacks.BackupAndRestore):
    """``BackupAndRestore`` that backs up at every epoch's end and, with ``save_every_steps``,
    also within epochs (Keras' step mode alone skips the epoch ends)."""

    def __init__(self, backup_dir: str, save_every_steps: int | None, steps_per_epoch: int):
        super().__init__(backup_dir, save_freq=save_every_steps or steps_per_epoch + 1)
        self.steps_per_epoch = steps_per_epoch

    def on_epoch_end(self, epoch, logs=None):
        self._training_state._ckpt_saved_batch.assign(self.steps_per_epoch - 1)
        self._backup(epoch=epoch, batch=self.steps_per_epoch - 1)
        self._batches_count = 0


class _RunState:
    """``run_state.json``: what the epochs already done cost and scored, so a resumed run
    reports the whole run's cost (not only its own part)."""

    def __init__(self, backup_dir: str, content: dict):
        self.path = f"{backup_dir}/{_RUN_STATE}"
        self.losses: list[float] = content.get("losses", [])
        self.validation_curve: list[float] = content.get("validation_curve", [])
        self.train_seconds: float = content.get("train_seconds", 0.0)
        self.stopped: bool = content.get("stopped", False)

    @classmethod
    def load(cls, backup_dir: str) -> "_RunState":
        path = f"{backup_dir}/{_RUN_STATE}"
        if not tf.io.gfile.exists(path):
            return cls(backup_dir, {})
        with tf.io.gfile.GFile(path) as handle:
            return cls(backup_dir, json.load(handle))

    def recorder(self, writes: bool) -> tf.keras.callbacks.Callback:
        return _RunStateRecorder(self, writes)

    def write(self) -> None:
        tf.io.gfile.makedirs(self.path.rpartition("/")[0])
        with tf.io.gfile.GFile(self.path, "w") as handle:
            json.dump({"losses": self.losses, "validation_curve": self.validation_curve,
                       "train_seconds": self.train_seconds, "stopped": self.stopped}, handle)


class _RunStateRecorder(tf.keras.callbacks.Callback):
    """Records each epoch's loss, validation AUC and training time (validation excluded)."""

    def __init__(self, state: _RunState, writes: bool):
        super().__init__()
        self.state = state
        self.writes = writes  # one writer per cluster: the chief
        self.started = self.trained = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started, self.trained = time.perf_counter(), 0.0

    def on_test_begin(self, logs=None):  # validation, at the epoch's end
        self.trained = time.perf_counter() - self.started

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        del self.state.losses[epoch:]  # an epoch redone after a crash replaces its record
        del self.state.validation_curve[epoch:]
        self.state.losses.append(float(logs.get("loss", math.nan)))
        if VALIDATION_METRIC in logs:
            self.state.validation_curve.append(float(logs[VALIDATION_METRIC]))
        self.state.train_seconds += self.trained or time.perf_counter() - self.started
        self.state.stopped = bool(self.model.stop_training)
        if self.writes:
            self.state.write()


class ResumableEarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Keras' ``EarlyStopping`` on ``val_click_auc`` whose state survives a crash: it is
    backed up with the run, so a resumed run stops and restores exactly as an uninterrupted
    one would.

    With ``score_start`` (the validation data, given when a ``keep_start`` run starts
    afresh) the starting weights are the first candidate, kept when no epoch beats them on
    validation; ``best_epoch`` is then -1 (0 in ``FitResult``)."""

    def __init__(self, backup_dir: str, config: EarlyStoppingConfig, writes: bool = True,
                 score_start: tf.data.Dataset | None = None):
        super().__init__(monitor=VALIDATION_METRIC, mode="max", patience=config.patience,
                         restore_best_weights=True, start_from_epoch=config.min_epochs - 1)
        self.state_path = f"{backup_dir}/early_stopping.json"
        self.weights_path = f"{backup_dir}/{_BEST_WEIGHTS}"
        self.writes = writes  # one writer per cluster: the chief
        self.score_start = score_start
        self.start: float | None = None
        self.last_epoch = -1

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.score_start is not None:
            scores = self.model.evaluate(self.score_start, verbose=0, return_dict=True)
            self.start = self.best = float(scores[VALIDATION_METRIC.removeprefix("val_")])
            self.best_weights, self.best_epoch = self.model.get_weights(), -1
            self._write(best_changed=True)
            return
        if not tf.io.gfile.exists(self.state_path):
            return
        with tf.io.gfile.GFile(self.state_path) as handle:
            state = json.load(handle)
        self.wait, self.best, self.best_epoch = state["wait"], state["best"], state["best_epoch"]
        self.last_epoch, self.start = state["last_epoch"], state.get("start")
        if tf.io.gfile.exists(self.weights_path):
            with tf.io.gfile.GFile(self.weights_path, "rb") as handle:
                stored = np.load(io.BytesIO(handle.read()))
                self.best_weights = [stored[f"w{index}"] for index in range(len(stored.files))]

    def on_epoch_end(self, epoch, logs=None):
        if epoch <= self.last_epoch:  # already counted before a crash
            return
        best_before = self.best_epoch if self.best_weights is not None else None
        super().on_epoch_end(epoch, logs)
        self.last_epoch = epoch
        self._write(best_changed=self.best_weights is not None and self.best_epoch != best_before)

    def _write(self, best_changed: bool) -> None:
        if not self.writes:
            return
        tf.io.gfile.makedirs(self.state_path.rpartition("/")[0])
        if best_changed:
            buffer = io.BytesIO()  # numpy's zip writer seeks, which GFile does not allow
            np.savez(buffer, **{f"w{index}": weight
                                for index, weight in enumerate(self.best_weights)})
            with tf.io.gfile.GFile(self.weights_path, "wb") as handle:
                handle.write(buffer.getvalue())
        with tf.io.gfile.GFile(self.state_path, "w") as handle:
            json.dump({"wait": self.wait, "best": float(self.best),
                       "best_epoch": self.best_epoch, "last_epoch": self.last_epoch,
                       "start": self.start}, handle)


class _FiniteGuard(tf.keras.callbacks.Callback):
    """At each epoch's end, before anything is backed up: a non-finite loss or weight stops
    the run with ``TrainingDiverged`` and drops the backup."""

    def __init__(self, backup_dir: str | None):
        super().__init__()
        self.backup_dir = backup_dir  # None: another worker removes the backup

    def on_epoch_end(self, epoch, logs=None):
        loss = float((logs or {}).get("loss", math.nan))
        problem = None
        if not math.isfinite(loss):
            problem = f"training loss became {loss} after {epoch + 1} epoch(s)"
        else:
            # NaN inputs can leave the loss finite: in graph mode the fused MatMul+ReLU kernel
            # maps NaN to 0 going forward, while the gradients still turn the weights into NaN.
            broken = [variable.name for variable in self.model.trainable_variables
                      if not bool(tf.reduce_all(tf.math.is_finite(variable)))]
            if broken:
                problem = (f"training left non-finite weights in {len(broken)} variable(s), "
                           f"first {broken[0]}, although the loss stayed {loss}")
        if problem:
            if self.backup_dir and tf.io.gfile.exists(self.backup_dir):
                tf.io.gfile.rmtree(self.backup_dir)
            raise TrainingDiverged(f"{problem}; no model was written. Lower the learning rate "
                                   "or check the input features for NaN/inf values.")


def trainable_parameters(model: tf.keras.Model) -> int:
    return int(sum(np.prod(variable.shape) for variable in model.trainable_variables))
