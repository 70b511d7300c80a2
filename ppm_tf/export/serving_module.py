"""What a served model is: a ``tf.Module`` with TF Serving signatures over a trained model.

Clients send ids and timestamps; the module looks up everything else it knows about an item
(category, brand, and its ME vector) in tables built into the model at export. Signatures:

- ``serving_default``: ``user_id``, ``item_id`` [n candidates], ``hist_item_ids``,
  ``hist_ts`` [n, L], ``ts`` [n] and, for URM, the cached ``ppm_user_states`` [n, L, d] and
  ``ppm_user_mask`` [n, L] -> ``click_prob``, ``order_prob`` [n]. Clients send every input
  with n rows (``requests.py``), the form TF Serving's batching accepts; a user-level input of
  size 1 is also broadcast to the n candidates, for in-process callers.
- ``serving_with_item_vectors`` (URM): the same plus ``ppm_item_vec`` [n, item_dim], for
  items newer than the export (their vectors come from the caller's embed job).
- ``user_states`` (URM): ``hist_item_ids``, ``hist_ts``, ``ts`` -> ``ppm_user_states``,
  ``ppm_user_mask``: the frozen PPM user tower, run once per request (or per new click) and
  cached by the caller, never per candidate. It ships in the same SavedModel as the head, so
  cache and head can never be of different versions.
- ``predict_examples``: serialized ``tf.Example`` [n] in the TFRecord spec -> the same outputs.

Only core TensorFlow ops: text and images are encoded offline, so stock TF Serving loads it.
"""
from __future__ import annotations

import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.item_table import ItemVectorTable
from ppm_tf.models.tasks import RankingModel


class ItemAttributeTable(tf.Module):
    """item id -> (category, brand) strings; unknown ids -> ("", "") (OOV in IDRec)."""

    def __init__(self, item_ids: list[str], categories: list[str], brands: list[str]):
        super().__init__()
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(item_ids), num_oov_indices=1)
        self.categories = tf.constant([""] + list(categories))
        self.brands = tf.constant([""] + list(brands))

    def __call__(self, item_ids):
        rows = self.lookup(item_ids)
        return tf.gather(self.categories, rows), tf.gather(self.brands, rows)


class ServingModule(tf.Module):
    def __init__(self, model: RankingModel, attributes: ItemAttributeTable,
                 item_vectors: ItemVectorTable | None, user_tower=None, *, max_seq_len: int,
                 tower_dim: int = 0):
        super().__init__()
        self.model = model
        self.attributes = attributes
        self.item_vectors = item_vectors
        self.user_tower = user_tower
        self.max_seq_len = max_seq_len
        self.tower_dim = tower_dim
        self.uses_ppm = user_tower is not None

    # --- signatures -------------------------------------------------------------------------
    def signatures(self) -> dict:
        length = self.max_seq_len
        base_inputs = [tf.TensorSpec([None], tf.string, name=features.USER_ID),
                       tf.TensorSpec([None], tf.string, name=features.ITEM_ID),
                       tf.TensorSpec([None, length], tf.string, name=features.HIST_ITEM_IDS),
                       tf.TensorSpec([None, length], tf.int64, name=features.HIST_TS),
                       tf.TensorSpec([None], tf.int64, name=features.TS)]
        signatures = {"predict_examples": tf.function(
            self._predict_examples,
            input_signature=[tf.TensorSpec([None], tf.string, name="examples")])}
        if not self.uses_ppm:
            signatures["serving_default"] = tf.function(self._score_ids,
                                                        input_signature=base_inputs)
            return signatures
        cached_inputs = [tf.TensorSpec([None, length, self.tower_dim], tf.float32,
                                       name=features.PPM_USER_STATES),
                         tf.TensorSpec([None, length], tf.int64, name=features.PPM_USER_MASK)]
        item_vector = [tf.TensorSpec([None, self.item_vectors.dim], tf.float32,
                                     name=features.PPM_ITEM_VEC)]
        signatures["serving_default"] = tf.function(
            self._score_ids_cached, input_signature=base_inputs + cached_inputs)
        signatures["serving_with_item_vectors"] = tf.function(
            self._score_ids_cached_with_vectors,
            input_signature=base_inputs + cached_inputs + item_vector)
        signatures["user_states"] = self.user_tower.user_states
        return signatures

    def _score_ids(self, user_id, item_id, hist_item_ids, hist_ts, ts):
        return self._score(self._id_features(user_id, item_id, hist_item_ids, hist_ts, ts))

    def _score_ids_cached(self, user_id, item_id, hist_item_ids, hist_ts, ts, ppm_user_states,
                          ppm_user_mask):
        return self._score_ids_cached_with_vectors(
            user_id, item_id, hist_item_ids, hist_ts, ts, ppm_user_states, ppm_user_mask,
            self.item_vectors(item_id))

    def _score_ids_cached_with_vectors(self, user_id, item_id, hist_item_ids, hist_ts, ts,
                                       ppm_user_states, ppm_user_mask, ppm_item_vec):
        batch = self._id_features(user_id, item_id, hist_item_ids, hist_ts, ts)
        batch[features.PPM_USER_STATES] = _broadcast(ppm_user_states, tf.shape(item_id)[0])
        batch[features.PPM_USER_MASK] = _broadcast(ppm_user_mask, tf.shape(item_id)[0])
        batch[features.PPM_ITEM_VEC] = ppm_item_vec
        return self._score(batch)

    def _predict_examples(self, examples):
        table = features.CACHED_EXAMPLE_FEATURES if self.uses_ppm else features.EXAMPLE_FEATURES
        dims = ({features.PPM_USER_STATES: self.max_seq_len * self.tower_dim,
                 features.PPM_ITEM_VEC: self.item_vectors.dim} if self.uses_ppm else None)
        wanted = {features.USER_ID, features.ITEM_ID, features.HIST_ITEM_IDS, features.HIST_TS,
                  features.TS, features.PPM_USER_STATES, features.PPM_USER_MASK,
                  features.PPM_ITEM_VEC}
        spec = features.parse_spec([feature for feature in table if feature.name in wanted],
                                   self.max_seq_len, dims)
        parsed = tf.io.parse_example(examples, spec)
        batch = self._id_features(parsed[features.USER_ID], parsed[features.ITEM_ID],
                                  parsed[features.HIST_ITEM_IDS], parsed[features.HIST_TS],
                                  parsed[features.TS])
        if self.uses_ppm:
            batch[features.PPM_USER_STATES] = tf.reshape(
                parsed[features.PPM_USER_STATES], [-1, self.max_seq_len, self.tower_dim])
            batch[features.PPM_USER_MASK] = parsed[features.PPM_USER_MASK]
            batch[features.PPM_ITEM_VEC] = parsed[features.PPM_ITEM_VEC]
        return self._score(batch)

    # --- helpers ----------------------------------------------------------------------------
    def _id_features(self, user_id, item_id, hist_item_ids, hist_ts, ts) -> dict:
        candidates = tf.shape(item_id)[0]
        hist_item_ids = _broadcast(hist_item_ids, candidates)
        category, brand = self.attributes(item_id)
        hist_categories, _ = self.attributes(hist_item_ids)
        hist_categories = tf.where(tf.equal(hist_item_ids, features.PADDING_ID),
                                   features.PADDING_ID, hist_categories)
        return {features.USER_ID: _broadcast(user_id, candidates),
                features.ITEM_ID: item_id, features.CATEGORY: category, features.BRAND: brand,
                features.HIST_ITEM_IDS: hist_item_ids,
                features.HIST_CATEGORIES: hist_categories,
                features.HIST_TS: _broadcast(hist_ts, candidates),
                features.TS: _broadcast(ts, candidates)}

    def _score(self, batch: dict) -> dict:
        return self.model.predict_probabilities(batch)


def _broadcast(user_level, candidates):
    """[1, ...] -> [candidates, ...]; a tensor already per candidate is returned as is."""
    rows = tf.shape(user_level)[0]
    multiples = tf.concat([[tf.where(tf.equal(rows, 1), candidates, 1)],
                           tf.ones([tf.rank(user_level) - 1], tf.int32)], 0)
    return tf.tile(user_level, multiples)
