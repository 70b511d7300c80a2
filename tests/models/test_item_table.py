"""The item-vector table loads its ids and vectors from files, inside the graph, and keeps
serving them from an exported SavedModel."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.item_table import (IDS_FILE, VECTORS_FILE, ItemVectorTable,
                                      item_table_files, load_item_table)
from ppm_tf.work_layout import WorkLayout

IDS = ["i0", "i1", "i2", "i3"]
DIM = 3


def vectors() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(len(IDS), DIM)).astype(np.float32)


def write_files(directory, ids=IDS, values=None) -> tuple[str, str]:
    ids_path, vectors_path = directory / IDS_FILE, directory / VECTORS_FILE
    ids_path.write_text("".join(item_id + "\n" for item_id in ids))
    np.save(vectors_path, vectors() if values is None else values)
    return str(ids_path), str(vectors_path)


def test_table_loads_from_files_and_serves_unknown_ids_as_zeros(tmp_path):
    table = ItemVectorTable(*write_files(tmp_path))
    looked_up = table(tf.constant([["i2", "never-seen"], ["", "i0"]])).numpy()
    np.testing.assert_array_equal(looked_up[0, 0], vectors()[2])
    np.testing.assert_array_equal(looked_up[1, 1], vectors()[0])
    np.testing.assert_array_equal(looked_up[0, 1], np.zeros(DIM))
    np.testing.assert_array_equal(looked_up[1, 0], np.zeros(DIM))
    assert table.trainable_weights == []


def test_table_from_files_equals_the_table_from_arrays(tmp_path):
    ids = tf.constant(IDS + ["x"])
    np.testing.assert_array_equal(ItemVectorTable(*write_files(tmp_path))(ids).numpy(),
                                  ItemVectorTable(IDS, vectors())(ids).numpy())


def test_an_exported_table_serves_without_its_source_files(tmp_path):
    ids_path, vectors_path = write_files(tmp_path)

    class Served(tf.Module):
        def __init__(self):
            super().__init__()
            self.table = ItemVectorTable(ids_path, vectors_path)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
        def lookup(self, item_ids):
            return self.table(item_ids)

    tf.saved_model.save(Served(), str(tmp_path / "exported"))
    os.remove(ids_path)
    os.remove(vectors_path)  # the ids travel as an asset, the vectors as a variable
    loaded = tf.saved_model.load(str(tmp_path / "exported"))
    np.testing.assert_array_equal(loaded.lookup(tf.constant(["i3", "new"])).numpy(),
                                  [vectors()[3], np.zeros(DIM)])


def test_ids_and_vectors_must_match_in_number(tmp_path):
    with pytest.raises(ValueError, match="4 item ids but 3 vectors"):
        ItemVectorTable(*write_files(tmp_path, values=vectors()[:3]))


def write_item_vectors(work, count: int) -> None:
    """WORK/item_vectors as the embed-items job writes it (one shard, metadata.json)."""
    layout = WorkLayout(str(work))
    os.makedirs(work / "item_vectors")
    rng = np.random.default_rng(1)
    with tf.io.TFRecordWriter(f"{layout.item_vectors_prefix}-00000-of-00001.tfrecord.gz",
                              options="GZIP") as writer:
        for index in range(count):
            text, image = rng.normal(size=2), rng.normal(size=1)
            writer.write(features.encode_example(
                {features.ITEM_ID: f"i{index}", features.TEXT_VEC: text,
                 features.IMAGE_VEC: image, features.HAS_IMAGE: 1,
                 features.PPM_ITEM_VEC: np.concatenate([text, image])},
                features.ITEM_VECTOR_FEATURES))
    (work / "item_vectors" / "metadata.json").write_text(json.dumps(
        {"items": count, "text_dim": 2, "image_dim": 1, "item_dim": 3}))


def test_work_dir_table_files_are_written_once_from_the_item_vectors(tmp_path):
    write_item_vectors(tmp_path, 5000)  # more than one read batch
    ids_path, vectors_path = item_table_files(str(tmp_path))
    assert open(ids_path).read().splitlines() == [f"i{index}" for index in range(5000)]
    assert np.load(vectors_path).shape == (5000, 3)
    written = os.stat(vectors_path).st_mtime_ns
    assert item_table_files(str(tmp_path)) == (ids_path, vectors_path)
    assert os.stat(vectors_path).st_mtime_ns == written  # up to date: not rewritten
    table = load_item_table(str(tmp_path))
    assert table(tf.constant(["i4999"])).numpy().shape == (1, 3)


def test_item_vectors_that_disagree_with_their_metadata_are_refused(tmp_path):
    write_item_vectors(tmp_path, 10)
    metadata = tmp_path / "item_vectors" / "metadata.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "items": 12}))
    with pytest.raises(ValueError, match="counts 12 items but"):
        item_table_files(str(tmp_path))
    assert not (tmp_path / "item_vectors" / "table").exists()
