"""The rows added to the registry for claims (the ``ppm_zero_shot`` head and the ``lr`` floor)
train and evaluate in ``ppm demo --preset tiny``, with intervals and paired differences."""
import json

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf.evaluation import EVAL_SLICES, SLICE_METRICS
from ppm_tf.evaluation.evaluate import load_predictions
from ppm_tf.training.registry import MODELS
from ppm_tf.work_layout import WorkLayout


@pytest.mark.slow
def test_every_registry_row_is_evaluated_with_intervals_and_a_paired_difference(tiny_demo_run):
    out, stdout = tiny_demo_run
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == set(MODELS) >= {"ppm_zero_shot", "lr"}
    for name, model in metrics["models"].items():
        assert 0.0 < model["overall"]["click_auc"] < 1.0
        for piece in EVAL_SLICES:
            assert set(model["intervals"][piece]) == set(SLICE_METRICS)
        low, high = model["intervals"]["overall"]["click_auc"]
        assert low < model["overall"]["click_auc"] < high, name
        if name != "base":
            assert model["vs_base"]["overall"]["click_auc"]["interval"] is not None
    for name in ("ppm_zero_shot", "lr"):
        assert f"[train {name}] done in" in stdout
        assert f"\n{name} " in stdout  # a row of the printed table


@pytest.mark.slow
def test_the_zero_shot_row_is_the_pretrained_head_untouched(tiny_demo_run):
    out, _ = tiny_demo_run
    layout = WorkLayout(str(out / "work"))
    summary = json.loads(open(layout.training_summary("ppm_zero_shot")).read())
    assert summary["epochs"] == 0 and summary["train_seconds"] == 0.0
    pretrained = tf.train.load_checkpoint(layout.head_checkpoint)
    zero_shot = tf.train.load_checkpoint(layout.weights("ppm_zero_shot"))
    fine_tuned = tf.train.load_checkpoint(layout.weights("ppm"))
    head_variables = [name for name, _ in tf.train.list_variables(layout.head_checkpoint)
                      if name.startswith("head/")]
    assert len(head_variables) > 5
    changed = 0
    for name in head_variables:
        np.testing.assert_array_equal(zero_shot.get_tensor(f"model/{name}"),
                                      pretrained.get_tensor(name))
        changed += not np.array_equal(fine_tuned.get_tensor(f"model/{name}"),
                                      pretrained.get_tensor(name))
    assert changed > 0  # the fine-tuned row did move away from it
    scores = {name: load_predictions(str(out / "work"), name)["click_prob"]
              for name in ("ppm", "ppm_zero_shot")}
    assert not np.allclose(scores["ppm"], scores["ppm_zero_shot"])


@pytest.mark.slow
def test_the_floor_trains_with_the_fit_loop_and_early_stopping(tiny_demo_run):
    out, _ = tiny_demo_run
    layout = WorkLayout(str(out / "work"))
    summary = json.loads(open(layout.training_summary("lr")).read())
    assert summary["epochs"] >= 1 and summary["train_examples"] > 0
    assert len(summary["validation_click_auc"]) == summary["epochs"]
    assert 1 <= summary["best_epoch"] <= summary["epochs"]
    base = json.loads(open(layout.training_summary("base")).read())
    assert summary["trainable_params"] < base["trainable_params"]
