"""The paper's table: ranking metrics on hand-made cases, and ``ppm evaluate`` + the report on
a work dir written here (predictions, training summaries, oracle probabilities)."""
import itertools
import json
import math
import os
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)

from ppm_tf import features
from ppm_tf import metrics
from ppm_tf.demo import report as demo_report
from ppm_tf.evaluation import SLICE_METRICS, report
from ppm_tf.evaluation.evaluate import (AGE_BUCKETS, HISTORY_BUCKETS, evaluate, slice_masks,
                                        slice_metrics, with_request_groups,
                                        write_metrics_json)
from ppm_tf.training.ablations import PREDICTION_KEYS
from ppm_tf.training.registry import MODELS
from ppm_tf.work_layout import WorkLayout

METRIC_KEYS = ("click_auc", "order_auc", "click_gauc", "click_request_gauc", "logloss")
SLICES = ("overall", "cold", "warm", "cold_in_window", "cold_unseen")


# Metrics on hand-made cases.

def brute_force_auc(labels, scores) -> float:
    pairs = [(p, n) for p, n in itertools.product(np.flatnonzero(labels == 1),
                                                  np.flatnonzero(labels == 0))]
    wins = sum(1.0 if scores[p] > scores[n] else 0.5 if scores[p] == scores[n] else 0.0
               for p, n in pairs)
    return wins / len(pairs)


def test_roc_auc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = np.round(rng.random(60), 1)  # many ties
    assert metrics.roc_auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))


def test_roc_auc_edge_cases():
    assert metrics.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.3, 0.4]) == 1.0
    assert metrics.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.3, 0.4]) == 0.0
    assert metrics.roc_auc([0, 1, 0, 1], [0.5] * 4) == 0.5
    assert math.isnan(metrics.roc_auc([1, 1], [0.1, 0.9]))
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.roc_auc([0, 1], [0.5])


def test_grouped_auc_weights_users_by_impressions_and_skips_one_class_users():
    groups = np.array(["a", "b", "a", "c", "b", "a", "c", "d"])
    labels = np.array([1, 0, 0, 0, 1, 0, 0, 1])
    scores = np.array([0.9, 0.8, 0.1, 0.3, 0.2, 0.5, 0.7, 0.4])
    # a: [1, 0, 0] ranked perfectly -> 1.0 over 3 impressions; b: [0, 1] reversed -> 0.0 over
    # 2; c has no click and d no non-click: both left out.
    assert metrics.grouped_auc(groups, labels, scores) == pytest.approx(3 / 5)
    # A pooled AUC is not what GAUC measures.
    assert metrics.roc_auc(labels, scores) != pytest.approx(3 / 5)
    assert math.isnan(metrics.grouped_auc(["a", "b"], [1, 0], [0.3, 0.4]))


def test_log_loss_and_its_clipping():
    assert metrics.log_loss([1, 0], [0.8, 0.4]) == pytest.approx(-(math.log(0.8)
                                                                   + math.log(0.6)) / 2)
    assert metrics.log_loss([1, 0], [1.0, 0.0]) == pytest.approx(-math.log(1 - 1e-7))
    assert math.isfinite(metrics.log_loss([0, 1], [1.0, 0.0]))


def test_calibration_is_predicted_over_observed_click_rate():
    assert metrics.calibration([1, 0, 0, 0], [0.5, 0.5, 0.25, 0.25]) == pytest.approx(1.5)
    assert metrics.calibration([1, 0], [0.5, 0.5]) == pytest.approx(1.0)
    assert math.isnan(metrics.calibration([0, 0], [0.1, 0.2]))


def ranked_requests(scores) -> dict[str, np.ndarray]:
    """User a's two requests (the first ranks its click last, the second first) and user b's
    one, whose request id repeats one of a's."""
    return with_request_groups({
            features.USER_ID: np.array(["a"] * 6 + ["b"] * 2),
            features.REQUEST_ID: np.array(["r1"] * 3 + ["r2"] * 3 + ["r1"] * 2),
            features.CLICK: np.array([1, 0, 0, 1, 1, 0, 0, 1]),
            features.ORDER: np.array([1, 0, 0, 0, 1, 0, 0, 1]),
            "click_prob": np.asarray(scores, float), "order_prob": np.asarray(scores, float)})


def test_per_request_gauc_ranks_each_requests_candidates():
    ranked = slice_metrics(ranked_requests([0.1, 0.2, 0.3, 0.8, 0.9, 0.7, 0.4, 0.6]))
    # Requests: a's r1 AUC 0 (3 impressions), a's r2 AUC 1 (3), b's r1 AUC 1 (2): one group per
    # (user, request), so b's "r1" is not a's.
    assert ranked["click_request_gauc"] == pytest.approx((0 * 3 + 1 * 3 + 1 * 2) / 8)
    # Per user: a's six impressions pooled (6 of 9 pairs right), b's two (1 of 1).
    assert ranked["click_gauc"] == pytest.approx((6 / 9 * 6 + 1 * 2) / 8)
    assert ranked["users"] == 2 and ranked["examples"] == 8


def test_a_history_length_scorer_ranks_nothing_per_request_but_scores_per_user():
    # Scores = the user's history length at the request: the same for one request's candidates.
    # a clicks more in its later request (longer history), which per-user GAUC rewards.
    history_only = slice_metrics(ranked_requests([1, 1, 1, 5, 5, 5, 2, 2]))
    assert history_only["click_request_gauc"] == pytest.approx(0.5)
    assert history_only["click_gauc"] == pytest.approx((6 / 9 * 6 + 0.5 * 2) / 8)


def test_cold_items_split_by_whether_the_recent_window_showed_them():
    rows = {features.IS_COLD_ITEM: np.array([1, 1, 0, 1, 0]),
            features.ITEM_ID: np.array(["new", "unseen", "old", "new", "old"])}
    masks = slice_masks(rows, np.array(["new", "old"]))
    assert masks["cold_in_window"].tolist() == [True, False, False, True, False]
    assert masks["cold_unseen"].tolist() == [False, True, False, False, False]
    assert masks["warm"].tolist() == [False, False, True, False, True]
    assert masks["overall"].all()


# ``evaluate`` and the report on a hand-written work dir.

ROWS = 240
NOISE = {"base": 0.25, "qm_ep": 0.2, "ppm": 0.22, "ppm_zero_shot": 0.3, "urm": 0.1,
         "base_long": 0.15, "lr": 0.35, "counts": 0.3}


def eval_rows(seed: int = 0) -> dict[str, np.ndarray]:
    """Eval impressions with their true probabilities: 60 requests of 4 items, 12 users."""
    rng = np.random.default_rng(seed)
    p_click = rng.uniform(0.05, 0.95, ROWS)
    click = (rng.random(ROWS) < p_click).astype(np.int64)
    p_order = p_click * 0.4
    order = (click * (rng.random(ROWS) < 0.4)).astype(np.int64)
    order[:2], click[:2] = 1, 1  # every slice has both classes of both labels
    order[2:4], click[2:4] = 1, 1
    return {
        features.REQUEST_ID: np.array([f"r{index // 4:03d}" for index in range(ROWS)]),
        features.USER_ID: np.array([f"u{(index // 4) % 12}" for index in range(ROWS)]),
        features.ITEM_ID: np.array([f"i{index % 4 + 4 * (index // 8)}" for index in range(ROWS)]),
        features.CLICK: click, features.ORDER: order,
        features.IS_COLD_ITEM: (np.arange(ROWS) % 2 == 0).astype(np.int64),
        features.ITEM_AGE_DAYS: (np.arange(ROWS) % 120).astype(np.float32),
        features.HIST_LEN: (np.arange(ROWS) % 15).astype(np.int64),
        "p_click": p_click, "p_order": p_order,
    }


def model_probabilities(rows, name: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(sorted(NOISE).index(name) + 1)
    click = np.clip(rows["p_click"] + rng.normal(0, NOISE[name], ROWS), 0.01, 0.99)
    order = np.clip(rows["p_order"] + rng.normal(0, NOISE[name], ROWS), 0.01, 0.99)
    return click, order


def write_predictions(work: str, name: str, rows, order=None) -> None:
    """WORK/predictions/<name>.npz with the keys ``ablations.write_predictions`` writes."""
    click_prob, order_prob = model_probabilities(rows, name)
    arrays = {key: rows[key] for key in PREDICTION_KEYS}
    arrays.update(click_prob=click_prob, order_prob=order_prob)
    if order is not None:  # models may score the eval rows in another order
        arrays = {key: values[order] for key, values in arrays.items()}
    path = WorkLayout(work).predictions(name)
    np.savez(path, **arrays)


TRAINING = {"base": (30.0, 5000, 1000), "qm_ep": (33.0, 5400, 1000), "ppm": (20.0, 3300, 1000),
            "ppm_zero_shot": (0.0, 3300, 0), "urm": (35.0, 8300, 1000),
            "base_long": (120.0, 5000, 4000), "lr": (10.0, 900, 1000), "counts": (0.0, 0, 0)}


def window_item(item_id: str) -> bool:
    """Items the hand-made recent window shows: every third."""
    return int(item_id[1:]) % 3 == 0


def write_recent_window(work: str, rows) -> None:
    """WORK/examples/{train,valid}: one impression of each window item (the evaluation reads
    their item ids), and preprocess.json."""
    layout = WorkLayout(work)
    items = sorted({item for item in rows[features.ITEM_ID] if window_item(item)})
    blank = {feature.name: {features.SCALAR: feature.default,
                            features.COUNTS: [0.0] * features.COUNT_SIZE}.get(feature.shape, [])
             for feature in features.EXAMPLE_FEATURES}
    for split, part in (("train", items[::2]), ("valid", items[1::2])):
        path = layout.examples_prefix(split) + "-00000-of-00001.tfrecord.gz"
        os.makedirs(os.path.dirname(path))
        with tf.io.TFRecordWriter(path, "GZIP") as writer:
            for item in part:
                writer.write(features.encode_example({**blank, features.ITEM_ID: item},
                                                     features.EXAMPLE_FEATURES, 3))
    with open(layout.preprocess_json, "w") as handle:
        json.dump({"max_seq_len": 3, "oov_buckets": 2}, handle)


@pytest.fixture
def work(tmp_path):
    work = str(tmp_path)
    layout = WorkLayout(work)
    rows = eval_rows()
    write_recent_window(work, rows)
    (tmp_path / "predictions").mkdir()
    permutation = np.random.default_rng(9).permutation(ROWS)
    for name in MODELS:
        write_predictions(work, name, rows, order=permutation if name == "urm" else None)
        seconds, params, examples = TRAINING[name]
        model_dir = tmp_path / "models" / name
        model_dir.mkdir(parents=True)
        (model_dir / "training.json").write_text(json.dumps({
            "model": name, "train_seconds": seconds, "trainable_params": params,
            "train_examples": examples,
            "examples_per_second": examples / seconds if seconds else 0.0}))
    pretrained = tmp_path / "models" / "ppm_pretrained"
    pretrained.mkdir()
    (pretrained / "training.json").write_text(json.dumps({
        "trainable_params": 12000, "user_tower_params": 8700, "head_params": 3300,
        "train_seconds": 300.0}))
    (tmp_path / "oracle").mkdir()
    with open(layout.oracle_eval_prefix + "-00000-of-00001.jsonl", "w") as handle:
        for index in np.random.default_rng(3).permutation(ROWS):
            handle.write(json.dumps({
                "request_id": str(rows[features.REQUEST_ID][index]),
                "item_id": str(rows[features.ITEM_ID][index]),
                "p_click": float(rows["p_click"][index]),
                "p_order": float(rows["p_order"][index])}) + "\n")
    return work, rows


def test_metrics_json_has_every_key_of_the_issue(work):
    work, _ = work
    evaluate(work)
    with open(WorkLayout(work).eval_dir + "/metrics.json") as handle:
        written = json.load(handle)
    assert set(written["models"]) == set(MODELS)
    assert written["bootstrap"] == {"unit": "user", "resamples": 500, "seed": 0, "level": 0.95,
                                    "users": 12}
    for name, model in written["models"].items():
        for slice_name in SLICES:
            assert {"examples", "users", *SLICE_METRICS} == set(model[slice_name])
            assert set(SLICE_METRICS) == set(model["intervals"][slice_name])
        for slice_name in ("overall", "cold", "warm"):
            assert all(math.isfinite(model[slice_name][key]) for key in METRIC_KEYS)
            assert 0.0 < model[slice_name]["calibration"] < 2.0
            for metric in SLICE_METRICS:
                low, high = model["intervals"][slice_name][metric]
                assert low < high, (name, slice_name, metric)
            if name != "base":
                difference = model["vs_base"][slice_name]["click_auc"]
                assert difference["difference"] == pytest.approx(
                    model[slice_name]["click_auc"]
                    - written["models"]["base"][slice_name]["click_auc"])
                assert difference["interval"][0] < difference["interval"][1]
        assert model["cold_in_window"]["examples"] + model["cold_unseen"]["examples"] == \
            model["cold"]["examples"]
        assert model["train_seconds"] == TRAINING[name][0]
        assert model["trainable_params"] == TRAINING[name][1]
        assert set(model["gap_to_oracle"]) == set(SLICES)
        assert len(model["click_auc_by_item_age"]) == len(AGE_BUCKETS)
        assert set(model["click_auc_by_history_length"]) == {"0", "1-2", "3-5", "6-10", "11+"}
    assert len(HISTORY_BUCKETS) == 5
    assert written["eval_share_by_history_length"] == pytest.approx(
        {"0": 16 / 240, "1-2": 32 / 240, "3-5": 48 / 240, "6-10": 80 / 240, "11+": 64 / 240})
    for slice_name in SLICES:
        assert set(METRIC_KEYS) <= set(written["oracle"][slice_name])
    assert set(written["iteration_efficiency"]) == {"urm", "base_long"}
    assert written["iteration_efficiency"]["base_long"] == {
        "click_auc": written["models"]["base_long"]["overall"]["click_auc"],
        "train_seconds": 120.0, "train_examples": 4000}
    assert written["ppm_full"]["user_tower_params"] == 8700


def test_metrics_json_is_strict_json_with_null_for_undefined_metrics(tmp_path):
    path = tmp_path / "metrics.json"
    with open(path, "w") as handle:
        write_metrics_json({"auc": float("nan"), "by_age": {"0-1d": np.float32(0.5)},
                            "rows": [np.int64(3), np.float64("nan")]}, handle)
    text = path.read_text()
    assert "NaN" not in text
    assert json.loads(text, parse_constant=lambda name: pytest.fail(f"not JSON: {name}")) == {
        "auc": None, "by_age": {"0-1d": 0.5}, "rows": [3, None]}


def test_the_report_draws_metrics_that_are_null_in_metrics_json(work, tmp_path):
    work, _ = work
    results = json.loads(json.dumps(evaluate(work)))
    results["models"]["base"]["click_auc_by_item_age"]["0-1d"] = None
    results["models"]["urm"]["cold"]["click_auc"] = None
    report.write_report(results, str(tmp_path))
    assert "| urm | " in (tmp_path / "report.md").read_text()
    assert (tmp_path / report.AGE_PLOT).stat().st_size > 0


def test_metrics_are_computed_on_the_right_rows_and_slices(work):
    work, rows = work
    results = evaluate(work)
    cold = rows[features.IS_COLD_ITEM].astype(bool)
    click, order = rows[features.CLICK], rows[features.ORDER]
    for name in ("base", "urm"):  # urm's predictions were written in another row order
        click_prob, order_prob = model_probabilities(rows, name)
        model = results["models"][name]
        assert model["overall"]["examples"] == ROWS
        assert model["cold"]["examples"] == cold.sum()
        assert model["overall"]["click_auc"] == pytest.approx(metrics.roc_auc(click, click_prob))
        assert model["overall"]["order_auc"] == pytest.approx(metrics.roc_auc(order, order_prob))
        assert model["cold"]["click_auc"] == pytest.approx(
            metrics.roc_auc(click[cold], click_prob[cold]))
        in_window = cold & np.array([window_item(item) for item in rows[features.ITEM_ID]])
        assert model["cold_in_window"]["click_auc"] == pytest.approx(
            metrics.roc_auc(click[in_window], click_prob[in_window]))
        unseen = cold & ~in_window
        assert model["cold_unseen"]["order_auc"] == pytest.approx(
            metrics.roc_auc(order[unseen], order_prob[unseen]))
        assert model["warm"]["logloss"] == pytest.approx(
            metrics.log_loss(click[~cold], click_prob[~cold]))
        assert model["overall"]["click_gauc"] == pytest.approx(
            metrics.grouped_auc(rows[features.USER_ID], click, click_prob))
        young = rows[features.ITEM_AGE_DAYS] < 1
        assert model["click_auc_by_item_age"]["0-1d"] == pytest.approx(
            metrics.roc_auc(click[young], click_prob[young]), nan_ok=True)
        short = (rows[features.HIST_LEN] >= 1) & (rows[features.HIST_LEN] < 3)
        assert model["click_auc_by_history_length"]["1-2"] == pytest.approx(
            metrics.roc_auc(click[short], click_prob[short]))
    oracle = results["oracle"]
    assert oracle["overall"]["click_auc"] == pytest.approx(
        metrics.roc_auc(click, rows["p_click"]))
    assert oracle["warm"]["order_auc"] == pytest.approx(
        metrics.roc_auc(order[~cold], rows["p_order"][~cold]))
    for name, model in results["models"].items():
        for slice_name in SLICES:
            assert model["gap_to_oracle"][slice_name] == pytest.approx(
                oracle[slice_name]["click_auc"] - model[slice_name]["click_auc"])
    # The noisier the model, the larger its gap.
    assert (results["models"]["urm"]["gap_to_oracle"]["overall"]
            < results["models"]["base"]["gap_to_oracle"]["overall"])


def test_report_and_its_plots_are_written(work):
    work, _ = work
    results = evaluate(work)
    eval_dir = WorkLayout(work).eval_dir
    path = report.write_report(results, eval_dir)
    assert path == eval_dir + "/report.md"
    with open(path) as handle:
        text = handle.read()
    for name in (*MODELS, "oracle"):
        assert f"| {name} |" in text
    assert "| model − base | overall | warm | cold | cold, new in window |" in text
    assert "| urm | 0.7" in text and "[0.7" in text  # values with their intervals
    assert "## Iteration efficiency" in text
    assert "## Click AUC by history length" in text and "| share of eval | 6.7% |" in text
    # Buckets in numeric order, also from metrics.json, whose keys are sorted as text.
    assert "| model | 0 clicks | 1-2 clicks | 3-5 clicks | 6-10 clicks | 11+ clicks |" in text
    assert "8,700 in the cached user tower" in text
    for plot in (report.AGE_PLOT, report.SLICE_PLOT, report.DIFFERENCE_PLOT):
        assert f"]({plot})" in text
        with Image.open(f"{eval_dir}/{plot}") as image:
            assert image.format == "PNG"
            assert image.size[0] > 300 and image.size[1] > 200
    # The report can be rebuilt from metrics.json alone (whose keys are sorted, so the
    # table's rows may come in another order).
    with open(eval_dir + "/metrics.json") as handle:
        rebuilt = report.markdown_report(json.load(handle))
    assert sorted(rebuilt.splitlines()) == sorted(text.splitlines())


def test_the_slice_plot_draws_every_interval_on_an_axis_fitted_to_them(work):
    work, _ = work
    results = json.loads(json.dumps(evaluate(work, resamples=100)))
    # A row far below 0.5 (a model worse than chance on cold items) stays in view.
    results["models"]["lr"]["cold"]["click_auc"] = 0.31
    results["models"]["lr"]["intervals"]["cold"]["click_auc"] = [0.27, 0.35]
    axes = report.slice_figure(results).axes[0]
    bars = [container for container in axes.containers
            if type(container).__name__ == "ErrorbarContainer"]
    assert len(bars) == len(MODELS) + 1  # every model and the oracle
    lowest, highest = axes.get_ylim()
    every_interval = [model["intervals"][piece]["click_auc"] for model in
                      [*results["models"].values(), results["oracle"]]
                      for piece in SLICES if model["intervals"][piece]["click_auc"]]
    low_end = min(low for low, _ in every_interval)
    high_end = max(high for _, high in every_interval)
    assert low_end <= 0.27 and low_end - 0.1 < lowest < low_end  # fitted, not from 0 or 0.5
    assert high_end < highest < high_end + 0.1
    # Each marker's error bar spans its interval.
    lr_bar = bars[list(results["models"]).index("lr")]
    segments = lr_bar.lines[2][0].get_segments()
    assert [0.27, 0.35] in [[round(segment[0][1], 6), round(segment[1][1], 6)]
                            for segment in segments]


def test_the_difference_plot_draws_zero_and_each_paired_interval(work):
    work, _ = work
    results = evaluate(work, resamples=100)
    axes = report.difference_figure(results).axes[0]
    bars = [container for container in axes.containers
            if type(container).__name__ == "ErrorbarContainer"]
    assert len(bars) == len(MODELS)  # every model but base, and the oracle
    assert any(list(line.get_ydata()) == [0.0, 0.0] for line in axes.lines)
    lowest, highest = axes.get_ylim()
    assert lowest < 0.0 < highest


def test_the_demo_html_report_shows_each_table_once_with_intervals_and_every_plot(work):
    work, _ = work
    results = evaluate(work, resamples=100)
    eval_dir = WorkLayout(work).eval_dir
    report.write_report(results, eval_dir)
    summary = {**results, "preset": "tiny", "seed": 0, "wall_clock_seconds": 90.0,
               "stages": [{"stage": "evaluate", "seconds": 2.5, "count": 1000,
                           "unit": "predictions", "per_second": 400.0}],
               "serving": {"latency_ms": {"urm rest": {"p50": 1.5, "p99": 3.0}}}}
    page = open(demo_report.write_html_report(summary, eval_dir,
                                              os.path.join(work, "report.html"))).read()
    assert page.count("<h3>Click AUC by slice</h3>") == 1
    assert page.count("<th>model</th><th>overall</th>") == 1  # the results table, once
    assert "Click AUC on the eval days" not in page  # the printed table stays in the terminal
    assert page.count("data:image/png;base64,") == 4  # three plots and the stage times
    assert "<h3>Difference to base</h3>" in page and "<td>urm</td>" in page
    assert re.search(r"<td>0\.\d{4} <span class='interval'>\[0\.\d{4}, 0\.\d{4}\]</span></td>",
                     page)
    assert "urm rest" in page and "evaluate" in page
    printed = "\n".join(demo_report.results_lines(summary))
    assert re.search(r"urm +0\.\d{4} ±0\.\d{4}", printed)


def test_evaluate_scores_whichever_models_were_trained(work, tmp_path):
    work, _ = work
    for name in ("qm_ep", "ppm", "ppm_zero_shot", "base_long", "lr", "counts"):
        (tmp_path / "predictions" / f"{name}.npz").unlink()
    (tmp_path / "oracle" / "eval-00000-of-00001.jsonl").unlink()
    results = evaluate(work)
    assert set(results["models"]) == {"base", "urm"}
    assert "oracle" not in results and "iteration_efficiency" not in results
    assert "gap_to_oracle" not in results["models"]["base"]
    assert "vs_base" in results["models"]["urm"]
    report.write_report(results, WorkLayout(work).eval_dir)


def test_without_base_there_is_no_difference_to_it(work, tmp_path):
    work, _ = work
    (tmp_path / "predictions" / "base.npz").unlink()
    results = evaluate(work, resamples=50)
    assert all("vs_base" not in model for model in results["models"].values())
    text = open(report.write_report(results, WorkLayout(work).eval_dir)).read()
    assert "model − base" not in text and report.DIFFERENCE_PLOT not in text


def test_evaluate_without_predictions_says_to_train_first(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"run `ppm train --work {tmp_path} --model all`"):
        evaluate(str(tmp_path))


def test_predictions_over_other_eval_rows_are_refused(work):
    work, rows = work
    other = {key: values[:-4] for key, values in rows.items()}
    write_predictions_subset(work, "urm", other)
    with pytest.raises(ValueError, match="'urm' cover other eval rows"):
        evaluate(work)


def write_predictions_subset(work: str, name: str, rows) -> None:
    count = rows[features.CLICK].size
    arrays = {key: rows[key] for key in PREDICTION_KEYS}
    arrays.update(click_prob=np.full(count, 0.5), order_prob=np.full(count, 0.2))
    np.savez(WorkLayout(work).predictions(name), **arrays)
