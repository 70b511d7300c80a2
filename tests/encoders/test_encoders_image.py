"""Image half of the ME layer: decoding with the fallback, the ResNet encoder, training-only
augmentation, and the entity-prediction model."""
import io

import numpy as np
import pytest
from PIL import Image

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf.data.synthetic import images as synthetic_images
from ppm_tf.encoders.image import (EntityPredictionModel, ImageEncoder, TrainingAugmentation,
                                   decode_images, is_decodable)
from ppm_tf.encoders.presets import ImageEncoderConfig, preset

# keras-cv's Backbone probes deprecated tf-keras properties whenever it is saved or listed.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`(layer|Model)\.(state_)?updates` will be removed:UserWarning")


def encoded(picture: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format=image_format)
    return buffer.getvalue()


def small_encoder(size=32, **overrides) -> ImageEncoder:
    settings = dict(image_size=size, stackwise_filters=[8, 16], stackwise_blocks=[1, 1],
                    stackwise_strides=[1, 2], block_type="block", output_dim=16)
    settings.update(overrides)
    return ImageEncoder(**settings)


def test_png_jpeg_grey_and_rgba_decode_to_resized_rgb():
    rows, columns = np.meshgrid(np.arange(40), np.arange(60), indexing="ij")
    picture = np.stack([rows * 6, columns * 4, 255 - rows * 3], axis=-1).astype(np.uint8)
    images = tf.constant([encoded(picture, "PNG"), encoded(picture, "JPEG"),
                          encoded(picture[..., 0], "PNG"),
                          encoded(np.dstack([picture, picture[..., :1]]), "PNG")])
    pixels, has_image = decode_images(images, 32)
    assert pixels.shape == (4, 32, 32, 3) and pixels.dtype == tf.float32
    assert has_image.numpy().tolist() == [1, 1, 1, 1]
    assert 0.0 <= float(tf.reduce_min(pixels)) and float(tf.reduce_max(pixels)) <= 255.0
    # Same picture as PNG and JPEG: close after resizing (JPEG is lossy).
    assert float(tf.reduce_mean(tf.abs(pixels[0] - pixels[1]))) < 4.0


def test_empty_garbage_and_unsupported_bytes_take_the_fallback():
    gif = encoded(np.zeros((8, 8, 3), np.uint8), "GIF")
    images = tf.constant([b"", b"not an image at all", gif, b"\x89PN"])
    assert is_decodable(images).numpy().tolist() == [False] * 4
    pixels, has_image = decode_images(images, 16)
    assert has_image.numpy().tolist() == [0, 0, 0, 0]
    assert float(tf.reduce_max(tf.abs(pixels))) == 0.0


def test_encoder_outputs_unit_vectors():
    encoder = small_encoder()
    vectors = encoder(tf.random.uniform([3, 32, 32, 3], 0, 255), training=False).numpy()
    assert vectors.shape == (3, 16)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)


def test_encoder_config_round_trips_and_caffe_scaling_flips_channels():
    encoder = small_encoder(pixel_scaling="caffe")
    rebuilt = ImageEncoder.from_config(encoder.get_config())
    assert rebuilt.get_config() == encoder.get_config()
    pixels = tf.constant([[[[10.0, 20.0, 30.0]]]])
    np.testing.assert_allclose(encoder.scale_pixels(pixels).numpy().ravel(),
                               [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=1e-6)
    assert float(small_encoder().scale_pixels(pixels)[0, 0, 0, 0]) == pytest.approx(10 / 255)
    with pytest.raises(ValueError, match="pixel_scaling"):
        small_encoder(pixel_scaling="imagenet")


def test_presets_image_stacks_build():
    config = preset("tiny").image
    encoder = ImageEncoder.from_config_preset(config)
    assert encoder(tf.zeros([1, config.image_size, config.image_size, 3])).shape == (
        1, config.output_dim)
    with pytest.raises(ValueError, match="64 filters"):
        ImageEncoderConfig(image_size=32, stackwise_filters=(16,), stackwise_blocks=(1,),
                           stackwise_strides=(1,), block_type="basic_block", output_dim=8)


def test_augmentation_changes_images_only_in_training():
    augmentation = TrainingAugmentation(translation=0.2, contrast=0.3, seed=1)
    pixels = tf.random.stateless_uniform([4, 16, 16, 3], seed=[1, 2], maxval=255.0)
    assert tf.reduce_all(augmentation(pixels, training=False) == pixels)
    assert tf.reduce_all(augmentation(pixels) == pixels)  # training unset: inference
    augmented = augmentation(pixels, training=True)
    assert augmented.shape == pixels.shape
    assert float(tf.reduce_max(tf.abs(augmented - pixels))) > 1.0
    rebuilt = TrainingAugmentation.from_config(augmentation.get_config())
    assert rebuilt.get_config() == augmentation.get_config()


def test_entity_prediction_model_gives_one_logit_per_entity_and_round_trips_config():
    model = EntityPredictionModel(small_encoder(), 5, TrainingAugmentation(seed=0))
    assert model(tf.zeros([2, 32, 32, 3])).shape == (2, 5)
    rebuilt = EntityPredictionModel.from_config(model.get_config())
    assert rebuilt.num_entities == 5 and rebuilt.get_config() == model.get_config()
    with pytest.raises(ValueError, match="entity vocabulary"):
        EntityPredictionModel(small_encoder(), 0)


def test_entity_prediction_loss_falls_on_rendered_items():
    tf.keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    combos = [("mug", "red", "solid"), ("lamp", "blue", "striped"), ("hat", "green", "dotted")]
    entities = sorted({entity for combo in combos for entity in combo})
    pictures, labels = [], []
    for index in range(48):
        combo = combos[index % 3]
        pictures.append(synthetic_images.render_image(*combo, size=32, rng=rng))
        labels.append([1.0 if entity in combo else 0.0 for entity in entities])
    pixels = tf.constant(np.stack(pictures), tf.float32)
    labels = tf.constant(labels)
    model = EntityPredictionModel(small_encoder(), len(entities))
    model.compile(optimizer=tf.keras.optimizers.Adam(3e-3),
                  loss=tf.keras.losses.BinaryCrossentropy(from_logits=True))
    before = model.evaluate(pixels, labels, verbose=0)
    model.fit(pixels, labels, batch_size=16, epochs=6, verbose=0)
    after = model.evaluate(pixels, labels, verbose=0)
    assert after < before - 0.1
