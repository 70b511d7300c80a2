"""What both encoders' fine-tuning shares: the optimizer and its learning-rate schedule.

The fit loop itself is ``ppm_tf.fitting.fit``, the one every model here uses.
"""
from __future__ import annotations

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf.encoders.presets import FitConfig


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
