"""Behaviour sequences of impressions (``ppm preprocess --history impressions``): PPM's tower
reads each entry's action type when ``history_actions`` is on, the id models pool only the
clicked entries, and the exported tower takes the actions as the served ``user_states``
does."""
import dataclasses

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.config import preset
from ppm_tf.models.idrec import IDRec
from ppm_tf.models.item_table import ItemVectorTable
from ppm_tf.models.logistic_regression import LogisticRegression
from ppm_tf.models.ppm import PPM
from ppm_tf.training.pretrain import export_user_tower

CONFIG = preset("tiny")
MAX_SEQ_LEN, ITEM_DIM = 4, 6
ITEMS = ("i0", "i1", "i2", "i3")
TS = 1_742_600_000
PRIORS = {"click_rate": 0.05, "order_rate": 0.01}
SHOWN, CLICKED, ORDERED = features.ACTION_SHOWN, features.ACTION_CLICKED, features.ACTION_ORDERED


@pytest.fixture(autouse=True)
def seeded():
    tf.keras.utils.set_random_seed(5)


@pytest.fixture
def vocabularies(tmp_path) -> dict[str, str]:
    tokens = {features.USER_ID: ["u0", "u1"], features.ITEM_ID: list(ITEMS),
              features.CATEGORY: ["lamp", "sofa"], features.BRAND: ["kelta"],
              features.CONTENT_VOCABULARY: ["red", "oak"]}
    paths = {}
    for name, values in tokens.items():
        path = tmp_path / f"{name}.txt"
        path.write_text("\n".join(values) + "\n")
        paths[name] = str(path)
    return paths


def ppm_model(history_actions: bool) -> PPM:
    vectors = np.random.default_rng(0).normal(size=(len(ITEMS), ITEM_DIM)).astype(np.float32)
    return PPM(ItemVectorTable(list(ITEMS), vectors, name="item_vectors"),
               dataclasses.replace(CONFIG, history_actions=history_actions), MAX_SEQ_LEN,
               PRIORS)


def batch(hist_item_ids, hist_actions) -> dict[str, tf.Tensor]:
    """Two impressions of user u0 with the given sequences (rows of ``MAX_SEQ_LEN``)."""
    rows = len(hist_item_ids)
    real = np.array(hist_actions) > 0
    return {
        features.USER_ID: tf.constant(["u0"] * rows), features.ITEM_ID: tf.constant(["i0"] * rows),
        features.CATEGORY: tf.constant(["lamp"] * rows),
        features.BRAND: tf.constant(["kelta"] * rows),
        features.ITEM_CONTENT: tf.constant(["red"] * rows),
        features.TS: tf.constant([TS] * rows, tf.int64),
        features.HIST_ITEM_IDS: tf.constant(hist_item_ids),
        features.HIST_CATEGORIES: tf.constant(np.where(real, "sofa", "")),
        features.HIST_CONTENT: tf.constant(np.where(real, "oak", "")),
        features.HIST_TS: tf.constant(np.where(real, TS - 60 * (1 + np.arange(MAX_SEQ_LEN)), 0),
                                      tf.int64),
        features.HIST_ACTIONS: tf.constant(hist_actions, tf.int64),
        features.HIST_LEN: tf.constant(real.sum(1), tf.int64),
        features.ITEM_AGE_DAYS: tf.constant([3.0] * rows),
        **{name: tf.constant(np.ones([rows, features.COUNT_SIZE]), tf.float32)
           for name in features.COUNT_FEATURES},
    }


IMPRESSIONS = batch([["i1", "i2", "i3", ""], ["i2", "i1", "", ""]],
                    [[CLICKED, SHOWN, ORDERED, 0], [SHOWN, SHOWN, 0, 0]])


def with_actions(original: dict, hist_actions) -> dict:
    return {**original, features.HIST_ACTIONS: tf.constant(hist_actions, tf.int64)}


def states(model: PPM, inputs: dict) -> np.ndarray:
    return model.user_states(inputs)[features.PPM_USER_STATES].numpy()


def test_the_tower_reads_the_actions_only_with_history_actions():
    relabelled = with_actions(IMPRESSIONS, [[SHOWN, CLICKED, CLICKED, 0], [SHOWN, ORDERED, 0, 0]])
    without = ppm_model(history_actions=False)
    np.testing.assert_array_equal(states(without, IMPRESSIONS), states(without, relabelled))
    with_embedding = ppm_model(history_actions=True)
    before, after = states(with_embedding, IMPRESSIONS), states(with_embedding, relabelled)
    assert not np.allclose(before[:, :3], after[:, :3])
    assert "actions" in {layer.name for layer in with_embedding.user_tower.submodules
                         if isinstance(layer, tf.keras.layers.Layer)}
    logits = with_embedding(IMPRESSIONS)
    assert logits["click"].shape == (2,) and np.isfinite(logits["click"].numpy()).all()


@pytest.mark.parametrize("model_class", [IDRec, LogisticRegression])
def test_id_models_pool_only_the_clicked_entries(vocabularies, model_class):
    model = model_class(vocabularies, 2, CONFIG, PRIORS)
    model(IMPRESSIONS)
    for variable in model.trainable_variables:  # logistic regression starts at zero
        variable.assign(tf.random.normal(variable.shape, stddev=0.5))
    # Row 0's shown entry (i2) is swapped for another item: the id models never see it.
    other_shown = {**IMPRESSIONS, features.HIST_ITEM_IDS: tf.constant(
        [["i1", "i0", "i3", ""], ["i3", "i0", "", ""]])}
    first, second = model(IMPRESSIONS), model(other_shown)
    for task in ("click", "order"):
        np.testing.assert_array_equal(first[task].numpy(), second[task].numpy())
    # The same swap where that entry was clicked changes the pooled history.
    clicked = with_actions(IMPRESSIONS, [[CLICKED, CLICKED, ORDERED, 0], [CLICKED, SHOWN, 0, 0]])
    clicked_swapped = with_actions(other_shown, clicked[features.HIST_ACTIONS])
    assert not np.allclose(model(clicked)["click"].numpy(),
                           model(clicked_swapped)["click"].numpy())


def test_the_exported_tower_takes_the_actions_as_the_served_user_states_does(tmp_path):
    model = ppm_model(history_actions=True)
    expected = states(model, IMPRESSIONS)
    export_user_tower(model, MAX_SEQ_LEN, str(tmp_path / "tower"))
    serving = tf.saved_model.load(str(tmp_path / "tower")).signatures["serving_default"]
    assert set(serving.structured_input_signature[1]) == set(features.USER_STATE_INPUTS)
    served = serving(**{name: IMPRESSIONS[name] for name in features.USER_STATE_INPUTS})
    np.testing.assert_allclose(served[features.PPM_USER_STATES].numpy(), expected,
                               rtol=1e-5, atol=1e-6)
    relabelled = with_actions(IMPRESSIONS, [[ORDERED] * 3 + [0], [ORDERED] * 2 + [0, 0]])
    assert not np.allclose(serving(**{name: relabelled[name] for name in
                                      features.USER_STATE_INPUTS})[features.PPM_USER_STATES],
                           expected)
