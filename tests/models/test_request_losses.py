"""In-request ranking losses: values by hand, pairs only inside one request, zero without a
positive/negative pair, and their place in the click task's loss (global-batch average)."""
import dataclasses
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.models.config import preset
from ppm_tf.models.request_losses import listwise_loss, pairwise_loss, ranking_loss
from ppm_tf.models.tasks import ClickOrderTask

REPO = Path(__file__).resolve().parents[2]
# Request a: one positive (2.0) and two negatives (1.0, -1.0); b: two positives, one negative;
# c: a lone positive; d: a lone negative.
LABELS = [1, 0, 0, 1, 1, 0, 1, 0]
LOGITS = [2.0, 1.0, -1.0, 0.5, -0.5, 0.0, 3.0, -2.0]
REQUESTS = [b"a", b"a", b"a", b"b", b"b", b"b", b"c", b"d"]


def softplus(value: float) -> float:
    return math.log1p(math.exp(value))


def losses(loss, labels=LABELS, logits=LOGITS, requests=REQUESTS) -> np.ndarray:
    return loss(tf.constant(labels, tf.float32), tf.constant(logits), tf.constant(requests)).numpy()


def test_pairwise_is_the_mean_logistic_loss_of_each_positives_pairs():
    expected = [(softplus(1.0 - 2.0) + softplus(-1.0 - 2.0)) / 2, 0.0, 0.0,
                softplus(0.0 - 0.5), softplus(0.0 + 0.5), 0.0, 0.0, 0.0]
    np.testing.assert_allclose(losses(pairwise_loss), expected, rtol=1e-6)


def test_listwise_is_each_positives_softmax_against_its_requests_negatives():
    expected = [math.log(math.exp(2.0) + math.exp(1.0) + math.exp(-1.0)) - 2.0, 0.0, 0.0,
                math.log(math.exp(0.5) + 1.0) - 0.5, math.log(math.exp(-0.5) + 1.0) + 0.5,
                0.0, 0.0, 0.0]
    np.testing.assert_allclose(losses(listwise_loss), expected, rtol=1e-6)


@pytest.mark.parametrize("loss", [pairwise_loss, listwise_loss])
def test_pairs_never_cross_requests(loss):
    # c's positive and d's negative would make a pair if requests were ignored.
    alone = losses(loss, [1.0, 0.0], [0.0, 5.0], [b"c", b"d"])
    np.testing.assert_array_equal(alone, [0.0, 0.0])
    # Request a's loss does not move with other requests' logits.
    moved = list(LOGITS)
    moved[3:] = [value + 7.0 for value in moved[3:]]
    np.testing.assert_allclose(losses(loss)[:3], losses(loss, logits=moved)[:3], rtol=1e-6)
    logits = tf.Variable(LOGITS)
    with tf.GradientTape() as tape:
        labels = tf.constant(LABELS, tf.float32)
        request_a = tf.reduce_sum(loss(labels, logits, tf.constant(REQUESTS))[:3])
    gradient = tape.gradient(request_a, logits).numpy()
    assert np.all(gradient[:3] != 0.0) and np.all(gradient[3:] == 0.0)


@pytest.mark.parametrize("loss", [pairwise_loss, listwise_loss])
@pytest.mark.parametrize("labels, requests", [
    ([1.0, 1.0, 0.0, 0.0], [b"a", b"a", b"b", b"b"]),  # each request all one label
    ([1.0, 0.0, 1.0, 0.0], [b"a", b"b", b"c", b"d"]),  # one impression per request
    ([0.0, 0.0, 0.0, 0.0], [b"a", b"a", b"a", b"a"]),  # no positive
])
def test_zero_with_finite_zero_gradients_without_a_positive_negative_pair(loss, labels,
                                                                           requests):
    logits = tf.Variable([0.3, -1.2, 2.0, 0.1])
    with tf.GradientTape() as tape:
        values = loss(tf.constant(labels), logits, tf.constant(requests))
        total = tf.reduce_sum(values)
    np.testing.assert_array_equal(values.numpy(), np.zeros(4))
    np.testing.assert_array_equal(tape.gradient(total, logits).numpy(), np.zeros(4))


def test_an_unknown_kind_is_refused_and_none_is_zero():
    with pytest.raises(ValueError, match="ranking_loss must be one of"):
        losses(lambda *args: ranking_loss("softmax", *args))
    np.testing.assert_array_equal(losses(lambda *args: ranking_loss("none", *args)),
                                  np.zeros(len(LABELS)))


@pytest.mark.parametrize("field, value, message", [
    ("ranking_loss", "lambdarank", "ranking_loss must be one of"),
    ("ranking_loss_weight", -0.5, "ranking_loss_weight must be at least 0"),
])
def test_the_config_refuses_a_bad_ranking_option(field, value, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(preset("tiny"), **{field: value})


def task_inputs():
    batch = {features.CLICK: tf.constant(LABELS, tf.int64),
             features.ORDER: tf.constant([1, 0, 0, 0, 1, 0, 0, 0], tf.int64),
             features.REQUEST_ID: tf.constant(REQUESTS)}
    logits = {"click": tf.constant(LOGITS), "order": tf.constant(LOGITS[::-1])}
    return batch, logits


@pytest.mark.parametrize("kind, loss", [("pairwise", pairwise_loss),
                                        ("listwise", listwise_loss)])
def test_the_click_task_adds_the_weighted_ranking_loss_averaged_over_the_batch(kind, loss):
    batch, logits = task_inputs()
    pointwise = ClickOrderTask(0.5)(batch, logits).numpy()
    combined = ClickOrderTask(0.5, kind, 0.3)(batch, logits).numpy()
    np.testing.assert_allclose(combined - pointwise, 0.3 * losses(loss).mean(), rtol=1e-5)


MIRRORED_CHECK = """
import json, sys
import ppm_tf
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from ppm_tf.models.tasks import ClickOrderTask
batch = json.loads(sys.argv[1])
batch = {"click": tf.constant(batch["click"], tf.int64), "order": tf.constant(batch["order"],
         tf.int64), "request_id": tf.constant(batch["request_id"]), "logits": tf.constant(
         batch["logits"])}
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    task = ClickOrderTask(1.0, "listwise", 0.7)
data = strategy.experimental_distribute_dataset(
    tf.data.Dataset.from_tensor_slices(batch).batch(len(batch["click"])))
per_replica = strategy.run(lambda part: task(part, {"click": part["logits"],
                                                    "order": part["logits"]}),
                           args=(next(iter(data)),))
print(json.dumps({"replicas": strategy.num_replicas_in_sync,
                  "loss": float(strategy.reduce("SUM", per_replica, axis=None))}))
"""


@pytest.mark.slow  # a fresh process, for two logical CPU devices
def test_under_two_replicas_the_summed_loss_is_the_one_device_loss():
    """Each replica's loss is its share of the global batch's mean, as for the BCE alone;
    the halves split between requests here, so no pair is lost to the split."""
    batch, _ = task_inputs()
    order = [0, 1, 2, 6, 3, 4, 5, 7]  # replica 0 gets requests a and c, replica 1 b and d
    columns = {"click": LABELS, "order": batch[features.ORDER].numpy().tolist(),
               "request_id": [request.decode() for request in REQUESTS], "logits": LOGITS}
    labels = {key: [values[index] for index in order] for key, values in columns.items()}
    result = subprocess.run([sys.executable, "-c", MIRRORED_CHECK, json.dumps(labels)],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    reported = json.loads(result.stdout.strip().splitlines()[-1])
    one_device = ClickOrderTask(1.0, "listwise", 0.7)(
        {features.CLICK: tf.constant(labels["click"], tf.int64),
         features.ORDER: tf.constant(labels["order"], tf.int64),
         features.REQUEST_ID: tf.constant(labels["request_id"])},
        {"click": tf.constant(labels["logits"]), "order": tf.constant(labels["logits"])})
    assert reported["replicas"] == 2
    np.testing.assert_allclose(reported["loss"], one_device.numpy(), rtol=1e-5)
