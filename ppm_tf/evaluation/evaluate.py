"""``ppm evaluate``: the paper's table from the stored eval-split predictions.

For every trained model (and, on synthetic worlds, the oracle that scores each impression with
its true probability): click AUC, order AUC, click GAUC per user and per request, log loss and
calibration, overall, on cold and warm items, and on cold items split into those already shown
in the recent window and those never shown before the eval days; a 95% interval for each
(bootstrap over users, ``bootstrap.py``) and for each model's paired difference to ``base``;
AUC by item-age bucket and by history length (the clicks the models can read: where they
stand against the oracle); cost (training time, throughput, trainable parameters); and the
iteration-efficiency pair (``urm`` on the recent window vs ``base_long`` on the long span).
Writes WORK/eval/metrics.json (keys in ``ppm_tf.evaluation``); ``report.py`` renders it.
"""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data.tfrecords import read_split
from ppm_tf.evaluation import (BASE, BOOTSTRAP, COLD_IN_WINDOW, COLD_UNSEEN, DIFFERENCE,
                               EVAL_SLICES, INTERVAL, INTERVALS, ORACLE, SLICE_METRICS, VS_BASE)
from ppm_tf.evaluation.bootstrap import (DEFAULT_RESAMPLES, INTERVAL_LEVEL, UserResamples,
                                         auc_replicates, grouped_auc_replicates,
                                         mean_replicates, percentile_interval,
                                         ratio_replicates)
from ppm_tf.metrics import calibration, grouped_auc, log_loss, roc_auc, row_log_losses
from ppm_tf.training.ablations import PREDICTION_KEYS
from ppm_tf.training.registry import MODELS
from ppm_tf.work_layout import PRETRAINED, WorkLayout, read_json_if_present

# Item age at the impression, in days since launch: [lower, upper).
AGE_BUCKETS = ((0, 1), (1, 3), (3, 7), (7, 14), (14, 30), (30, 90), (90, float("inf")))
# Clicks in the user's behaviour sequence at the impression: [lower, upper).
HISTORY_BUCKETS = ((0, 1), (1, 3), (3, 6), (6, 11), (11, float("inf")))
RECENT_WINDOW = ("train", "valid")  # the splits of the recent window, in time order
REQUEST_GROUP = "request_group"  # a column the loader adds: see ``with_request_groups``
Replicates = dict[str, dict[str, np.ndarray]]  # {slice: {metric: [resamples]}}


def load_predictions(work: str, name: str) -> dict[str, np.ndarray] | None:
    path = WorkLayout(work).predictions(name)
    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path, "rb") as handle:
        arrays = dict(np.load(io.BytesIO(handle.read())))
    missing = sorted(set(PREDICTION_KEYS) - set(arrays))
    if missing:
        raise ValueError(f"{path} lacks the columns {missing}: it was written by an older "
                         f"version; retrain with `ppm train --model {name}`")
    # One row order for every model: by (request_id, item_id).
    order = np.lexsort((arrays[features.ITEM_ID], arrays[features.REQUEST_ID]))
    return with_request_groups({key: values[order] for key, values in arrays.items()})


def load_oracle(work: str, reference: dict[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """The true probabilities of the eval rows, aligned with ``reference``'s rows."""
    files = tf.io.gfile.glob(WorkLayout(work).oracle_eval_pattern)
    if not files:
        return None
    truth = {}
    for path in files:
        with tf.io.gfile.GFile(path) as handle:
            for line in handle:
                row = json.loads(line)
                truth[(row["request_id"], row["item_id"])] = (row["p_click"], row["p_order"])
    keys = zip(reference[features.REQUEST_ID].astype(str), reference[features.ITEM_ID].astype(str))
    probabilities = np.array([truth[key] for key in keys])
    return {**reference, "click_prob": probabilities[:, 0], "order_prob": probabilities[:, 1]}


def load_all_predictions(work: str) -> dict[str, dict[str, np.ndarray]]:
    """The predictions of every registry row trained in ``work``, on the same rows."""
    predictions: dict[str, dict[str, np.ndarray]] = {}
    for name in MODELS:
        rows = load_predictions(work, name)
        if rows is None:
            continue
        first = next(iter(predictions.values()), rows)
        if not np.array_equal(rows[features.REQUEST_ID], first[features.REQUEST_ID]):
            raise ValueError(f"predictions of {name!r} cover other eval rows than the first "
                             "model's; retrain it on the current preprocessing")
        predictions[name] = rows
    if not predictions:
        layout = WorkLayout(work)
        raise FileNotFoundError(f"no predictions under {layout.path('predictions')}: run "
                                f"`{layout.command('train', 'all')}` first")
    return predictions


def window_item_ids(work: str, splits: tuple[str, ...] = RECENT_WINDOW) -> np.ndarray:
    """Item ids with an impression in ``splits`` of the recent window (by default the whole
    window: the train and valid splits)."""
    seen = [np.unique(batch[features.ITEM_ID].numpy()) for batch in read_split(
        work, splits, 8192, deterministic=True, features=[features.ITEM_ID])]
    return np.char.decode(np.unique(np.concatenate(seen)).astype(np.bytes_), "utf-8")


def slice_masks(rows: dict[str, np.ndarray], window_items: np.ndarray) -> dict[str, np.ndarray]:
    """The rows of each slice in ``EVAL_SLICES``. Cold items had no impression before the
    recent window; those with one in it are new in the window, the others unseen before the
    eval days."""
    cold = rows[features.IS_COLD_ITEM].astype(bool)
    in_window = np.isin(rows[features.ITEM_ID], window_items)
    return {"overall": np.ones_like(cold), "cold": cold, "warm": ~cold,
            COLD_IN_WINDOW: cold & in_window, COLD_UNSEEN: cold & ~in_window}


def with_request_groups(rows: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``rows`` plus ``REQUEST_GROUP``: one integer key per (user, request), so a request id
    reused by another user is another group (the per-request GAUC's groups)."""
    _, users = np.unique(rows[features.USER_ID], return_inverse=True)
    _, requests = np.unique(rows[features.REQUEST_ID], return_inverse=True)
    keys = users.astype(np.int64) * (requests.max(initial=0) + 1) + requests
    return {**rows, REQUEST_GROUP: keys}


def slice_metrics(rows: dict[str, np.ndarray]) -> dict[str, float]:
    """Every metric of ``SLICE_METRICS`` on ``rows``, with their counts."""
    click, order = rows[features.CLICK], rows[features.ORDER]
    counts = {"examples": int(click.size), "users": int(np.unique(rows[features.USER_ID]).size)}
    if click.size == 0:
        return {**counts, **{name: float("nan") for name in SLICE_METRICS}}
    return {
        **counts,
        "click_auc": roc_auc(click, rows["click_prob"]),
        "order_auc": roc_auc(order, rows["order_prob"]),
        "click_gauc": grouped_auc(rows[features.USER_ID], click, rows["click_prob"]),
        "click_request_gauc": grouped_auc(rows[REQUEST_GROUP], click, rows["click_prob"]),
        "logloss": log_loss(click, rows["click_prob"]),
        "order_logloss": log_loss(order, rows["order_prob"]),
        "calibration": calibration(click, rows["click_prob"]),
    }


def slice_replicates(rows: dict[str, np.ndarray], where: np.ndarray,
                     resamples: UserResamples) -> dict[str, np.ndarray]:
    """Every metric of ``SLICE_METRICS`` on each of ``resamples``: {metric: [resamples]}."""
    click, order = rows[features.CLICK], rows[features.ORDER]
    click_prob, order_prob = rows["click_prob"], rows["order_prob"]
    return {
        "click_auc": auc_replicates(resamples, click, click_prob, where),
        "order_auc": auc_replicates(resamples, order, order_prob, where),
        "click_gauc": grouped_auc_replicates(resamples, resamples.user_index, click,
                                             click_prob, where),
        "click_request_gauc": grouped_auc_replicates(resamples, rows[REQUEST_GROUP], click,
                                                     click_prob, where),
        "logloss": mean_replicates(resamples, row_log_losses(click, click_prob), where),
        "order_logloss": mean_replicates(resamples, row_log_losses(order, order_prob), where),
        "calibration": ratio_replicates(resamples, click_prob, click, where),
    }


def _select(rows: dict[str, np.ndarray], where: np.ndarray) -> dict[str, np.ndarray]:
    return {key: values[where] for key, values in rows.items()}


def model_metrics(rows: dict[str, np.ndarray], masks: dict[str, np.ndarray],
                  resamples: UserResamples) -> tuple[dict[str, Any], Replicates]:
    """One model's metrics per slice with their intervals, and by bucket; and its values on
    every resample per slice (for paired differences)."""
    metrics: dict[str, Any] = {name: slice_metrics(_select(rows, where))
                               for name, where in masks.items()}
    replicates = {name: slice_replicates(rows, where, resamples)
                  for name, where in masks.items()}
    metrics[INTERVALS] = {
        name: {metric: percentile_interval(values) for metric, values in by_metric.items()}
        for name, by_metric in replicates.items()}
    metrics["click_auc_by_item_age"] = {
        f"{low:g}-{high:g}d": roc_auc(rows[features.CLICK][where], rows["click_prob"][where])
        for (low, high), where in _buckets(rows[features.ITEM_AGE_DAYS], AGE_BUCKETS)}
    metrics["click_auc_by_history_length"] = {
        _history_label(low, high): roc_auc(rows[features.CLICK][where], rows["click_prob"][where])
        for (low, high), where in _buckets(rows[features.HIST_LEN], HISTORY_BUCKETS)}
    return metrics, replicates


def paired_differences(metrics: dict[str, Any], replicates: Replicates,
                       base_metrics: dict[str, Any], base_replicates: Replicates
                       ) -> dict[str, dict[str, dict[str, Any]]]:
    """A model minus ``base`` per slice and metric, with the interval of the difference over
    the same resamples (paired: both models scored on the same drawn users)."""
    return {name: {metric: {DIFFERENCE: metrics[name][metric] - base_metrics[name][metric],
                            INTERVAL: percentile_interval(values - base_replicates[name][metric])}
                   for metric, values in by_metric.items()}
            for name, by_metric in replicates.items()}


def _buckets(values: np.ndarray, bounds) -> list[tuple[tuple[float, float], np.ndarray]]:
    return [((low, high), (values >= low) & (values < high)) for low, high in bounds]


def _history_label(low: float, high: float) -> str:
    if high == float("inf"):
        return f"{low:g}+"
    return f"{low:g}" if high == low + 1 else f"{low:g}-{high - 1:g}"


def history_length_shares(rows: dict[str, np.ndarray]) -> dict[str, float]:
    """Share of eval impressions per history-length bucket."""
    return {_history_label(low, high): float(where.mean())
            for (low, high), where in _buckets(rows[features.HIST_LEN], HISTORY_BUCKETS)}


def evaluate(work: str, resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """Computes and writes WORK/eval/metrics.json; returns it. ``resamples`` draws of the eval
    users (seeded with ``seed``) give every interval."""
    layout = WorkLayout(work)
    predictions = load_all_predictions(work)
    reference = next(iter(predictions.values()))
    oracle = load_oracle(work, reference)
    if oracle is not None:
        predictions[ORACLE] = oracle
    masks = slice_masks(reference, window_item_ids(work))
    draws = UserResamples.draw(reference[features.USER_ID], resamples, seed)
    scored = {name: model_metrics(rows, masks, draws) for name, rows in predictions.items()}
    if BASE in scored:
        for name, (metrics, replicates) in scored.items():
            if name != BASE:
                metrics[VS_BASE] = paired_differences(metrics, replicates, *scored[BASE])
    results: dict[str, Any] = {
        "models": {name: metrics for name, (metrics, _) in scored.items() if name != ORACLE},
        BOOTSTRAP: {"unit": "user", "resamples": resamples, "seed": seed,
                    "level": INTERVAL_LEVEL, "users": int(draws.counts.shape[1])},
        "eval_share_by_history_length": history_length_shares(reference)}
    for name, metrics in results["models"].items():
        training = read_json_if_present(layout.training_summary(name)) or {}
        metrics.update({key: training.get(key) for key in (
            "train_seconds", "trainable_params", "examples_per_second", "train_examples")})
    if oracle is not None:
        results[ORACLE] = scored[ORACLE][0]
        for metrics in results["models"].values():
            metrics["gap_to_oracle"] = {
                name: results[ORACLE][name]["click_auc"] - metrics[name]["click_auc"]
                for name in EVAL_SLICES}
    pretrained = read_json_if_present(layout.training_summary(PRETRAINED))
    if pretrained:
        results["ppm_full"] = {key: pretrained[key] for key in (
            "trainable_params", "user_tower_params", "head_params", "train_seconds")}
    models = results["models"]
    if "urm" in models and "base_long" in models:
        results["iteration_efficiency"] = {
            name: {"click_auc": models[name]["overall"]["click_auc"],
                   "train_seconds": models[name]["train_seconds"],
                   "train_examples": models[name]["train_examples"]}
            for name in ("urm", "base_long")}
    tf.io.gfile.makedirs(layout.eval_dir)
    with tf.io.gfile.GFile(layout.eval_metrics, "w") as handle:
        write_metrics_json(results, handle)
    return results


def write_metrics_json(metrics: dict[str, Any], handle) -> None:
    """Strict JSON: an undefined metric (AUC of a slice with one class) is null, not NaN."""
    json.dump(_nan_as_none(metrics), handle, indent=2, sort_keys=True, allow_nan=False)


def _nan_as_none(value):
    if isinstance(value, dict):
        return {key: _nan_as_none(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_as_none(item) for item in value]
    if isinstance(value, (float, np.floating)):
        return None if np.isnan(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
