"""The frozen item-vector table: item id -> the modal encoders' vector m_i.

Built from WORK/item_vectors (the embed-items job), it lives inside PPM's training graph and
the exported serving model, so clients send item ids, not vectors. Unknown ids (items newer
than the table) map to a zero vector; serving can override it with an explicit vector.
"""
from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.work_layout import WorkLayout


class ItemVectorTable(tf.keras.layers.Layer):
    """``item_ids [...]`` (strings) -> ``[..., dim]`` frozen vectors; unknown ids -> zeros."""

    def __init__(self, item_ids: list[str], vectors: np.ndarray, **kwargs):
        super().__init__(trainable=False, **kwargs)
        if len(item_ids) != len(vectors):
            raise ValueError(f"{len(item_ids)} item ids but {len(vectors)} vectors")
        self.dim = int(vectors.shape[1])
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(item_ids), num_oov_indices=1)
        # Row 0 is the out-of-vocabulary row: the zero vector.
        table = np.concatenate([np.zeros((1, self.dim), np.float32), vectors.astype(np.float32)])
        self.table = self.add_weight(name="vectors", shape=table.shape, trainable=False,
                                     initializer=tf.keras.initializers.Constant(table))

    def call(self, item_ids):
        return tf.gather(self.table, self.lookup(item_ids))


def load_item_vectors(work: str) -> tuple[list[str], np.ndarray]:
    """(item ids, [num_items, dim] ``ppm_item_vec``) from WORK/item_vectors."""
    layout = WorkLayout(work)
    with tf.io.gfile.GFile(layout.item_vectors_metadata) as handle:
        metadata = json.load(handle)
    dims = {features.TEXT_VEC: metadata["text_dim"], features.IMAGE_VEC: metadata["image_dim"],
            features.PPM_ITEM_VEC: metadata["item_dim"]}
    spec = features.parse_spec(features.ITEM_VECTOR_FEATURES, vector_dims=dims)
    files = sorted(tf.io.gfile.glob(layout.item_vectors_pattern))
    if not files:
        raise FileNotFoundError(f"no item vectors at {layout.item_vectors_pattern}; "
                                "run `ppm embed-items` first")
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096).map(
        lambda records: tf.io.parse_example(records, spec))
    ids, vectors = [], []
    for batch in dataset:
        ids.extend(item_id.decode("utf-8") for item_id in batch[features.ITEM_ID].numpy())
        vectors.append(batch[features.PPM_ITEM_VEC].numpy())
    return ids, np.concatenate(vectors)
