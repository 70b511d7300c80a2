"""The image half of the ME layer: decoding with a fallback, a ResNet encoder, and the
paper's entity-prediction (EP) task that fine-tunes it.

- ``decode_images``: encoded bytes ``[batch]`` -> pixels ``[batch, size, size, 3]`` float32 in
  [0, 255] plus ``has_image`` ``[batch]``. Only JPEG and PNG are decoded (checked by their
  magic bytes); anything else (empty bytes, GIF, text, garbage) takes the **fallback**: black
  pixels and ``has_image = 0``. The encoders' exports turn that into the documented fallback
  vector (zeros), so a missing or bad image never fails a batch. Images are resized to the
  square without keeping the aspect ratio (posters are stretched slightly, nothing is cut).
- ``ImageEncoder``: pixel scaling -> ``keras_cv.models.ResNetBackbone`` -> global average
  pooling -> linear projection -> L2 normalisation: pixels ``[batch, size, size, 3]`` ->
  ``[batch, output_dim]``. Pixels are scaled to [0, 1] (``"unit"``, keras-cv's convention),
  or, for weights converted from ``keras.applications`` ResNets, ``"caffe"`` (BGR minus the
  ImageNet channel means), the convention those weights were trained with.
- ``EntityPredictionModel``: training-only augmentation -> encoder -> one sigmoid logit per
  entity of the vocabulary (multi-label; BCE). The head sits on the normalised vector, so the
  vector that is cached is the one that had to reveal the entities; a learned scale (as in
  cosine classifiers) lets unit-length inputs reach confident logits early in training.
"""
from __future__ import annotations

import warnings

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf
import keras_cv

from ppm_tf.encoders.presets import ImageEncoderConfig

# keras-cv's Backbone probes deprecated tf-keras properties on every call; the warnings say
# nothing about this code.
warnings.filterwarnings(
    "ignore", message=r"`(layer\.updates|Model\.state_updates)` will be removed",
    category=UserWarning, module="keras_cv")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
JPEG_MAGIC = b"\xff\xd8\xff"
PIXEL_SCALINGS = ("unit", "caffe")
INITIAL_LOG_SCALE = 2.3  # exp(2.3) ~ 10: logits of a few units from unit-length vectors
_CAFFE_BGR_MEANS = (103.939, 116.779, 123.68)


def is_decodable(images: tf.Tensor) -> tf.Tensor:
    """``[batch]`` bool: the bytes start like a JPEG or a PNG (cheap; decodes nothing)."""
    return tf.logical_or(tf.strings.substr(images, 0, len(PNG_MAGIC)) == PNG_MAGIC,
                         tf.strings.substr(images, 0, len(JPEG_MAGIC)) == JPEG_MAGIC)


def decode_image(image: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """One encoded image (scalar string) -> (``[size, size, 3]`` float32, has_image int64).

    Grey and RGBA images become RGB; the first frame of an animation is used.
    """
    def decode() -> tf.Tensor:
        pixels = tf.io.decode_image(image, channels=3, expand_animations=False)
        return tf.image.resize(tf.cast(pixels, tf.float32), [size, size], antialias=True)

    valid = is_decodable(image[None])[0]
    pixels = tf.cond(valid, decode, lambda: tf.zeros([size, size, 3], tf.float32))
    pixels = tf.ensure_shape(tf.clip_by_value(pixels, 0.0, 255.0), [size, size, 3])
    return pixels, tf.cast(valid, tf.int64)


def decode_images(images: tf.Tensor, size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Encoded images ``[batch]`` -> (``[batch, size, size, 3]`` float32, ``[batch]`` int64)."""
    return tf.map_fn(lambda image: decode_image(image, size), images,
                     fn_output_signature=(tf.TensorSpec([size, size, 3], tf.float32),
                                          tf.TensorSpec([], tf.int64)))


class ImageEncoder(tf.keras.layers.Layer):
    """Pixels ``[batch, size, size, 3]`` (0-255) -> L2-normalised ``[batch, output_dim]``."""

    def __init__(self, image_size: int, stackwise_filters, stackwise_blocks, stackwise_strides,
                 block_type: str, output_dim: int, pixel_scaling: str = "unit", **kwargs):
        super().__init__(**kwargs)
        if pixel_scaling not in PIXEL_SCALINGS:
            raise ValueError(f"pixel_scaling must be one of {PIXEL_SCALINGS}, got "
                             f"{pixel_scaling!r}")
        self.image_size = image_size
        self.pixel_scaling = pixel_scaling
        self.stackwise_filters = list(stackwise_filters)
        self.stackwise_blocks = list(stackwise_blocks)
        self.stackwise_strides = list(stackwise_strides)
        self.block_type = block_type
        self.output_dim = output_dim
        self.backbone = keras_cv.models.ResNetBackbone(
            stackwise_filters=self.stackwise_filters, stackwise_blocks=self.stackwise_blocks,
            stackwise_strides=self.stackwise_strides, block_type=block_type,
            include_rescaling=False, input_shape=(image_size, image_size, 3), name="backbone")
        self.pooling = tf.keras.layers.GlobalAveragePooling2D(name="pooling")
        self.projection = tf.keras.layers.Dense(output_dim, name="projection")

    @classmethod
    def from_config_preset(cls, config: ImageEncoderConfig, pixel_scaling: str = "unit",
                           **kwargs) -> "ImageEncoder":
        return cls(image_size=config.image_size, stackwise_filters=config.stackwise_filters,
                   stackwise_blocks=config.stackwise_blocks,
                   stackwise_strides=config.stackwise_strides, block_type=config.block_type,
                   output_dim=config.output_dim, pixel_scaling=pixel_scaling, **kwargs)

    def scale_pixels(self, pixels: tf.Tensor) -> tf.Tensor:
        if self.pixel_scaling == "caffe":
            return pixels[..., ::-1] - tf.constant(_CAFFE_BGR_MEANS, pixels.dtype)
        return pixels / 255.0

    def call(self, pixels: tf.Tensor, training=None) -> tf.Tensor:
        features = self.pooling(self.backbone(self.scale_pixels(pixels), training=training))
        return tf.math.l2_normalize(self.projection(features), axis=-1)

    def get_config(self) -> dict:
        return {**super().get_config(), "image_size": self.image_size,
                "stackwise_filters": self.stackwise_filters,
                "stackwise_blocks": self.stackwise_blocks,
                "stackwise_strides": self.stackwise_strides, "block_type": self.block_type,
                "output_dim": self.output_dim, "pixel_scaling": self.pixel_scaling}


class TrainingAugmentation(tf.keras.layers.Layer):
    """Random horizontal flip, translation and contrast, applied only when ``training``.

    keras-cv's augmentation layers augment whenever they are called (they are meant for
    ``tf.data``), so this layer gates them: evaluation and export see the image as it is.
    No hue, saturation or brightness jitter: colour is an entity the model must read.
    """

    def __init__(self, translation: float = 0.1, contrast: float = 0.2, seed: int | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.translation = translation
        self.contrast = contrast
        self.seed = seed
        self.augmentations = [keras_cv.layers.RandomFlip("horizontal", seed=seed)]
        if translation:
            self.augmentations.append(keras_cv.layers.RandomTranslation(
                translation, translation, fill_mode="nearest", seed=seed))
        if contrast:
            self.augmentations.append(keras_cv.layers.RandomContrast(
                value_range=(0, 255), factor=contrast, seed=seed))

    def call(self, pixels: tf.Tensor, training=None) -> tf.Tensor:
        if not training:
            return pixels
        for augmentation in self.augmentations:
            pixels = augmentation(pixels)
        return tf.clip_by_value(pixels, 0.0, 255.0)

    def get_config(self) -> dict:
        return {**super().get_config(), "translation": self.translation,
                "contrast": self.contrast, "seed": self.seed}


class EntityPredictionModel(tf.keras.Model):
    """The EP task: pixels ``[batch, size, size, 3]`` -> entity logits ``[batch, num_entities]``.

    Train with ``tf.keras.losses.BinaryCrossentropy(from_logits=True)`` on multi-hot labels.
    """

    def __init__(self, encoder: ImageEncoder, num_entities: int,
                 augmentation: TrainingAugmentation | None = None, **kwargs):
        super().__init__(**kwargs)
        if num_entities < 1:
            raise ValueError("entity prediction needs a non-empty entity vocabulary "
                             "(WORK/vocab/entity.txt)")
        self.encoder = encoder
        self.num_entities = num_entities
        self.augmentation = augmentation
        self.head = tf.keras.layers.Dense(num_entities, name="entity_logits")
        self.log_scale = self.add_weight(
            "log_scale", shape=[], initializer=tf.keras.initializers.Constant(INITIAL_LOG_SCALE))

    def call(self, pixels: tf.Tensor, training=None) -> tf.Tensor:
        if self.augmentation is not None:
            pixels = self.augmentation(pixels, training=training)
        vectors = self.encoder(pixels, training=training)
        return self.head(vectors * tf.exp(self.log_scale))

    def get_config(self) -> dict:
        return {"encoder": tf.keras.layers.serialize(self.encoder),
                "num_entities": self.num_entities,
                "augmentation": (None if self.augmentation is None
                                 else tf.keras.layers.serialize(self.augmentation))}

    @classmethod
    def from_config(cls, config: dict, custom_objects=None) -> "EntityPredictionModel":
        objects = {"ImageEncoder": ImageEncoder, "TrainingAugmentation": TrainingAugmentation,
                   **(custom_objects or {})}
        augmentation = config.get("augmentation")
        return cls(encoder=tf.keras.layers.deserialize(config["encoder"], objects),
                   num_entities=config["num_entities"],
                   augmentation=(None if augmentation is None
                                 else tf.keras.layers.deserialize(augmentation, objects)))
