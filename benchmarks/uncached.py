"""The cache undone: URM with the frozen encoders and the PPM user tower inside its graph.

What PPM-TF would cost without precompute: every history item's and the candidate's raw title
and image go through the encoders, and the user tower runs, on every step or request. Used by
``train_throughput.py`` and ``serving_latency.py`` as the un-cached comparison.
"""
from __future__ import annotations

import ppm_tf  # noqa: F401  (tf-keras before TensorFlow)
import tensorflow as tf
import tensorflow_text  # noqa: F401  (the text encoder's tokenizer ops)

from ppm_tf import features
from ppm_tf.data.tfrecords import load_preprocess_metadata, read_items
from ppm_tf.models.idrec import IDRecBackbone
from ppm_tf.models.ppm import PlugInHead, PPMUserTower, head_counts
from ppm_tf.models.tasks import RankingModel
from ppm_tf.training.ablations import ID_VOCABULARIES
from ppm_tf.work_layout import IMAGE_ENCODER, TEXT_ENCODER, WorkLayout


class RawItemTable(tf.Module):
    """item id -> (title, image bytes) from the catalogue: the raw content the encoders read."""

    def __init__(self, work: str):
        super().__init__()
        ids, titles, images = [], [], []
        for batch in read_items(work, 4096, deterministic=True, features=(
                features.ITEM_ID, features.TITLE, features.IMAGE)):
            ids.extend(batch[features.ITEM_ID].numpy())
            titles.extend(batch[features.TITLE].numpy())
            images.extend(batch[features.IMAGE].numpy())
        self.lookup = tf.keras.layers.StringLookup(vocabulary=[i.decode() for i in ids],
                                                   num_oov_indices=1)
        self.titles = tf.constant([b""] + titles)
        self.images = tf.constant([b""] + images)

    def __call__(self, item_ids):
        rows = self.lookup(item_ids)
        return tf.gather(self.titles, rows), tf.gather(self.images, rows)


class UncachedURM(RankingModel):
    """URM whose PPM inputs are computed from raw content in the graph (no precompute)."""

    def __init__(self, work: str, config):
        super().__init__(config)
        metadata = load_preprocess_metadata(work)
        max_seq_len = metadata["max_seq_len"]
        layout = WorkLayout(work)
        self.items = RawItemTable(work)
        self.text_encoder = tf.saved_model.load(layout.encoder_dir(TEXT_ENCODER))
        self.image_encoder = tf.saved_model.load(layout.encoder_dir(IMAGE_ENCODER))
        self.user_tower = PPMUserTower(config, max_seq_len, name="user_tower")
        self.head = PlugInHead(config, metadata["count_priors"], name="plug_in_head")
        vocabularies = {name: layout.vocab(name) for name in ID_VOCABULARIES}
        self.backbone = IDRecBackbone(vocabularies, metadata["oov_buckets"], config,
                                      metadata["count_priors"], name="idrec")

    def _item_vectors(self, item_ids):
        shape = tf.shape(item_ids)
        titles, images = self.items(tf.reshape(item_ids, [-1]))
        text = self.text_encoder.signatures["serving_default"](titles=titles)["text_vec"]
        image = self.image_encoder.signatures["serving_default"](images=images)["image_vec"]
        vectors = tf.concat([text, image], -1)
        return tf.reshape(vectors, tf.concat([shape, [tf.shape(vectors)[-1]]], 0))

    def call(self, batch, training=None):
        mask = tf.not_equal(batch[features.HIST_ITEM_IDS], features.PADDING_ID)
        states = self.user_tower((self._item_vectors(batch[features.HIST_ITEM_IDS]),
                                  batch[features.HIST_TS], batch[features.HIST_ACTIONS],
                                  batch[features.TS], mask),
                                 training=training)
        representation, ppm_click, ppm_order = self.head(
            (states, mask, self._item_vectors(batch[features.ITEM_ID]), head_counts(batch)),
            training=training)
        click, order = self.backbone((batch, representation), training=training)
        return {"click": click + ppm_click, "order": order + ppm_order}
