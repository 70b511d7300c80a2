"""The item-embedding job: RunInference over the frozen encoders -> one ME vector per item.

Fast: the inference functions' fallback for images that break decoding, record parsing and
the join. Slow: the whole path on a tiny synthetic world (train-encoders -> embed_items with
the DirectRunner), checked against the catalogue and against the encoders called directly.
"""
import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf import features
from ppm_tf.encoders import export
from ppm_tf.encoders.image import ImageEncoder
from ppm_tf.caching.item_vectors import _join, image_inference_fn, parse_item

# keras-cv's Backbone probes deprecated tf-keras properties whenever it is saved or listed.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`(layer|Model)\.(state_)?updates` will be removed:UserWarning")


def png(picture) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def image_model(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("encoders") / "image")
    tf.keras.utils.set_random_seed(0)
    module = export.ImageEncoderExport(ImageEncoder(32, [8, 16], [1, 1], [1, 2], "block", 6))
    export.export_encoder(module, path, {"kind": "image", "output_dim": 6})
    return tf.saved_model.load(path)


def test_an_image_that_breaks_decoding_gets_the_fallback_and_spares_its_batch(image_model):
    good = png(np.full((16, 16, 3), 200, np.uint8))
    truncated = good[:40]  # a PNG header, then nothing: decoding raises
    results = image_inference_fn(image_model, [good, truncated, b"", good], {})
    vectors = [result.inference[0] for result in results]
    has_image = [result.inference[1] for result in results]
    assert has_image == [1, 0, 0, 1]
    assert [result.example for result in results] == [good, truncated, b"", good]
    np.testing.assert_allclose(np.linalg.norm(vectors[0]), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[3], atol=1e-6)
    assert not np.any(vectors[1]) and not np.any(vectors[2]) and vectors[1].shape == (6,)


def test_parse_item_keeps_title_and_image_bytes_as_they_are():
    record = {features.ITEM_ID: "i1", features.TITLE: b"\xff bad utf-8", features.IMAGE: b"",
              features.HAS_IMAGE: 0, features.CATEGORY: "mug", features.BRAND: "",
              features.ENTITIES: ["mug"], features.LAUNCH_TS: 1, features.ATTRS_JSON: "{}"}
    parsed = parse_item(features.encode_example(record, features.ITEM_FEATURES))
    assert parsed == {features.ITEM_ID: "i1", features.TITLE: b"\xff bad utf-8",
                      features.IMAGE: b"", features.HAS_IMAGE: 0}


def test_join_concatenates_and_gives_items_without_image_the_zero_vector():
    text = np.array([0.5, 0.25], np.float32)
    [record] = list(_join(("i1", {"text": [text], "image": [], "failed": []}), image_dim=3))
    assert record[features.HAS_IMAGE] == 0
    np.testing.assert_array_equal(record[features.PPM_ITEM_VEC], [0.5, 0.25, 0, 0, 0])
    image = np.array([1.0, 0.0, 0.0], np.float32)
    [record] = list(_join(("i2", {"text": [text], "image": [(image, 1)], "failed": []}),
                          image_dim=3))
    assert record[features.HAS_IMAGE] == 1
    np.testing.assert_array_equal(record[features.PPM_ITEM_VEC], [0.5, 0.25, 1, 0, 0])


# Slow: the whole stage on a tiny world.

@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory):
    from beam_jobs.preprocess import run
    from ppm_tf.data.synthetic import generate_world, preset

    root = tmp_path_factory.mktemp("tiny_world")
    raw, work = root / "raw", str(root / "work")
    generate_world(preset("tiny"), seed=0, out=str(raw))
    # Some items without an image, and one whose image is a GIF (valid, but not JPEG/PNG).
    items = [json.loads(line) for line in (raw / "items.jsonl").read_text().splitlines()]
    for number, item in enumerate(items):
        if number % 7 == 3:
            item["image"] = None
    Image.open(raw / items[1]["image"]).save(raw / items[1]["image"], format="GIF")
    (raw / "items.jsonl").write_text("".join(json.dumps(item) + "\n" for item in items))
    run(["--data", str(raw), "--out", work, "--runner", "DirectRunner"])
    return work, items[1]["item_id"]


def _catalogue(work):
    from ppm_tf.data.tfrecords import read_items

    items = {}
    for batch in read_items(work, 512, features=[features.ITEM_ID, features.TITLE,
                                                 features.HAS_IMAGE]):
        for item_id, title, has_image in zip(batch[features.ITEM_ID].numpy(),
                                             batch[features.TITLE].numpy(),
                                             batch[features.HAS_IMAGE].numpy()):
            items[item_id.decode()] = (title, int(has_image))
    return items


def _item_vectors(work, metadata):
    from ppm_tf.work_layout import WorkLayout

    spec = features.parse_spec(features.ITEM_VECTOR_FEATURES, vector_dims={
        features.TEXT_VEC: metadata["text_dim"], features.IMAGE_VEC: metadata["image_dim"],
        features.PPM_ITEM_VEC: metadata["item_dim"]})
    files = tf.io.gfile.glob(WorkLayout(work).item_vectors_pattern)
    records = tf.data.TFRecordDataset(files, compression_type="GZIP").map(
        lambda serialized: tf.io.parse_single_example(serialized, spec))
    return {record[features.ITEM_ID].decode(): record for record in records.as_numpy_iterator()}


@pytest.mark.slow
def test_train_encoders_then_embed_items_writes_one_vector_per_item(tiny_work):
    from beam_jobs.embed_items import run
    from ppm_tf.encoders.training import train_encoders

    tiny_work, gif_item = tiny_work
    metrics = train_encoders(tiny_work, "tiny", seed=0, epochs=1)
    assert set(metrics) >= {"text", "image", "preset", "seed"}
    with open(os.path.join(tiny_work, "encoders", "metrics.json")) as handle:
        assert json.load(handle) == metrics
    text = metrics["text"]
    assert text["model"]["recall_at_10"] > text["random"]["recall_at_10"]
    assert text["model"]["queries"] > 0 and text["num_items"] == 300

    summary = run(["--work", tiny_work, "--runner", "DirectRunner", "--batch_size", "64"])
    catalogue = _catalogue(tiny_work)
    vectors = _item_vectors(tiny_work, summary)
    assert summary["items"] == len(vectors) == len(catalogue)
    assert summary["item_dim"] == summary["text_dim"] + summary["image_dim"] == 64
    assert summary["encoders"]["text"]["kind"] == "text"
    assert 0 < summary["items_with_image"] < len(catalogue)
    assert catalogue[gif_item][1] == 1 and vectors[gif_item][features.HAS_IMAGE] == 0
    for item_id, (title, has_image) in catalogue.items():
        record = vectors[item_id]
        assert record[features.HAS_IMAGE] == (has_image if item_id != gif_item else 0)
        if not record[features.HAS_IMAGE]:
            assert not record[features.IMAGE_VEC].any()
        np.testing.assert_array_equal(
            record[features.PPM_ITEM_VEC],
            np.concatenate([record[features.TEXT_VEC], record[features.IMAGE_VEC]]))
        np.testing.assert_allclose(np.linalg.norm(record[features.TEXT_VEC]), 1.0, rtol=1e-4)

    # The job's vectors are the frozen encoder's vectors.
    sample = sorted(catalogue)[:8]
    text_model = export.load_encoder(os.path.join(tiny_work, "encoders", "text"))
    direct = text_model.signatures["serving_default"](
        titles=tf.constant([catalogue[item_id][0] for item_id in sample]))["text_vec"].numpy()
    np.testing.assert_allclose(np.stack([vectors[item_id][features.TEXT_VEC]
                                         for item_id in sample]), direct, atol=1e-5)
