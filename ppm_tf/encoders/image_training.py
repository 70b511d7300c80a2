"""Fine-tuning the image encoder with entity prediction, its held-out evaluation and export.

Items with an image are split by a seeded hash of their id: ``holdout_fraction`` of them are
never trained on and give the EP metrics (micro/macro F1 at the preset's threshold, micro and
macro AUC), next to the trivial baseline that predicts every entity's training frequency.
Decoded training images are cached in memory as uint8 when they fit in ``CACHE_BYTES``.
"""
from __future__ import annotations

import logging
from typing import Any, Sequence

import numpy as np

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.distribute import save_path
from ppm_tf.encoders import data, evaluation, export
from ppm_tf.encoders.image import EntityPredictionModel, ImageEncoder, TrainingAugmentation
from ppm_tf.encoders.presets import EncoderPreset
from ppm_tf.encoders.resnet_weights import (KERAS_APPLICATIONS, load_resnet_weights,
                                        resnet_weights_format)
from ppm_tf.encoders.fitting import adamw
from ppm_tf.fitting import fit as fit_model
from ppm_tf.work_layout import WorkLayout

logger = logging.getLogger(__name__)
CACHE_BYTES = 2 * 2**30


def _as_uint8(pixels: tf.Tensor, labels: tf.Tensor):
    return tf.cast(tf.round(pixels), tf.uint8), labels


def _as_float(pixels: tf.Tensor, labels: tf.Tensor):
    return tf.cast(pixels, tf.float32), labels


def _examples(work: str, entities: list[str], config: EncoderPreset, seed: int,
              heldout: bool) -> tf.data.Dataset:
    return data.entity_examples(work, entities, config.image.image_size, heldout=heldout,
                                holdout_fraction=config.holdout_fraction, seed=seed)


def predict_entities(model: EntityPredictionModel, dataset: tf.data.Dataset,
                     batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, probabilities)``, both ``[items, num_entities]``, for unbatched examples."""
    labels, probabilities = [], []
    for pixels, batch_labels in dataset.batch(batch_size):
        probabilities.append(tf.sigmoid(model(pixels, training=False)).numpy())
        labels.append(batch_labels.numpy())
    if not labels:
        return np.zeros((0, model.num_entities)), np.zeros((0, model.num_entities))
    return np.concatenate(labels), np.concatenate(probabilities)


def fit_image_encoder(work: str, config: EncoderPreset, seed: int,
                      imagenet_weights: str | None = None, epochs: int | None = None,
                      callbacks: Sequence[tf.keras.callbacks.Callback] = (),
                      strategy: tf.distribute.Strategy | None = None,
                      save_every_steps: int | None = None) -> dict[str, Any]:
    """Trains (under ``strategy``, default one process), evaluates and exports the image
    encoder; returns its metrics. ``save_every_steps``: also back up within epochs."""
    strategy = strategy or tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(seed)
    entities = data.read_entity_vocabulary(work)
    image_config = config.image
    pixel_scaling = ("caffe" if imagenet_weights
                     and resnet_weights_format(imagenet_weights) == KERAS_APPLICATIONS
                     else "unit")
    with strategy.scope():
        # keras-cv's augmentation takes seed 0 for no seed and then draws from TensorFlow's
        # global generator, which set_random_seed leaves unseeded: two fits of seed 0 differed.
        tf.random.set_global_generator(tf.random.Generator.from_seed(seed))
        encoder = ImageEncoder.from_config_preset(image_config, pixel_scaling=pixel_scaling,
                                                  name="image_encoder")
        if imagenet_weights:
            loaded = load_resnet_weights(encoder, imagenet_weights)
            logger.info("loaded %d ResNet layers from %s", loaded, imagenet_weights)
        model = EntityPredictionModel(
            encoder, len(entities),
            TrainingAugmentation(image_config.translation, image_config.contrast, seed=seed),
            name="entity_prediction")
        model(tf.zeros([1, image_config.image_size, image_config.image_size, 3]))

    train = _examples(work, entities, config, seed, heldout=False)
    num_train = int(train.map(lambda pixels, labels: 0).reduce(0, lambda n, _: n + 1))
    if num_train == 0:
        raise ValueError(f"no item with a decodable image to train entity prediction on in "
                         f"{work}")
    fit = config.entity_prediction
    batch_size = min(fit.batch_size, num_train)
    steps = -(-num_train // batch_size)
    train = train.map(_as_uint8)
    if num_train * image_config.image_size ** 2 * 3 <= CACHE_BYTES:
        train = train.cache()
    train = (train.shuffle(min(num_train, 20_000), seed=seed, reshuffle_each_iteration=True)
             .batch(batch_size).map(_as_float).prefetch(tf.data.AUTOTUNE)
             .apply(tf.data.experimental.assert_cardinality(steps)))
    epochs = epochs or fit.epochs_for(steps)
    with strategy.scope():
        model.compile(optimizer=adamw(fit, steps, epochs),
                      loss=tf.keras.losses.BinaryCrossentropy(from_logits=True),
                      metrics=[tf.keras.metrics.AUC(from_logits=True, name="auc")])
    logger.info("entity prediction: %d training images, %d entities, batch %d, %d epochs",
                num_train, len(entities), batch_size, epochs)
    result = fit_model(model, train, epochs, WorkLayout(work).encoders_train("image_backup"),
                       num_train, verbose="auto", callbacks=callbacks, save_every_steps=save_every_steps)

    train_labels = np.concatenate([labels.numpy() for _, labels in train])
    heldout_labels, probabilities = predict_entities(
        model, _examples(work, entities, config, seed, heldout=True), config.eval_batch_size)
    metrics = {"model": evaluation.entity_prediction_metrics(heldout_labels, probabilities,
                                                             config.ep_threshold),
               "prior": evaluation.prior_baseline(train_labels, heldout_labels,
                                                  config.ep_threshold),
               "num_entities": len(entities), "train_items": num_train,
               "threshold": config.ep_threshold, "holdout_fraction": config.holdout_fraction,
               "epochs": epochs, "resumed_from_epoch": result.first_epoch,
               "train_examples": result.examples,
               "train_seconds": round(result.train_seconds, 1)}
    description = {
        "kind": export.IMAGE, "preset": config.name, "seed": seed,
        "output_dim": image_config.output_dim, "image_size": image_config.image_size,
        "signature": {
            "inputs": {export.IMAGES: "string [batch] (encoded JPEG or PNG)"},
            "outputs": {features.IMAGE_VEC: f"float32 [batch, {image_config.output_dim}]",
                        features.HAS_IMAGE: "int64 [batch]"}},
        "fallback": "bytes that are empty or not JPEG/PNG: image_vec all zeros, has_image 0",
        "resize": f"stretched to {image_config.image_size}x{image_config.image_size} "
                  "(aspect ratio not kept), antialiased bilinear",
        "pixel_scaling": pixel_scaling, "entities": entities,
        "architecture": {"stackwise_filters": list(image_config.stackwise_filters),
                         "stackwise_blocks": list(image_config.stackwise_blocks),
                         "block_type": image_config.block_type},
        "imagenet_weights": imagenet_weights, "metrics": metrics}
    with save_path(WorkLayout(work).encoder_dir(export.IMAGE), strategy) as path:
        export.export_encoder(export.ImageEncoderExport(encoder), path, description)
    return metrics
