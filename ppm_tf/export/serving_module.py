"""What a served model is: a ``tf.Module`` with TF Serving signatures over a trained model.

Clients send ids, timestamps and the user's as-of counts (``user_counts``, computed from the
user's log like the history); the module looks up everything else it knows about an item
(category, brand, content tokens, its and its category's as-of counts, and its ME vector) in
tables built into the model at export. Signatures:

- ``serving_default``: ``user_id``, ``item_id`` [n candidates], ``hist_item_ids``,
  ``hist_ts``, ``hist_actions`` [n, L], ``ts`` [n], ``user_counts`` [n, COUNT_SIZE] and, for
  URM, the cached ``ppm_user_states`` [n, L, d] and ``ppm_user_mask`` [n, L] -> ``click_prob``,
  ``order_prob`` [n]. Clients send every input with n rows (``requests.py``), the form TF
  Serving's batching accepts; a user-level input of size 1 is also broadcast to the n
  candidates, for in-process callers.
- ``serving_with_item_counts``: the same plus ``item_counts`` and ``category_counts``
  [n, COUNT_SIZE], overriding the tables' counts (as of the log's end at the last
  ``ppm preprocess``) with fresher ones, or with the counts as of a logged request's day.
- ``serving_with_item_vectors`` (URM): the same as ``serving_default`` plus ``ppm_item_vec``
  [n, item_dim], for items newer than the export (their vectors come from the caller's embed
  job).
- ``user_states`` (URM): ``hist_item_ids``, ``hist_ts``, ``hist_actions``, ``ts`` ->
  ``ppm_user_states``, ``ppm_user_mask``: the frozen PPM user tower, run once per request (or
  per new click) and cached by the caller, never per candidate. It ships in the same
  SavedModel as the head, so cache and head can never be of different versions.
- ``predict_examples``: serialized ``tf.Example`` [n] in the TFRecord spec -> the same outputs.

Only core TensorFlow ops: text and images are encoded offline, so stock TF Serving loads it.
"""
from __future__ import annotations

import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.item_table import ItemVectorTable
from ppm_tf.models.tasks import RankingModel

ITEM_COUNTS_SIGNATURE = "serving_with_item_counts"
ITEM_VECTORS_SIGNATURE = "serving_with_item_vectors"


class ItemAttributeTable(tf.Module):
    """item id -> (category, brand, joined content tokens) strings; unknown ids -> ("", "",
    "") (OOV in IDRec)."""

    def __init__(self, item_ids: list[str], categories: list[str], brands: list[str],
                 contents: list[str]):
        super().__init__()
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(item_ids), num_oov_indices=1)
        self.categories = tf.constant([""] + list(categories))
        self.brands = tf.constant([""] + list(brands))
        self.contents = tf.constant([""] + list(contents))

    def __call__(self, item_ids):
        rows = self.lookup(item_ids)
        return (tf.gather(self.categories, rows), tf.gather(self.brands, rows),
                tf.gather(self.contents, rows))


class CountTable(tf.Module):
    """key (item id or category) -> its as-of counts ``[COUNT_SIZE]`` at the log's end;
    unknown keys -> zeros, which the models read as the prior."""

    def __init__(self, keys: list[str], counts):
        super().__init__()
        self.lookup = tf.keras.layers.StringLookup(vocabulary=list(keys), num_oov_indices=1)
        self.counts = tf.constant(tf.concat([tf.zeros([1, features.COUNT_SIZE]),
                                             tf.constant(counts, tf.float32)], 0))

    def __call__(self, keys):
        return tf.gather(self.counts, self.lookup(keys))


class ServingModule(tf.Module):
    def __init__(self, model: RankingModel, attributes: ItemAttributeTable,
                 count_tables: dict[str, CountTable], item_vectors: ItemVectorTable | None,
                 user_tower=None, *, max_seq_len: int, tower_dim: int = 0):
        super().__init__()
        self.model = model
        self.attributes = attributes
        self.item_counts = count_tables[features.ITEM_ID]
        self.category_counts = count_tables[features.CATEGORY]
        self.item_vectors = item_vectors
        self.user_tower = user_tower
        self.max_seq_len = max_seq_len
        self.tower_dim = tower_dim
        self.uses_ppm = user_tower is not None

    # --- signatures -------------------------------------------------------------------------
    def signatures(self) -> dict:
        length = self.max_seq_len
        inputs = [tf.TensorSpec([None], tf.string, name=features.USER_ID),
                  tf.TensorSpec([None], tf.string, name=features.ITEM_ID),
                  tf.TensorSpec([None, length], tf.string, name=features.HIST_ITEM_IDS),
                  tf.TensorSpec([None, length], tf.int64, name=features.HIST_TS),
                  tf.TensorSpec([None, length], tf.int64, name=features.HIST_ACTIONS),
                  tf.TensorSpec([None], tf.int64, name=features.TS),
                  tf.TensorSpec([None, features.COUNT_SIZE], tf.float32,
                                name=features.USER_COUNTS)]
        if self.uses_ppm:
            inputs += [tf.TensorSpec([None, length, self.tower_dim], tf.float32,
                                     name=features.PPM_USER_STATES),
                       tf.TensorSpec([None, length], tf.int64, name=features.PPM_USER_MASK)]
        item_counts = [tf.TensorSpec([None, features.COUNT_SIZE], tf.float32, name=name)
                       for name in (features.ITEM_COUNTS, features.CATEGORY_COUNTS)]
        signatures = {
            "serving_default": self._scoring_signature(inputs),
            ITEM_COUNTS_SIGNATURE: self._scoring_signature(inputs + item_counts),
            "predict_examples": tf.function(
                self._predict_examples,
                input_signature=[tf.TensorSpec([None], tf.string, name="examples")])}
        if self.uses_ppm:
            signatures[ITEM_VECTORS_SIGNATURE] = self._scoring_signature(
                inputs + [tf.TensorSpec([None, self.item_vectors.dim], tf.float32,
                                        name=features.PPM_ITEM_VEC)])
            signatures["user_states"] = self.user_tower.user_states
        return signatures

    def _scoring_signature(self, specs: list[tf.TensorSpec]):
        """A signature taking ``specs`` (named inputs) and scoring every candidate."""
        names = [spec.name for spec in specs]
        return tf.function(lambda *tensors: self._score_request(dict(zip(names, tensors))),
                           input_signature=specs)

    def _score_request(self, inputs: dict) -> dict:
        """One request's candidates. What the request does not override comes from the
        tables: the item's and its category's counts, and URM's candidate vectors."""
        batch = self._id_features(*(inputs[name] for name in (
            features.USER_ID, features.ITEM_ID, features.HIST_ITEM_IDS, features.HIST_TS,
            features.HIST_ACTIONS, features.TS, features.USER_COUNTS)))
        for name in (features.ITEM_COUNTS, features.CATEGORY_COUNTS):
            if name in inputs:
                batch[name] = inputs[name]
        if self.uses_ppm:
            candidates = tf.shape(inputs[features.ITEM_ID])[0]
            for name in (features.PPM_USER_STATES, features.PPM_USER_MASK):
                batch[name] = _broadcast(inputs[name], candidates)
            batch[features.PPM_ITEM_VEC] = (inputs[features.PPM_ITEM_VEC]
                                            if features.PPM_ITEM_VEC in inputs
                                            else self.item_vectors(inputs[features.ITEM_ID]))
        return self._score(batch)

    def _predict_examples(self, examples):
        table = features.CACHED_EXAMPLE_FEATURES if self.uses_ppm else features.EXAMPLE_FEATURES
        dims = ({features.PPM_USER_STATES: self.max_seq_len * self.tower_dim,
                 features.PPM_ITEM_VEC: self.item_vectors.dim} if self.uses_ppm else None)
        wanted = {features.USER_ID, features.ITEM_ID, features.HIST_ITEM_IDS, features.HIST_TS,
                  features.HIST_ACTIONS, features.TS, *features.COUNT_FEATURES,
                  features.PPM_USER_STATES, features.PPM_USER_MASK, features.PPM_ITEM_VEC}
        spec = features.parse_spec([feature for feature in table if feature.name in wanted],
                                   self.max_seq_len, dims)
        parsed = tf.io.parse_example(examples, spec)
        batch = self._id_features(parsed[features.USER_ID], parsed[features.ITEM_ID],
                                  parsed[features.HIST_ITEM_IDS], parsed[features.HIST_TS],
                                  parsed[features.HIST_ACTIONS], parsed[features.TS],
                                  parsed[features.USER_COUNTS])
        # An example carries the item's counts as of its own day, not the table's.
        batch[features.ITEM_COUNTS] = parsed[features.ITEM_COUNTS]
        batch[features.CATEGORY_COUNTS] = parsed[features.CATEGORY_COUNTS]
        if self.uses_ppm:
            batch[features.PPM_USER_STATES] = tf.reshape(
                parsed[features.PPM_USER_STATES], [-1, self.max_seq_len, self.tower_dim])
            batch[features.PPM_USER_MASK] = parsed[features.PPM_USER_MASK]
            batch[features.PPM_ITEM_VEC] = parsed[features.PPM_ITEM_VEC]
        return self._score(batch)

    # --- helpers ----------------------------------------------------------------------------
    def _id_features(self, user_id, item_id, hist_item_ids, hist_ts, hist_actions, ts,
                     user_counts) -> dict:
        candidates = tf.shape(item_id)[0]
        hist_item_ids = _broadcast(hist_item_ids, candidates)
        category, brand, content = self.attributes(item_id)
        hist_categories, _, hist_content = self.attributes(hist_item_ids)
        padding = tf.equal(hist_item_ids, features.PADDING_ID)
        hist_categories = tf.where(padding, features.PADDING_ID, hist_categories)
        hist_content = tf.where(padding, features.PADDING_ID, hist_content)
        return {features.USER_ID: _broadcast(user_id, candidates),
                features.ITEM_ID: item_id, features.CATEGORY: category, features.BRAND: brand,
                features.ITEM_CONTENT: content,
                features.HIST_ITEM_IDS: hist_item_ids,
                features.HIST_CATEGORIES: hist_categories,
                features.HIST_CONTENT: hist_content,
                features.HIST_TS: _broadcast(hist_ts, candidates),
                features.HIST_ACTIONS: _broadcast(hist_actions, candidates),
                features.TS: _broadcast(ts, candidates),
                features.USER_COUNTS: _broadcast(user_counts, candidates),
                features.ITEM_COUNTS: self.item_counts(item_id),
                features.CATEGORY_COUNTS: self.category_counts(category)}

    def _score(self, batch: dict) -> dict:
        return self.model.predict_probabilities(batch)


def _broadcast(user_level, candidates):
    """[1, ...] -> [candidates, ...]; a tensor already per candidate is returned as is."""
    rows = tf.shape(user_level)[0]
    multiples = tf.concat([[tf.where(tf.equal(rows, 1), candidates, 1)],
                           tf.ones([tf.rank(user_level) - 1], tf.int32)], 0)
    return tf.tile(user_level, multiples)
