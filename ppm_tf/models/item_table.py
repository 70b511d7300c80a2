"""The frozen item-vector table: item id -> the modal encoders' vector m_i.

Built from WORK/item_vectors (the embed-items job), it lives inside PPM's training graph and
the exported serving model, so clients send item ids, not vectors. Unknown ids (items newer
than the table) map to a zero vector; serving can override it with an explicit vector.

It scales with the catalogue, not with Python: the ids load inside the graph from a text
file (``tf.lookup.StaticHashTable`` with a ``TextFileInitializer``, saved as a SavedModel
asset) and the vectors stream from a ``.npy`` file into the variable a block of rows at a
time, so neither is ever a Python list and peak memory stays near the table's own size
(``benchmarks/item_table.py``: 10^6 items). ``item_table_files`` writes both files from
WORK/item_vectors once, streaming, and ``load_item_table`` builds the table from them.
"""
from __future__ import annotations

import json
from typing import Sequence

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.atomic import atomic_directory
from ppm_tf.work_layout import WorkLayout

IDS_FILE, VECTORS_FILE = "item_ids.txt", "vectors.npy"
_ROWS_PER_BLOCK = 65_536  # rows read and assigned at a time (16 MiB at 64 dims)


class ItemVectorTable(tf.keras.layers.Layer):
    """``item_ids [...]`` (strings) -> ``[..., dim]`` frozen vectors; unknown ids -> zeros.

    ``item_ids``: a text file with one id per line (row i of the vectors), or a sequence of
    ids (small tables, tests). ``vectors``: a ``.npy`` file of ``[num_items, dim]`` float32,
    or such an array.
    """

    def __init__(self, item_ids: str | Sequence[str], vectors: str | np.ndarray, **kwargs):
        super().__init__(trainable=False, **kwargs)
        vectors = _open_vectors(vectors)
        num_ids = _count_lines(item_ids) if isinstance(item_ids, str) else len(item_ids)
        if num_ids != len(vectors):
            raise ValueError(f"{num_ids} item ids but {len(vectors)} vectors")
        self.dim = int(vectors.shape[1])
        self.rows = tf.lookup.StaticHashTable(_row_initializer(item_ids), default_value=-1)
        # Row 0 is the unknown-id row: the zero vector; item i is row i + 1.
        self.table = self.add_weight(name="vectors", shape=(len(vectors) + 1, self.dim),
                                     initializer="zeros", trainable=False)
        for start in range(0, len(vectors), _ROWS_PER_BLOCK):
            block = np.asarray(vectors[start:start + _ROWS_PER_BLOCK], np.float32)
            self.table.scatter_update(tf.IndexedSlices(
                block, tf.range(start + 1, start + 1 + len(block))))

    def call(self, item_ids):
        return tf.gather(self.table, self.row_indices(item_ids))

    def row_indices(self, item_ids):
        """Each id's row of the table (0: unknown, the zero vector)."""
        return self.rows.lookup(item_ids) + 1


def _row_initializer(item_ids: str | Sequence[str]):
    if isinstance(item_ids, str):
        return tf.lookup.TextFileInitializer(
            item_ids, key_dtype=tf.string, key_index=tf.lookup.TextFileIndex.WHOLE_LINE,
            value_dtype=tf.int64, value_index=tf.lookup.TextFileIndex.LINE_NUMBER)
    return tf.lookup.KeyValueTensorInitializer(
        tf.constant(list(item_ids), tf.string), tf.range(len(item_ids), dtype=tf.int64))


def _open_vectors(vectors: str | np.ndarray) -> np.ndarray:
    if not isinstance(vectors, str):
        vectors = np.asarray(vectors)
    elif "://" in vectors:  # remote: read whole (memory-mapping needs a local file)
        with tf.io.gfile.GFile(vectors, "rb") as handle:
            vectors = np.load(handle)
    else:
        vectors = np.load(vectors, mmap_mode="r")
    if vectors.ndim != 2:
        raise ValueError(f"item vectors must be [num_items, dim], got shape {vectors.shape}")
    return vectors


def _count_lines(path: str) -> int:
    count = 0
    with tf.io.gfile.GFile(path, "rb") as handle:
        for _ in handle:
            count += 1
    return count


def item_table_files(work: str) -> tuple[str, str]:
    """(ids file, vectors file) of WORK/item_vectors, written on first use from its
    TFRecords (a batch at a time) into WORK/item_vectors/table/; rewritten when an
    embed-items run is newer. Several workers may call it at once: each writes its own
    copy and renames it into place."""
    layout = WorkLayout(work)
    directory = layout.item_table_dir
    ids_path, vectors_path = f"{directory}/{IDS_FILE}", f"{directory}/{VECTORS_FILE}"
    if not tf.io.gfile.exists(layout.item_vectors_metadata):
        raise FileNotFoundError(f"{layout.item_vectors_metadata} not found: run "
                                "`ppm embed-items --work WORK` first")
    if tf.io.gfile.exists(vectors_path) and (
            tf.io.gfile.stat(vectors_path).mtime_nsec
            >= tf.io.gfile.stat(layout.item_vectors_metadata).mtime_nsec):
        return ids_path, vectors_path
    with tf.io.gfile.GFile(layout.item_vectors_metadata) as handle:
        metadata = json.load(handle)
    with atomic_directory(directory) as staging:
        tf.io.gfile.makedirs(staging)
        _write_table_files(layout, metadata, f"{staging}/{IDS_FILE}",
                           f"{staging}/{VECTORS_FILE}")
    return ids_path, vectors_path


def _write_table_files(layout: WorkLayout, metadata: dict, ids_path: str,
                       vectors_path: str) -> None:
    dims = {features.TEXT_VEC: metadata["text_dim"], features.IMAGE_VEC: metadata["image_dim"],
            features.PPM_ITEM_VEC: metadata["item_dim"]}
    spec = features.parse_spec(
        [feature for feature in features.ITEM_VECTOR_FEATURES
         if feature.name in (features.ITEM_ID, features.PPM_ITEM_VEC)], vector_dims=dims)
    files = sorted(tf.io.gfile.glob(layout.item_vectors_pattern))
    if not files:
        raise FileNotFoundError(f"no item vectors at {layout.item_vectors_pattern}; "
                                "run `ppm embed-items` first")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(
        lambda records: tf.io.parse_example(records, spec))
    rows, dim = metadata["items"], metadata["item_dim"]
    written = 0
    with tf.io.gfile.GFile(ids_path, "wb") as ids, tf.io.gfile.GFile(vectors_path, "wb") as out:
        np.lib.format.write_array_header_1_0(out, {"descr": np.dtype(np.float32).str,
                                                   "fortran_order": False,
                                                   "shape": (rows, dim)})
        for batch in dataset:
            block = batch[features.PPM_ITEM_VEC].numpy().astype(np.float32)
            written += len(block)
            if written > rows:
                break
            ids.write(b"".join(item_id + b"\n" for item_id in batch[features.ITEM_ID].numpy()))
            out.write(block.tobytes())
    if written != rows:
        raise ValueError(f"{layout.item_vectors_metadata} counts {rows:,} items but "
                         f"{layout.item_vectors_pattern} holds {written:,}: rerun "
                         "`ppm embed-items`")


def load_item_table(work: str, **kwargs) -> ItemVectorTable:
    """WORK's item-vector table, loaded from its files (see ``item_table_files``)."""
    return ItemVectorTable(*item_table_files(work), **kwargs)
