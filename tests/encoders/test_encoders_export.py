"""The frozen SavedModels: reloaded in a fresh process they give the in-memory vectors, for
well-formed and bad inputs alike (empty, non-UTF-8 and overlong titles; empty, garbage and
unsupported images), carry their vocabulary as an asset, and replace older exports whole."""
import io
import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from PIL import Image

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf import features
from ppm_tf.encoders import export, tokenizer as tokenization
from ppm_tf.encoders.image import ImageEncoder
from ppm_tf.encoders.text import TextEncoder

# keras-cv's Backbone probes deprecated tf-keras properties whenever it is saved or listed.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`(layer|Model)\.(state_)?updates` will be removed:UserWarning")

TITLES = [b"zorvo red striped sneakers", b"", b"\xff\xfe\xfa crimson \xc3", b"blue mug " * 5000,
          "caf\u00e9 \u6f22\u5b57 lamp".encode("utf-8")]


def png(picture) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


def jpeg(picture) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="JPEG")
    return buffer.getvalue()


def gif(picture) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="GIF")
    return buffer.getvalue()


PICTURE = np.random.default_rng(0).integers(0, 255, (20, 30, 3), dtype=np.uint8)
IMAGES = [png(PICTURE), jpeg(PICTURE), b"", b"garbage bytes", gif(PICTURE)]

RELOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    import numpy as np
    import tensorflow as tf
    import tensorflow_text  # the tokeniser's ops; nothing from ppm_tf is imported
    text_dir, image_dir, inputs, out = sys.argv[1:5]
    data = np.load(inputs, allow_pickle=True)
    text = tf.saved_model.load(text_dir)
    image = tf.saved_model.load(image_dir)
    text_out = text.signatures["serving_default"](titles=tf.constant(list(data["titles"])))
    ids = text.signatures["tokenize"](titles=tf.constant(list(data["titles"])))["token_ids"]
    image_out = image.signatures["serving_default"](images=tf.constant(list(data["images"])))
    np.savez(out, text_vec=text_out["text_vec"].numpy(), token_ids=ids.numpy(),
             image_vec=image_out["image_vec"].numpy(), has_image=image_out["has_image"].numpy())
""")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    root = tmp_path_factory.mktemp("encoders")
    vocab_path = str(root / "vocab_source.txt")
    tokens = tokenization.learn_vocabulary(
        tf.data.Dataset.from_tensor_slices([t.decode("utf-8", "replace") for t in TITLES[:1]]
                                           + ["blue mug lamp crimson"] * 10).batch(4), 100)
    tokenization.write_vocabulary(tokens, vocab_path)
    tf.keras.utils.set_random_seed(0)
    tokenizer = tokenization.TextTokenizer(vocab_path, max_tokens=16)
    text_encoder = TextEncoder(tokenizer.vocab_size, 32, 1, 2, 64, 8, max_positions=32)
    image_encoder = ImageEncoder(32, [8, 16], [1, 1], [1, 2], "block", 12)
    text_module = export.TextEncoderExport(tokenizer, text_encoder)
    image_module = export.ImageEncoderExport(image_encoder)
    in_memory = {"text": text_module.encode(tf.constant(TITLES)),
                 "token_ids": tokenizer(tf.constant(TITLES)),
                 "image": image_module.encode(tf.constant(IMAGES))}
    text_dir = export.export_encoder(text_module, str(root / "text"), {"kind": "text"})
    image_dir = export.export_encoder(image_module, str(root / "image"), {"kind": "image"})
    os.remove(vocab_path)  # the export must not need the original file
    return root, text_dir, image_dir, in_memory


@pytest.mark.slow  # a fresh Python process imports TensorFlow and loads both exports
def test_exports_reload_in_a_fresh_process_with_the_same_outputs(exports, tmp_path):
    root, text_dir, image_dir, in_memory = exports
    inputs = str(tmp_path / "inputs.npz")
    np.savez(inputs, titles=np.array(TITLES, dtype=object), images=np.array(IMAGES, dtype=object))
    out = str(tmp_path / "out.npz")
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-c", RELOAD_SCRIPT, text_dir, image_dir, inputs, out],
                   check=True, env=environment, timeout=300)
    reloaded = np.load(out)
    np.testing.assert_allclose(reloaded["text_vec"], in_memory["text"][features.TEXT_VEC],
                               atol=1e-5)
    np.testing.assert_array_equal(reloaded["token_ids"], in_memory["token_ids"])
    np.testing.assert_allclose(reloaded["image_vec"], in_memory["image"][features.IMAGE_VEC],
                               atol=1e-5)
    np.testing.assert_array_equal(reloaded["has_image"], [1, 1, 0, 0, 0])


def test_text_vectors_are_unit_length_for_every_kind_of_title(exports):
    _, _, _, in_memory = exports
    vectors = in_memory["text"][features.TEXT_VEC].numpy()
    assert vectors.shape == (len(TITLES), 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    assert in_memory["token_ids"].shape[1] == 16  # the 45,000-byte title is truncated


def test_images_that_do_not_decode_get_the_zero_fallback(exports):
    _, _, _, in_memory = exports
    vectors = in_memory["image"][features.IMAGE_VEC].numpy()
    assert in_memory["image"][features.HAS_IMAGE].numpy().tolist() == [1, 1, 0, 0, 0]
    np.testing.assert_allclose(np.linalg.norm(vectors[:2], axis=1), 1.0, rtol=1e-5)
    assert not vectors[2:].any()


def test_the_vocabulary_travels_as_an_asset_and_the_description_is_written(exports):
    root, text_dir, image_dir, _ = exports
    assert os.listdir(os.path.join(text_dir, "assets")) == ["vocab_source.txt"]
    assert export.read_description(text_dir) == {"kind": "text"}
    with pytest.raises(FileNotFoundError, match="train-encoders"):
        export.read_description(str(root / "missing"))


def test_a_new_export_replaces_the_old_one_whole(exports):
    root, _, image_dir, _ = exports
    module = export.ImageEncoderExport(ImageEncoder(32, [8, 16], [1, 1], [1, 2], "block", 12))
    export.export_encoder(module, image_dir, {"kind": "image", "version": 2})
    assert json.loads(open(os.path.join(image_dir, "encoder.json")).read())["version"] == 2
    assert sorted(os.listdir(root)) == ["image", "text"]  # no staging or retired folders
