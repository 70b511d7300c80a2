"""``train_encoders``: fine-tune both modal encoders, evaluate them, export them frozen.

    WORK/encoders/text/, WORK/encoders/image/   the frozen SavedModels (``export``)
    WORK/encoders/metrics.json                 held-out metrics of both tasks + baselines
    WORK/encoders/train/                       the learned vocabulary and resume state

Interruptions are resumed, at two levels: within an encoder, ``tf.keras.callbacks.
BackupAndRestore`` saves model, optimizer and epoch at every epoch end and a rerun continues
from the last finished epoch; across encoders, ``train/run.json`` records which encoders of
the unfinished run are already exported, and a rerun with the same settings skips them.
A run that finishes removes ``run.json``, so the next call trains afresh.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf.encoders import export, presets
from ppm_tf.encoders.presets import FitConfig
from ppm_tf.work_layout import WorkLayout

logger = logging.getLogger(__name__)

ENCODERS = (export.TEXT, export.IMAGE)
METRICS_JSON = "metrics.json"


def encoders_path(work: str, *parts: str) -> str:
    return "/".join([WorkLayout(work).encoders_dir, *parts])


def learning_rate_schedule(fit: FitConfig, steps_per_epoch: int,
                           epochs: int) -> tf.keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to ``learning_rate`` then cosine decay to 1% of it, over ``epochs`` (the
    run's, which may override the preset's)."""
    total = max(1, epochs * steps_per_epoch)
    warmup = int(fit.warmup_fraction * total)
    return tf.keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0 if warmup else fit.learning_rate,
        decay_steps=max(1, total - warmup), alpha=0.01,
        warmup_target=fit.learning_rate if warmup else None, warmup_steps=warmup)


def adamw(fit: FitConfig, steps_per_epoch: int, epochs: int) -> tf.keras.optimizers.Optimizer:
    """AdamW on ``learning_rate_schedule``; biases, LayerNorm/BatchNorm scales and the EP
    logit scale are not decayed (as in BERT)."""
    optimizer = tf.keras.optimizers.AdamW(
        learning_rate=learning_rate_schedule(fit, steps_per_epoch, epochs),
        weight_decay=fit.weight_decay)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta", "log_scale"])
    return optimizer


def fit_with_backup(model: tf.keras.Model, dataset: tf.data.Dataset, epochs: int,
                    backup_dir: str,
                    callbacks: Sequence[tf.keras.callbacks.Callback]) -> tf.keras.callbacks.History:
    """``model.fit`` that resumes from ``backup_dir`` after an interruption.

    The model must be built (BackupAndRestore restores into existing variables).
    ``BackupAndRestore`` comes first so an epoch is saved before any other callback can
    stop training at that epoch's end. A finished fit removes ``backup_dir``.
    """
    # Optimizer slots created up front: otherwise the first step traces the graph twice.
    model.optimizer.build(model.trainable_variables)
    backup = tf.keras.callbacks.BackupAndRestore(backup_dir=backup_dir)
    history = model.fit(dataset, epochs=epochs, callbacks=[backup, *callbacks], verbose="auto")
    if tf.io.gfile.exists(backup_dir):
        tf.io.gfile.rmtree(backup_dir)
    return history


def first_epoch(history: tf.keras.callbacks.History) -> int:
    """The epoch this call started at (> 0 when it resumed from a backup)."""
    return int(history.epoch[0]) if history.epoch else -1


class _RunState:
    """``train/run.json``: the settings of an unfinished run and the encoders it exported."""

    def __init__(self, work: str, settings: dict[str, Any]):
        self.path = encoders_path(work, "train", "run.json")
        self.settings = settings
        self.done: list[str] = []
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path, "r") as handle:
                state = json.load(handle)
            if state.get("settings") == settings:
                self.done = list(state.get("done", []))
        self._write()

    def _write(self) -> None:
        tf.io.gfile.makedirs(self.path.rsplit("/", 1)[0])
        with tf.io.gfile.GFile(self.path, "w") as handle:
            json.dump({"settings": self.settings, "done": self.done}, handle, indent=2)

    def mark_done(self, kind: str) -> None:
        self.done.append(kind)
        self._write()

    def finish(self) -> None:
        tf.io.gfile.remove(self.path)


def train_encoders(work: str, preset: str = "tiny", seed: int = 0,
                   bert_checkpoint: str | None = None, imagenet_weights: str | None = None, *,
                   encoders: Sequence[str] = ENCODERS, epochs: int | None = None,
                   callbacks: Sequence[tf.keras.callbacks.Callback] = ()) -> dict[str, Any]:
    """Fits the text encoder (query matching) and the image encoder (entity prediction) on
    the preprocessed ``work`` directory, exports both frozen, and writes metrics.json.

    Args:
        preset: ``presets.PRESETS`` name (``tiny``, ``demo``, ``paper``).
        bert_checkpoint: local BERT release directory to start the text encoder from
            (``pretrained.BertCheckpoint``); its vocabulary replaces the learned one.
        imagenet_weights: local ResNet weights file for the image backbone
            (``pretrained.load_resnet_weights``).
        encoders: which to train (default both); an encoder not trained keeps its export.
        epochs: overrides the preset's epochs of both tasks (e.g. 1 for a smoke run).
        callbacks: extra Keras callbacks for both fits (run after the backup callback).

    Returns:
        metrics.json's content: ``{"preset", "seed", "text": {...}, "image": {...}}``.
    """
    from ppm_tf.encoders.image_training import fit_image_encoder
    from ppm_tf.encoders.text_training import fit_text_encoder

    config = presets.preset(preset)
    unknown = sorted(set(encoders) - set(ENCODERS))
    if unknown:
        raise ValueError(f"unknown encoder(s) {unknown}; expected some of {list(ENCODERS)}")
    settings = {"preset": preset, "seed": seed, "bert_checkpoint": bert_checkpoint,
                "imagenet_weights": imagenet_weights, "epochs": epochs,
                "encoders": list(encoders)}
    state = _RunState(work, settings)
    fitters = {
        export.TEXT: lambda: fit_text_encoder(work, config, seed, bert_checkpoint, epochs,
                                              callbacks),
        export.IMAGE: lambda: fit_image_encoder(work, config, seed, imagenet_weights, epochs,
                                                callbacks),
    }
    for kind in ENCODERS:
        if kind not in encoders:
            continue
        if kind in state.done:
            logger.info("%s encoder already exported by this unfinished run; skipped", kind)
            continue
        fitters[kind]()
        state.mark_done(kind)
    metrics = {"preset": preset, "seed": seed}
    for kind in ENCODERS:
        try:
            metrics[kind] = export.read_description(encoders_path(work, kind))["metrics"]
        except FileNotFoundError:
            pass
    with tf.io.gfile.GFile(encoders_path(work, METRICS_JSON), "w") as handle:
        handle.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    state.finish()
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    """The table ``ppm train-encoders`` prints."""
    lines = [f"modal encoders (preset {metrics.get('preset')}, seed {metrics.get('seed')})"]
    text = metrics.get(export.TEXT)
    if text:
        lines.append(f"  query -> item over {text['num_items']:,} items, "
                     f"{text['model']['queries']:,} held-out queries")
        for name in ("model", "tfidf", "popularity", "random"):
            if name in text:
                row = text[name]
                lines.append(f"    {name:<10} Recall@10 {row['recall_at_10']:.4f}   "
                             f"MRR {row['mrr']:.4f}")
    image = metrics.get(export.IMAGE)
    if image:
        lines.append(f"  entity prediction on {image['model']['items']:,} held-out items "
                     f"({image['num_entities']} entities)")
        for name in ("model", "prior"):
            row = image[name]
            lines.append(f"    {name:<10} micro-F1 {row['micro_f1']:.4f}  macro-F1 "
                         f"{row['macro_f1']:.4f}  micro-AUC {row['micro_auc']:.4f}  "
                         f"macro-AUC {row['macro_auc']:.4f}")
    return "\n".join(lines)
