"""The frozen encoders as SavedModels: what ``beam_jobs.embed_items`` (and anyone else) runs.

    WORK/encoders/text/    serving_default(titles: string [batch]) -> text_vec [batch, d_t]
                           tokenize(titles: string [batch]) -> token_ids int64 [batch, <=L]
                           assets/vocab.txt: the WordPiece vocabulary
    WORK/encoders/image/   serving_default(images: string [batch])
                               -> image_vec [batch, d_i], has_image int64 [batch]
    */encoder.json         kind, dims, preset, input policy, fallback, held-out metrics

Inputs are raw: text is tokenised in-graph (tensorflow-text ops: ``import tensorflow_text``
before ``tf.saved_model.load``; ``load_encoder`` does it), images are decoded and resized
in-graph. Bad input is encoded, never an error: see ``tokenizer`` for text; an image that is
empty or not JPEG/PNG gets the **fallback vector, all zeros**, and ``has_image = 0`` (a zero
vector adds nothing to dot products, and the flag lets downstream models learn a separate
"no image" effect). Bytes with a JPEG/PNG header that still fail to decode raise
``InvalidArgumentError`` for their batch; ``embed_items`` then retries item by item and gives
the culprit the same fallback.

Each export is written to a temporary sibling folder and renamed into place
(``ppm_tf.atomic``), so readers never see half a model (atomic on local and POSIX file
systems; on object stores a rename is a copy, and ``encoder.json``, written last, marks a
complete export).
"""
from __future__ import annotations

from typing import Any

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf
import tensorflow_text  # noqa: F401  (registers the ops the text SavedModel needs)

from ppm_tf import features
from ppm_tf.atomic import atomic_directory
from ppm_tf.encoders.image import ImageEncoder, decode_images
from ppm_tf.encoders.text import TextEncoder
from ppm_tf.encoders.tokenizer import TextTokenizer
from ppm_tf.saved_models import save_signatures
from ppm_tf.work_layout import ENCODER_JSON, IMAGE_ENCODER, TEXT_ENCODER, read_json, write_json

TEXT, IMAGE = TEXT_ENCODER, IMAGE_ENCODER
TITLES, IMAGES, TOKEN_IDS = "titles", "images", "token_ids"
SERVING = "serving_default"


class TextEncoderExport(tf.Module):
    """Raw titles ``[batch]`` -> ``{"text_vec": [batch, output_dim]}``, frozen."""

    def __init__(self, tokenizer: TextTokenizer, encoder: TextEncoder):
        super().__init__(name="text_encoder")
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.encoder.trainable = False

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=TITLES)])
    def encode(self, titles: tf.Tensor) -> dict[str, tf.Tensor]:
        return {features.TEXT_VEC: self.encoder(self.tokenizer(titles), training=False)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=TITLES)])
    def tokenize(self, titles: tf.Tensor) -> dict[str, tf.Tensor]:
        return {TOKEN_IDS: self.tokenizer(titles)}

    def signatures(self) -> dict[str, Any]:
        return {SERVING: self.encode, "tokenize": self.tokenize}


class ImageEncoderExport(tf.Module):
    """Encoded images ``[batch]`` -> ``{"image_vec": [batch, output_dim], "has_image":
    [batch]}``, frozen; undecodable inputs get the zero vector and ``has_image`` 0."""

    def __init__(self, encoder: ImageEncoder):
        super().__init__(name="image_encoder")
        self.encoder = encoder
        self.encoder.trainable = False

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name=IMAGES)])
    def encode(self, images: tf.Tensor) -> dict[str, tf.Tensor]:
        pixels, has_image = decode_images(images, self.encoder.image_size)
        vectors = self.encoder(pixels, training=False)
        vectors = vectors * tf.cast(has_image, vectors.dtype)[:, None]
        return {features.IMAGE_VEC: vectors, features.HAS_IMAGE: has_image}

    def signatures(self) -> dict[str, Any]:
        return {SERVING: self.encode}


def export_encoder(module: TextEncoderExport | ImageEncoderExport, path: str,
                   description: dict[str, Any]) -> str:
    """Saves ``module`` with its signatures at ``path`` (replacing an older export) and writes
    ``description`` as ``path/encoder.json``; returns ``path``."""
    with atomic_directory(path) as staging:
        save_signatures(module, staging, module.signatures())
        write_json(f"{staging}/{ENCODER_JSON}", description)
    return path


def read_description(path: str) -> dict[str, Any]:
    """``encoder.json`` of an export; a missing one means the export is absent or partial."""
    return read_json(f"{path.rstrip('/')}/{ENCODER_JSON}", "ppm train-encoders --work WORK")


def load_encoder(path: str):
    """The exported module (call ``.signatures["serving_default"]``)."""
    read_description(path)
    return tf.saved_model.load(path)
