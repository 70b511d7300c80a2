"""The ``lr`` floor: one linear layer per task over ids (one weight each), content tokens and
the behaviour ids as normalised bags, the encoded counts and every numeric feature of the
example."""
import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.fitting import trainable_parameters
from ppm_tf.models.config import preset
from ppm_tf.models.logistic_regression import LogisticRegression, numeric_inputs

VOCABULARIES = {features.USER_ID: ["u0", "u1"], features.ITEM_ID: ["i0", "i1", "i2"],
                features.CATEGORY: ["lamp", "sofa"], features.BRAND: ["kelta"],
                features.CONTENT_VOCABULARY: ["red", "oak"]}
OOV_BUCKETS = 2
PRIORS = {"click_rate": 0.04, "order_rate": 0.01}  # the training data's rates
COUNT_INPUTS = len(features.COUNT_FEATURES) * 3 * len(features.COUNT_WINDOWS)  # encoded


@pytest.fixture
def model(tmp_path) -> LogisticRegression:
    tf.keras.utils.set_random_seed(0)
    paths = {}
    for name, tokens in VOCABULARIES.items():
        paths[name] = str(tmp_path / f"{name}.txt")
        (tmp_path / f"{name}.txt").write_text("\n".join(tokens) + "\n")
    return LogisticRegression(paths, OOV_BUCKETS, preset("tiny"), PRIORS, name="lr")


def batch(history: list[str], **values) -> dict[str, tf.Tensor]:
    padded = history + [""] * (4 - len(history))
    rows = {features.USER_ID: "u0", features.ITEM_ID: "i1", features.CATEGORY: "lamp",
            features.BRAND: "kelta", features.HIST_ITEM_IDS: padded,
            features.HIST_CATEGORIES: ["sofa" if item else "" for item in padded],
            features.ITEM_CONTENT: "red\x1foak",
            features.HIST_CONTENT: ["oak" if item else "" for item in padded],
            features.HIST_ACTIONS: [features.ACTION_CLICKED if item else features.ACTION_PADDING
                                    for item in padded],
            **{name: [0.0] * features.COUNT_SIZE for name in features.COUNT_FEATURES},
            features.HIST_LEN: len(history), features.ITEM_AGE_DAYS: 3.0, features.TS: 0,
            features.CLICK: 1, features.ORDER: 0, features.IS_COLD_ITEM: 0, **values}
    return {name: tf.constant([value]) for name, value in rows.items()}


def test_it_reads_every_numeric_feature_but_labels_time_and_evaluation_flags():
    names = numeric_inputs()
    assert {features.HIST_LEN, features.ITEM_AGE_DAYS} <= set(names)
    assert not {features.CLICK, features.ORDER, features.TS, features.IS_COLD_ITEM} & set(names)
    kinds = {feature.name: feature for feature in features.EXAMPLE_FEATURES}
    assert all(kinds[name].shape == features.SCALAR and kinds[name].dtype != features.STRING
               for name in names)


def test_one_weight_per_id_and_task_and_one_per_numeric_feature_and_task(model):
    model(batch(["i0"]))
    rows = sum(len(tokens) + OOV_BUCKETS + 1 for tokens in VOCABULARIES.values())  # + padding
    behaviour_rows = (len(VOCABULARIES[features.ITEM_ID]) + len(VOCABULARIES[features.CATEGORY])
                      + 2 * (OOV_BUCKETS + 1))
    assert trainable_parameters(model) == 2 * (rows + behaviour_rows + len(numeric_inputs())
                                               + COUNT_INPUTS + 1)


def randomised(model: LogisticRegression) -> LogisticRegression:
    """``model`` with every weight drawn at random, as if trained."""
    model(batch(["i0"]))
    rng = np.random.default_rng(1)
    for variable in model.trainable_variables:
        variable.assign(rng.normal(size=variable.shape).astype(np.float32))
    return model


def test_it_starts_at_the_base_rates_with_every_weight_zero(model):
    first = model.predict_probabilities(batch(["i0"]))
    other = model.predict_probabilities(batch(["i2", "i1"], user_id="u1", item_id="new",
                                              hist_len=9, item_age_days=400.0,
                                              user_counts=[9.0, 4.0, 1.0, 2.0, 1.0, 0.0]))
    for task, rate in zip(("click_prob", "order_prob"), PRIORS.values()):
        np.testing.assert_allclose(first[task].numpy(), [rate], rtol=1e-5)
        np.testing.assert_allclose(other[task].numpy(), [rate], rtol=1e-5)


def test_the_behaviour_ids_are_a_normalised_bag(model):
    model = randomised(model)
    once, twice = model(batch(["i0"])), model(batch(["i0", "i0"], hist_len=2))
    # The same items, more often: the bag's mean is unchanged; only hist_len's weight moves it.
    numeric = model.linear.kernel.numpy()[list(numeric_inputs()).index(features.HIST_LEN)]
    step = numeric * (np.log1p(2.0) - np.log1p(1.0))
    np.testing.assert_allclose(twice["click"] - once["click"], step[0], atol=1e-6)
    np.testing.assert_allclose(twice["order"] - once["order"], step[1], atol=1e-6)


def test_the_logit_is_linear_in_each_id(model):
    model = randomised(model)
    base = model(batch([]))
    other_user = model(batch([], user_id="u1"))
    user_weights = model.ids[features.USER_ID].embedding.embeddings.numpy()
    lookup = model.ids[features.USER_ID].lookup
    u0, u1 = (int(lookup(tf.constant(name))) for name in ("u0", "u1"))
    np.testing.assert_allclose(other_user["click"] - base["click"],
                               user_weights[u1, 0] - user_weights[u0, 0], atol=1e-6)
