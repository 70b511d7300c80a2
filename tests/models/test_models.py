"""PPM (ID-free), its user tower / plug-in head boundary, IDRec, URM and the item-vector table,
on small random batches with the ``tiny`` preset."""
import dataclasses
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.config import URM_INTEGRATIONS, preset
from ppm_tf.models.count_rates import CountRates
from ppm_tf.models.idrec import ContentBag, IDRec, IdEmbedding
from ppm_tf.models.item_table import ItemVectorTable
from ppm_tf.transformer import BidirectionalTransformerBlock
from ppm_tf.models.ppm import (PPM, PlugInHead, PPMOnCachedStates, PPMUserTower,
                               cached_head_inputs)
from ppm_tf.models.unified import UnifiedModel
from ppm_tf.fitting import trainable_parameters
from ppm_tf.training.ablations import pace_pretrained_head, initialise_head_from_pretraining
from ppm_tf.training.pretrain import UserTowerModule, export_user_tower
from ppm_tf.work_layout import WorkLayout

# Without the head's count offset the output layers start at random, not zero, so an untrained
# model shows which inputs reach its logits.
CONFIG = dataclasses.replace(preset("tiny"), head_count_offset=False)
MAX_SEQ_LEN, ITEM_DIM, BATCH = 4, 6, 3
ITEMS = ("i0", "i1", "i2", "i3")
VOCABULARIES = {features.USER_ID: ["u0", "u1"], features.ITEM_ID: list(ITEMS),
                features.CATEGORY: ["lamp", "sofa"], features.BRAND: ["kelta"],
                features.CONTENT_VOCABULARY: ["red", "oak", "year=1995"]}
TS = 1_742_600_000
PRIORS = {"click_rate": 0.05, "order_rate": 0.01}
# What PPM may read: the behaviour items (through the item table), their times and action
# types, the request time, the candidate (through the item table) and the as-of counts
# (ID-free statistics).
PPM_INPUTS = (features.HIST_ITEM_IDS, features.HIST_TS, features.HIST_ACTIONS, features.TS,
              features.ITEM_ID, *features.COUNT_FEATURES)
CACHED_INPUTS = (features.PPM_USER_STATES, features.PPM_USER_MASK, features.PPM_ITEM_VEC,
                 *features.COUNT_FEATURES)


@pytest.fixture(autouse=True)
def seeded():
    tf.keras.utils.set_random_seed(3)


def item_vectors(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(len(ITEMS), ITEM_DIM)).astype(np.float32)


def item_table(vectors: np.ndarray | None = None) -> ItemVectorTable:
    return ItemVectorTable(list(ITEMS), item_vectors() if vectors is None else vectors,
                           name="item_vectors")


@pytest.fixture
def vocabularies(tmp_path) -> dict[str, str]:
    paths = {}
    for name, tokens in VOCABULARIES.items():
        path = tmp_path / "vocab" / f"{name}.txt"
        path.parent.mkdir(exist_ok=True)
        path.write_text("\n".join(tokens) + "\n")
        paths[name] = str(path)
    return paths


def make_batch(seed: int = 0) -> dict[str, tf.Tensor]:
    """Three impressions: a short history, an empty one (all padding), a full one; plus the
    cached tensors precompute would have added."""
    rng = np.random.default_rng(seed)
    return {
        features.REQUEST_ID: tf.constant(["r0", "r1", "r2"]),
        features.USER_ID: tf.constant(["u0", "u1", "unknown-user"]),
        features.ITEM_ID: tf.constant(["i0", "i3", "new-item"]),
        features.CATEGORY: tf.constant(["lamp", "sofa", "lamp"]),
        features.BRAND: tf.constant(["kelta", "", "other"]),
        features.ITEM_CONTENT: tf.constant(["red\x1foak", "", "year=1995\x1funseen"]),
        features.TS: tf.constant([TS] * BATCH, tf.int64),
        features.HIST_ITEM_IDS: tf.constant([["i1", "i2", "", ""], ["", "", "", ""],
                                             ["i2", "i0", "i3", "i1"]]),
        features.HIST_CATEGORIES: tf.constant([["sofa", "lamp", "", ""], ["", "", "", ""],
                                               ["lamp", "lamp", "sofa", "sofa"]]),
        features.HIST_CONTENT: tf.constant([["oak", "red\x1foak", "", ""], ["", "", "", ""],
                                            ["red", "", "oak", "year=1995"]]),
        features.HIST_TS: tf.constant([[TS - 60, TS - 86_400, 0, 0], [0, 0, 0, 0],
                                       [TS - 5, TS - 3600, TS - 7200, TS - 10 ** 6]], tf.int64),
        features.HIST_ACTIONS: tf.constant([[2, 2, 0, 0], [0, 0, 0, 0], [2, 2, 2, 2]], tf.int64),
        features.HIST_LEN: tf.constant([2, 0, 4], tf.int64),
        features.CLICK: tf.constant([1, 0, 1], tf.int64),
        features.ORDER: tf.constant([0, 0, 1], tf.int64),
        **{name: tf.constant(rng.integers(0, 5, size=(BATCH, features.COUNT_SIZE)), tf.float32)
           for name in features.COUNT_FEATURES},
        features.PPM_USER_STATES: tf.constant(
            rng.normal(size=(BATCH, MAX_SEQ_LEN, CONFIG.tower_dim)).astype(np.float32)),
        features.PPM_USER_MASK: tf.constant([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], tf.int64),
        features.PPM_ITEM_VEC: tf.constant(rng.normal(size=(BATCH, ITEM_DIM)).astype(np.float32)),
    }


def replaced(batch: dict, **values) -> dict:
    return {**batch, **{name: tf.constant(value) for name, value in values.items()}}


def assert_same_logits(first: dict, second: dict) -> None:
    for task in ("click", "order"):
        np.testing.assert_array_equal(first[task].numpy(), second[task].numpy())


def variable_names(model: tf.Module) -> list[str]:
    return [variable.name for variable in model.trainable_variables]


@pytest.fixture
def ppm() -> PPM:
    return PPM(item_table(), CONFIG, MAX_SEQ_LEN, PRIORS, name="ppm")


# PPM: ID-free.

def test_ppm_runs_on_content_features_alone(ppm):
    batch = make_batch()
    content_only = {name: batch[name] for name in PPM_INPUTS}
    logits = ppm(content_only)
    assert set(logits) == {"click", "order"}
    assert logits["click"].shape == logits["order"].shape == (BATCH,)
    assert_same_logits(ppm(batch), logits)


def test_ppm_ignores_user_category_brand_and_every_other_id(ppm):
    batch = make_batch()
    expected = ppm(batch)
    changed = replaced(
        batch, user_id=["u1", "u0", "someone"], category=["sofa", "lamp", "chair"],
        brand=["", "kelta", "kelta"], request_id=["x", "y", "z"],
        hist_categories=[["chair"] * MAX_SEQ_LEN] * BATCH, hist_len=np.array([4, 4, 4]),
        click=np.array([0, 1, 0]), order=np.array([1, 1, 0]))
    assert_same_logits(ppm(changed), expected)


def test_ppm_sees_items_only_through_their_content_vectors():
    vectors = item_vectors()
    vectors[3] = vectors[0]  # i3 has the same content as i0
    model = PPM(item_table(vectors), CONFIG, MAX_SEQ_LEN, PRIORS)
    batch = make_batch()
    expected = model(batch)
    renamed = replaced(batch, item_id=["i3", "i0", "new-item"],
                       hist_item_ids=[["i1", "i2", "", ""], ["", "", "", ""],
                                      ["i2", "i3", "i0", "i1"]])
    assert_same_logits(model(renamed), expected)
    # Not vacuous: another item's content changes the scores.
    other = model(replaced(batch, item_id=["i1", "i3", "new-item"]))
    assert not np.allclose(other["click"].numpy()[0], expected["click"].numpy()[0])


def test_ppm_uses_the_behaviour_times(ppm):
    batch = make_batch()
    older = replaced(batch, hist_ts=batch[features.HIST_TS].numpy() - 30 * 86_400)
    assert not np.allclose(ppm(older)["click"].numpy()[0], ppm(batch)["click"].numpy()[0])


def test_ppm_has_no_id_embedding_and_its_item_table_is_frozen(ppm):
    ppm(make_batch())
    assert not [layer for layer in ppm.submodules if isinstance(layer, IdEmbedding)]
    assert not [layer for layer in ppm.submodules  # only the content table maps ids
                if isinstance(layer, tf.keras.layers.StringLookup)]
    assert not any(variable is ppm.item_table.table for variable in ppm.trainable_variables)
    trainable = variable_names(ppm)
    assert not [name for name in trainable if name.startswith("ppm/") and not (
        name.startswith("ppm/user_tower/") or name.startswith("ppm/plug_in_head/"))]
    assert trainable_parameters(ppm) == (trainable_parameters(ppm.user_tower)
                                         + trainable_parameters(ppm.head))


# The cached boundary: user tower (history only) and plug-in head (cached tensors only).

def test_user_states_do_not_depend_on_the_candidate(ppm):
    batch = make_batch()
    states = ppm.user_states(batch)
    other_candidate = ppm.user_states(replaced(batch, item_id=["i2", "i2", "i1"]))
    for name in (features.PPM_USER_STATES, features.PPM_USER_MASK):
        np.testing.assert_array_equal(other_candidate[name].numpy(), states[name].numpy())
    user_states = states[features.PPM_USER_STATES].numpy()
    assert user_states.shape == (BATCH, MAX_SEQ_LEN, CONFIG.tower_dim)
    assert states[features.PPM_USER_MASK].dtype == tf.int64
    np.testing.assert_array_equal(states[features.PPM_USER_MASK].numpy(),
                                  [[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(user_states[0, 2:], 0.0)  # padding
    np.testing.assert_array_equal(user_states[1], 0.0)  # an empty history


def test_user_tower_takes_no_candidate_input():
    tower = PPMUserTower(CONFIG, MAX_SEQ_LEN)
    batch = make_batch()
    mask = tf.not_equal(batch[features.HIST_ITEM_IDS], "")
    states = tower((tf.random.normal([BATCH, MAX_SEQ_LEN, ITEM_DIM]), batch[features.HIST_TS],
                    batch[features.HIST_ACTIONS], batch[features.TS], mask))
    assert states.shape == (BATCH, MAX_SEQ_LEN, CONFIG.tower_dim)
    assert [type(block) for block in tower.blocks] == (
        [BidirectionalTransformerBlock] * CONFIG.tower_blocks)


def test_the_exported_tower_signature_takes_history_and_request_time_only(ppm):
    module = UserTowerModule(ppm, MAX_SEQ_LEN)
    assert [spec.name for spec in module.user_states.input_signature] == [
        features.HIST_ITEM_IDS, features.HIST_TS, features.HIST_ACTIONS, features.TS]


def test_plug_in_head_reads_the_cached_tensors_only():
    head = PlugInHead(CONFIG, PRIORS)
    batch = make_batch()
    representation, click, order = head(cached_head_inputs(batch))
    assert representation.shape == (BATCH, CONFIG.ppm_repr_dim)
    assert click.shape == order.shape == (BATCH,)
    cached_only = {name: batch[name] for name in CACHED_INPUTS}
    model = PPMOnCachedStates(CONFIG, PRIORS)
    logits = model(cached_only)
    assert_same_logits(model(batch), logits)
    assert_same_logits(model(replaced(batch, user_id=["a", "b", "c"], item_id=["x", "y", "z"],
                                      hist_item_ids=[["i0"] * MAX_SEQ_LEN] * BATCH)), logits)


def test_ppm_on_cached_states_equals_ppm_on_the_states_it_caches(ppm):
    """The head on precompute's tensors scores exactly as the whole PPM does."""
    batch = make_batch()
    expected = ppm(batch)
    cached = {**ppm.user_states(batch),
              features.PPM_ITEM_VEC: ppm.item_table(batch[features.ITEM_ID]),
              **{name: batch[name] for name in features.COUNT_FEATURES}}
    head_only = PPMOnCachedStates(CONFIG, PRIORS)
    head_only(cached)
    head_only.head.set_weights(ppm.head.get_weights())
    for task, values in head_only(cached).items():
        np.testing.assert_allclose(values.numpy(), expected[task].numpy(), rtol=1e-5,
                                   atol=1e-6)


def test_ppm_runs_its_tower_once_per_distinct_history_with_every_rows_logits_and_gradients(
        ppm):
    """A batch of whole requests repeats each history: the tower runs on one copy, and the
    logits and gradients are those of the tower run on every row (as precompute caches it)."""
    batch = make_batch()
    repeated = {name: tf.gather(value, [0, 1, 2, 0, 2, 0]) for name, value in batch.items()}
    first, back = ppm.distinct_histories(repeated)
    assert first.numpy().tolist() == [0, 1, 2]
    assert back.numpy().tolist() == [0, 1, 2, 0, 2, 0]

    def every_row(features_):
        cached = ppm.user_states(features_, training=True)
        return ppm.head((cached[features.PPM_USER_STATES], cached[features.PPM_USER_MASK],
                         ppm.item_table(features_[features.ITEM_ID]),
                         {name: features_[name] for name in features.COUNT_FEATURES}),
                        training=True)[1]

    ppm(repeated)  # builds the weights, outside the tape
    with tf.GradientTape(persistent=True) as tape:
        once = ppm(repeated, training=True)["click"]
        expected = every_row(repeated)
        once_sum, expected_sum = tf.reduce_sum(once), tf.reduce_sum(expected)
    np.testing.assert_allclose(once.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
    weights = ppm.user_tower.trainable_variables + ppm.head.trainable_variables
    gradients = tape.gradient(once_sum, weights)
    expected_gradients = tape.gradient(expected_sum, weights)
    compared = 0
    for gradient, expected_gradient in zip(gradients, expected_gradients):
        assert (gradient is None) == (expected_gradient is None)
        if gradient is not None:  # None: a weight the click logit does not use
            np.testing.assert_allclose(tf.convert_to_tensor(gradient).numpy(),
                                       tf.convert_to_tensor(expected_gradient).numpy(),
                                       rtol=1e-4, atol=1e-6)
            compared += 1
    assert compared > len(ppm.user_tower.trainable_variables)  # the tower's and the head's


def test_histories_are_distinct_when_any_tower_input_differs_and_only_then(ppm):
    row = {name: tf.gather(value, [0, 0, 0, 0, 0]) for name, value in make_batch().items()}
    ids = row[features.HIST_ITEM_IDS].numpy().astype(object)
    ids[3, 2] = b"never-seen"  # the zero vector, as padding, but not masked
    actions = row[features.HIST_ACTIONS].numpy()
    actions[2, 0] = features.ACTION_ORDERED
    varied = {**row, features.HIST_ITEM_IDS: tf.constant(ids.astype(bytes)),
              features.HIST_ACTIONS: tf.constant(actions),
              features.TS: tf.constant([TS, TS + 1, TS, TS, TS], tf.int64),
              # Not tower inputs: the same history for the tower.
              features.ITEM_ID: tf.constant(["i0", "i1", "i2", "i3", "i1"]),
              features.REQUEST_ID: tf.constant(["a", "b", "c", "d", "e"])}
    first, back = ppm.distinct_histories(varied)
    assert first.numpy().tolist() == [0, 1, 2, 3]
    assert back.numpy().tolist() == [0, 1, 2, 3, 0]


def test_the_head_reads_the_counts_and_can_be_told_not_to():
    batch = make_batch()
    more_clicks = replaced(batch, item_counts=np.tile([[50.0, 40.0, 9.0, 5.0, 4.0, 1.0]],
                                                      (BATCH, 1)).astype(np.float32))
    with_counts = PPMOnCachedStates(CONFIG, PRIORS)
    assert not np.allclose(with_counts(batch)["click"].numpy(),
                           with_counts(more_clicks)["click"].numpy())
    content_only = PPMOnCachedStates(dataclasses.replace(CONFIG, ppm_counts=False), PRIORS)
    assert_same_logits(content_only(batch), content_only(more_clicks))


@pytest.mark.parametrize("integration", URM_INTEGRATIONS)
def test_urm_integrations_join_the_head_as_configured(vocabularies, integration):
    config = dataclasses.replace(CONFIG, urm_integration=integration, content_norm=True)
    urm = UnifiedModel(vocabularies, 2, config, PRIORS)
    batch = make_batch()
    logits = urm(batch)
    representation, ppm_click, ppm_order = urm.head(cached_head_inputs(batch))
    click, order = urm.backbone((batch, urm.representation_norm(representation)))
    # The gate starts at 1: the plain sum until training moves it.
    expected = {"representation": (click, order)}.get(integration,
                                                      (click + ppm_click, order + ppm_order))
    for task, values in zip(("click", "order"), expected):
        np.testing.assert_allclose(logits[task].numpy(), values.numpy(), rtol=1e-5, atol=1e-6)


def test_an_unknown_integration_is_refused():
    with pytest.raises(ValueError, match="urm_integration must be one of"):
        dataclasses.replace(CONFIG, urm_integration="product")


# ItemVectorTable.

def test_item_table_known_ids_get_their_vector_unknown_ids_and_padding_zero():
    vectors = item_vectors()
    table = item_table(vectors)
    looked_up = table(tf.constant([["i2", "new-item"], ["", "i0"]])).numpy()
    assert looked_up.shape == (2, 2, ITEM_DIM)
    np.testing.assert_array_equal(looked_up[0, 0], vectors[2])
    np.testing.assert_array_equal(looked_up[1, 1], vectors[0])
    np.testing.assert_array_equal(looked_up[0, 1], 0.0)
    np.testing.assert_array_equal(looked_up[1, 0], 0.0)


def test_item_table_is_not_trainable():
    table = item_table()
    assert table.trainable_weights == []
    assert len(table.non_trainable_weights) == 1
    table.trainable = True  # as ``model.trainable = True`` would set it
    assert table.trainable_weights == []


def test_item_table_needs_one_vector_per_id():
    with pytest.raises(ValueError, match="4 item ids but 3 vectors"):
        ItemVectorTable(list(ITEMS), item_vectors()[:3])


# URM: IDRec + the plug-in head on cached tensors; no tower, no encoder, no item table.

def test_urm_trains_only_idrec_and_the_plug_in_head(vocabularies):
    urm = UnifiedModel(vocabularies, 2, CONFIG, PRIORS, name="urm")
    logits = urm(make_batch())
    assert logits["click"].shape == logits["order"].shape == (BATCH,)
    names = variable_names(urm)
    assert names and all(name.startswith(("urm/plug_in_head/", "urm/idrec/")) for name in names)
    assert not [name for name in names
                if "user_tower" in name or "item_vectors" in name or "encoder" in name]
    forbidden = (PPMUserTower, ItemVectorTable, BidirectionalTransformerBlock)
    assert not [layer for layer in urm.submodules if isinstance(layer, forbidden)]
    assert trainable_parameters(urm) == (trainable_parameters(urm.backbone)
                                         + trainable_parameters(urm.head))


def test_urm_head_is_the_same_size_as_ppms_head_and_far_smaller_than_ppm(vocabularies, ppm):
    batch = make_batch()
    ppm(batch)
    urm = UnifiedModel(vocabularies, 2, CONFIG, PRIORS, name="urm")
    urm(batch)
    assert trainable_parameters(urm.head) == trainable_parameters(ppm.head)
    assert trainable_parameters(ppm.user_tower) > 0
    assert trainable_parameters(urm.head) < trainable_parameters(ppm)


def test_urm_works_without_the_raw_behaviour_times(vocabularies):
    """Only the cached states carry the tower's view of the history."""
    urm = UnifiedModel(vocabularies, 2, CONFIG, PRIORS)
    batch = make_batch()
    expected = urm(batch)
    without = {name: value for name, value in batch.items()
               if name not in (features.HIST_TS, features.TS)}
    assert_same_logits(urm(without), expected)


def test_urm_adds_the_ppm_logits_and_representation_to_idrec(vocabularies):
    urm = UnifiedModel(vocabularies, 2, CONFIG, PRIORS)
    batch = make_batch()
    logits = urm(batch)
    representation, ppm_click, ppm_order = urm.head(cached_head_inputs(batch))
    click, order = urm.backbone((batch, representation))
    np.testing.assert_allclose(logits["click"].numpy(), (click + ppm_click).numpy(), rtol=1e-6)
    np.testing.assert_allclose(logits["order"].numpy(), (order + ppm_order).numpy(), rtol=1e-6)


@pytest.mark.parametrize("model_name", ["urm", "ppm"])
def test_plug_in_head_starts_from_the_pretrained_weights(tmp_path, vocabularies, ppm,
                                                         model_name):
    batch = make_batch()
    ppm(batch)
    work = str(tmp_path)
    tf.train.Checkpoint(head=ppm.head).write(WorkLayout(work).head_checkpoint)
    model = (UnifiedModel(vocabularies, 2, CONFIG, PRIORS, name="urm") if model_name == "urm"
             else PPMOnCachedStates(CONFIG, PRIORS, name="ppm_on_cache"))
    model(batch)
    assert not np.allclose(model.head.get_weights()[0], ppm.head.get_weights()[0])
    initialise_head_from_pretraining(model, work, batch)
    pretrained, initial = ppm.head.get_weights(), model.head.get_weights()
    # candidate projection 2, attention query projection 1, MLP 4, click and order logits 4
    assert len(initial) == len(pretrained) == 11
    for before, after in zip(pretrained, initial):
        np.testing.assert_array_equal(after, before)


def test_a_head_checkpoint_of_another_shape_is_refused(tmp_path, vocabularies):
    other = PPM(ItemVectorTable(list(ITEMS), np.ones((len(ITEMS), ITEM_DIM + 2), np.float32)),
                CONFIG, MAX_SEQ_LEN, PRIORS)
    other(make_batch())
    tf.train.Checkpoint(head=other.head).write(WorkLayout(str(tmp_path)).head_checkpoint)
    with pytest.raises((ValueError, tf.errors.InvalidArgumentError), match="shape"):
        initialise_head_from_pretraining(UnifiedModel(vocabularies, 2, CONFIG, PRIORS),
                                         str(tmp_path), make_batch())


# IDRec.

def test_content_bag_averages_the_tokens_and_masks_empty_items(vocabularies):
    bag = ContentBag(vocabularies[features.CONTENT_VOCABULARY], 2, 5)
    joined = tf.constant([["red\x1foak", "oak", ""], ["red", "", "year=1995\x1fred"]])
    bagged = bag(joined).numpy()
    assert bagged.shape == (2, 3, 5)
    token = lambda name: bag.tokens(tf.constant([name])).numpy()[0]
    np.testing.assert_allclose(bagged[0, 0], (token("red") + token("oak")) / 2, rtol=1e-6)
    np.testing.assert_allclose(bagged[0, 1], token("oak"), rtol=1e-6)
    np.testing.assert_array_equal(bagged[0, 2], np.zeros(5))  # no token, or a padded position
    np.testing.assert_array_equal(bagged[1, 1], np.zeros(5))
    np.testing.assert_allclose(bagged[1, 2], (token("year=1995") + token("red")) / 2, rtol=1e-6)
    # A scalar per candidate gives one vector per candidate.
    assert bag(tf.constant(["red", ""])).shape == (2, 5)


def test_idrec_sees_every_content_token_of_the_candidate(vocabularies):
    base = IDRec(vocabularies, 2, CONFIG, PRIORS, name="base")
    batch = make_batch()
    first_token_only = {**batch, features.ITEM_CONTENT: tf.constant(["red", "", "year=1995"])}
    assert not np.allclose(base(batch)["click"].numpy(), base(first_token_only)["click"].numpy())


def test_without_content_tokens_idrec_and_urm_read_no_content_token(vocabularies):
    batch = make_batch()
    no_content = {**batch, features.ITEM_CONTENT: tf.constant(["", "", ""]),
                  features.HIST_CONTENT: tf.fill(tf.shape(batch[features.HIST_CONTENT]), "")}
    config = dataclasses.replace(CONFIG, content_tokens=False)
    for model in (IDRec(vocabularies, 2, config, PRIORS, name="base"),
                  UnifiedModel(vocabularies, 2, config, PRIORS, name="urm")):
        assert_same_logits(model(no_content), model(batch))
        assert not any("/content/" in name for name in variable_names(model))
    with_tokens = IDRec(vocabularies, 2, CONFIG, PRIORS, name="base")
    with_tokens(batch)
    assert any("/content/" in name for name in variable_names(with_tokens))


def test_idrec_base_and_qm_ep(vocabularies):
    batch = make_batch()
    base = IDRec(vocabularies, 2, CONFIG, PRIORS, name="base")
    qm_ep = IDRec(vocabularies, 2, CONFIG, PRIORS, extra_feature=features.PPM_ITEM_VEC,
                  name="qm_ep")
    for model in (base, qm_ep):
        logits = model(batch)
        assert logits["click"].shape == logits["order"].shape == (BATCH,)
        assert all(name.startswith(f"{model.name}/idrec/") for name in variable_names(model))
    # qm_ep's only extra parameters are those reading the item vector (the first cross layer
    # and the MLP's first layer are wider).
    assert trainable_parameters(qm_ep) > trainable_parameters(base)
    changed = replaced(batch, ppm_item_vec=np.zeros((BATCH, ITEM_DIM), np.float32))
    assert_same_logits(base(changed), base(batch))
    assert not np.allclose(qm_ep(changed)["click"].numpy(), qm_ep(batch)["click"].numpy())


def test_idrec_with_the_count_offset_starts_at_the_count_baseline_and_learns_a_residual(
        vocabularies):
    batch = make_batch()
    offset = dataclasses.replace(CONFIG, count_offset=True, head_count_offset=False)
    baseline = CountRates(PRIORS)(batch)
    urm_without_ppm_logits = dataclasses.replace(offset, urm_integration="representation")
    for model in (IDRec(vocabularies, 2, offset, PRIORS, name="base"),
                  UnifiedModel(vocabularies, 2, urm_without_ppm_logits, PRIORS, name="urm")):
        np.testing.assert_allclose(model(batch)["click"].numpy(),
                                   baseline["click"].numpy(), rtol=1e-5)
        np.testing.assert_allclose(model(batch)["order"].numpy(),
                                   baseline["order"].numpy(), rtol=1e-5)
    base = IDRec(vocabularies, 2, offset, PRIORS, name="base")
    base.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    base.fit(batch, epochs=3, verbose=0)
    assert not np.allclose(base(batch)["click"].numpy(), baseline["click"].numpy())


def test_with_the_heads_count_offset_ppm_and_urm_start_at_the_count_baseline(vocabularies):
    batch = make_batch()
    offset = dataclasses.replace(CONFIG, head_count_offset=True)
    baseline = CountRates(PRIORS)(batch)
    for model in (PPM(item_table(), offset, MAX_SEQ_LEN, PRIORS, name="ppm"),
                  PPMOnCachedStates(offset, PRIORS, name="ppm_on_cached_states"),
                  UnifiedModel(vocabularies, 2, offset, PRIORS, name="urm"),
                  PPMOnCachedStates(dataclasses.replace(offset, ppm_counts=False), PRIORS)):
        assert model.starts_at_baseline
        for task in ("click", "order"):
            np.testing.assert_allclose(model(batch)[task].numpy(), baseline[task].numpy(),
                                       rtol=1e-5)
    head = PPMOnCachedStates(offset, PRIORS)
    head.compile(optimizer=tf.keras.optimizers.Adam(0.05))
    head.fit(batch, epochs=3, verbose=0)
    assert not np.allclose(head(batch)["click"].numpy(), baseline["click"].numpy())
    with pytest.raises(ValueError, match="count_offset and head_count_offset"):
        UnifiedModel(vocabularies, 2, dataclasses.replace(offset, count_offset=True), PRIORS)


def test_without_count_volumes_idrec_and_lr_read_the_rates_only(vocabularies):
    from ppm_tf.models.layers import CountEncoding
    from ppm_tf.models.logistic_regression import LogisticRegression, numeric_inputs

    encoding = CountEncoding(PRIORS["click_rate"], PRIORS["order_rate"])
    counts = tf.constant([[40.0, 3.0, 1.0, 8.0, 2.0, 0.0]])
    encoded = encoding(counts).numpy()
    np.testing.assert_array_equal(
        CountEncoding.model_inputs(encoding(counts), volumes=False).numpy(),
        encoded[:, [1, 2, 4, 5]])
    np.testing.assert_array_equal(
        CountEncoding.model_inputs(encoding(counts), volumes=True).numpy(), encoded)
    # Counts at exactly the prior rates: every rate logit is 0 whatever the volume, so a
    # model without the volumes scores a tenfold volume the same.
    def at_prior(impressions: float) -> np.ndarray:
        window = [impressions, PRIORS["click_rate"] * impressions,
                  PRIORS["order_rate"] * impressions]
        return np.array([window * 2] * BATCH, np.float32)

    batch = make_batch()
    batch = replaced(batch, **{name: np.ones(BATCH, np.float32) for name in numeric_inputs()
                               if name not in batch})  # lr reads every numeric feature
    small = replaced(batch, **{name: at_prior(5.0) for name in features.COUNT_FEATURES})
    large = replaced(batch, **{name: at_prior(50.0) for name in features.COUNT_FEATURES})
    for volumes in (True, False):
        config = dataclasses.replace(CONFIG, count_volumes=volumes)
        tf.keras.utils.set_random_seed(3)
        base = IDRec(vocabularies, 2, config, PRIORS, name="base")
        lr = LogisticRegression(vocabularies, 2, config, PRIORS, name="lr")
        lr(batch)
        lr.linear.kernel.assign(tf.ones_like(lr.linear.kernel))
        for model in (base, lr):
            same = np.allclose(model(small)["click"].numpy(), model(large)["click"].numpy())
            assert same == (not volumes), (model.name, volumes)


def test_id_embedding_maps_padding_and_unknown_ids(vocabularies):
    embedding = IdEmbedding(vocabularies[features.ITEM_ID], oov_buckets=2, dim=4)
    assert embedding.lookup.vocabulary_size() == len(ITEMS) + 2 + 1  # + OOV rows + mask
    ids = embedding.lookup(tf.constant(["", "i0", "i3", "never-seen"])).numpy()
    assert ids[0] == 0 and ids[1] == 3 and ids[2] == 6 and ids[3] in (1, 2)
    assert embedding(tf.constant([["i0", ""]])).shape == (1, 2, 4)
    config = embedding.get_config()
    assert (config["oov_buckets"], config["dim"]) == (2, 4)
    assert IdEmbedding.from_config(config).vocabulary_file == vocabularies[features.ITEM_ID]


def test_unseen_ids_start_alike_whichever_bucket_they_hash_to(vocabularies, tmp_path):
    embedding = IdEmbedding(vocabularies[features.ITEM_ID], oov_buckets=4, dim=4)
    unseen = tf.constant(["new-0", "new-1", "new-2", "new-3", "new-4"])
    assert len(set(embedding.lookup(unseen).numpy())) > 1  # several buckets
    np.testing.assert_array_equal(embedding(unseen).numpy(), np.zeros((5, 4)))
    table = embedding.embedding.embeddings.numpy()
    assert np.all(table[1 + 4:] != 0.0)  # the vocabulary's rows as the initializer draws them
    (tmp_path / "empty.txt").write_text("")  # a field the data never fills: all hashed
    hashed = IdEmbedding(str(tmp_path / "empty.txt"), oov_buckets=4, dim=4)
    assert np.all(hashed(unseen).numpy() != 0.0)  # every row trains: none starts at zero
    initializer = embedding.embedding.embeddings_initializer
    # Sharded over parameter servers, the table is drawn by parts: rows 4-6 of rows 0-6.
    part = initializer((7, 4), partition_shape=(3, 4), partition_offset=(4, 0)).numpy()
    assert part.shape == (3, 4) and np.all(part[0] == 0.0) and np.all(part[1:] != 0.0)
    assert tf.keras.initializers.deserialize(
        tf.keras.initializers.serialize(initializer)).get_config() == initializer.get_config()


def test_id_dropout_moves_known_ids_to_the_bucket_an_unseen_id_gets_only_in_training(
        vocabularies):
    embedding = IdEmbedding(vocabularies[features.ITEM_ID], oov_buckets=4, dim=4,
                            dropout=0.999999)
    unseen = tf.constant(["new-0", "new-1", "new-2", "new-3", "new-4"])
    np.testing.assert_array_equal(  # where StringLookup puts an unseen id, as dropout does
        embedding.lookup(unseen).numpy(),
        1 + tf.strings.to_hash_bucket_fast(unseen, 4).numpy())
    ids = tf.constant([["i0", "i3", ""]])
    dropped = embedding(ids, training=True).numpy()
    buckets = 1 + tf.strings.to_hash_bucket_fast(ids, 4).numpy()[0]
    table = embedding.embedding.embeddings.numpy()
    np.testing.assert_array_equal(dropped[0, :2], table[buckets[:2]])
    np.testing.assert_array_equal(dropped[0, 2], table[0])  # padding is never dropped
    np.testing.assert_array_equal(embedding(ids).numpy()[0],
                                  table[embedding.lookup(ids).numpy()[0]])
    assert IdEmbedding.from_config(embedding.get_config()).dropout == embedding.dropout


def unseen_in_the_same_bucket(ids: tf.Tensor, oov_buckets: int) -> list[str]:
    """For each id, a string no vocabulary holds that hashes to the id's OOV bucket."""
    wanted = tf.strings.to_hash_bucket_fast(ids, oov_buckets).numpy()
    candidates = [f"unseen-{index}" for index in range(100)]
    buckets = tf.strings.to_hash_bucket_fast(candidates, oov_buckets).numpy()
    return [candidates[list(buckets).index(bucket)] for bucket in wanted]


@pytest.mark.parametrize("dropped", [features.USER_ID, features.ITEM_ID])
def test_idrec_in_training_sees_a_dropped_id_as_an_unseen_one_never_a_history_item(
        vocabularies, dropped):
    rates = {"user_id_dropout": 0.0, "item_id_dropout": 0.0,
             f"{dropped}_dropout": 0.999999}  # user_id_dropout or item_id_dropout
    base = IDRec(vocabularies, 4, dataclasses.replace(CONFIG, dropout=0.0, **rates), PRIORS)
    batch = make_batch()
    as_unseen = replaced(batch, **{dropped: unseen_in_the_same_bucket(batch[dropped], 4)})
    # The history's item ids (known ones among them) are the same in both batches: equal
    # logits mean they were not dropped.
    assert_same_logits(base(batch, training=True), base(as_unseen))
    assert not np.allclose(base(batch)["click"].numpy(), base(as_unseen)["click"].numpy())


def test_id_dropout_rates_must_be_shares():
    for name in ("user_id_dropout", "item_id_dropout"):
        with pytest.raises(ValueError, match=name):
            dataclasses.replace(CONFIG, **{name: 1.0})


def test_id_embedding_on_an_empty_vocabulary_hashes_every_id(tmp_path):
    empty = tmp_path / "brand.txt"
    empty.write_text("")
    embedding = IdEmbedding(str(empty), oov_buckets=3, dim=4)
    ids = embedding.lookup(tf.constant(["", "kelta", "other", "kelta"])).numpy()
    assert ids[0] == 0 and 1 <= ids[1] <= 3 and 1 <= ids[2] <= 3 and ids[1] == ids[3]
    assert embedding(tf.constant([["kelta", ""]])).shape == (1, 2, 4)


# The exported user tower: the SavedModel precompute and serving load.

LOAD_IN_FRESH_PROCESS = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf  # no ppm_tf: the SavedModel must stand on its own

    export_dir, inputs_path, outputs_path = sys.argv[1:]
    inputs = np.load(inputs_path)
    module = tf.saved_model.load(export_dir)
    serving = module.signatures["serving_default"](
        hist_item_ids=tf.constant(inputs["hist_item_ids"]),
        hist_ts=tf.constant(inputs["hist_ts"]), hist_actions=tf.constant(inputs["hist_actions"]),
        ts=tf.constant(inputs["ts"]))
    direct = module.user_states(tf.constant(inputs["hist_item_ids"]),
                                tf.constant(inputs["hist_ts"]),
                                tf.constant(inputs["hist_actions"]), tf.constant(inputs["ts"]))
    np.savez(outputs_path, states=serving["ppm_user_states"].numpy(),
             mask=serving["ppm_user_mask"].numpy(),
             direct_states=direct["ppm_user_states"].numpy())
""")


@pytest.mark.slow  # a fresh Python process imports TensorFlow and loads the SavedModel
def test_exported_user_tower_gives_the_same_states_in_a_fresh_process(tmp_path, ppm):
    batch = make_batch()
    ppm(batch)
    expected = ppm.user_states(batch)
    export_dir = str(tmp_path / "ppm_user_tower")
    export_user_tower(ppm, MAX_SEQ_LEN, export_dir)
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]  # atomic
    inputs = {name: batch[name].numpy() for name in features.USER_STATE_INPUTS}
    inputs[features.HIST_ITEM_IDS] = inputs[features.HIST_ITEM_IDS].astype(np.bytes_)
    np.savez(tmp_path / "inputs.npz", **inputs)
    outputs_path = tmp_path / "outputs.npz"
    completed = subprocess.run(
        [sys.executable, "-c", LOAD_IN_FRESH_PROCESS, export_dir, str(tmp_path / "inputs.npz"),
         str(outputs_path)], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    loaded = np.load(outputs_path)
    np.testing.assert_allclose(loaded["states"], expected[features.PPM_USER_STATES].numpy(),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(loaded["direct_states"], loaded["states"])
    np.testing.assert_array_equal(loaded["mask"], expected[features.PPM_USER_MASK].numpy())


@pytest.mark.parametrize("scale", [0.0, 0.1])
def test_the_pretrained_head_fine_tunes_at_its_own_learning_rate(vocabularies, scale):
    config = dataclasses.replace(CONFIG, head_learning_rate_scale=scale, learning_rate=1e-2)
    urm = UnifiedModel(vocabularies, 2, config, PRIORS)
    batch = make_batch()
    urm(batch)
    pace_pretrained_head(urm, config)
    urm.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    before = {id(variable): variable.numpy() for variable in urm.variables}
    urm.fit(tf.data.Dataset.from_tensors(batch), verbose=0)

    def largest_step(module):
        return max(np.abs(variable.numpy() - before[id(variable)]).max()
                   for variable in module.variables if id(variable) in before)

    # Adam's first step moves each weight by about its learning rate.
    assert largest_step(urm.backbone) == pytest.approx(config.learning_rate, rel=0.05)
    assert largest_step(urm.head) <= scale * config.learning_rate * 1.05
    if scale:
        assert largest_step(urm.head) == pytest.approx(scale * config.learning_rate, rel=0.05)
