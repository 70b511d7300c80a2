"""``ppm evaluate``: the paper's table from the stored eval-split predictions.

For every trained model (and, on synthetic worlds, the oracle that scores each impression with
its true probability): click AUC, order AUC, click GAUC, log loss and calibration, overall,
on cold items and on warm items; AUC by item-age bucket and by history length (the clicks the
models can read: where they stand against the oracle); cost (training time, throughput,
trainable parameters); and the iteration-efficiency pair (``urm`` on the recent window vs
``base_long`` on the long span). Writes WORK/eval/metrics.json; ``report.py`` renders it.
"""
from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.evaluation import SLICES
from ppm_tf.metrics import calibration, grouped_auc, log_loss, roc_auc
from ppm_tf.training.ablations import PREDICTION_KEYS
from ppm_tf.training.registry import MODELS
from ppm_tf.work_layout import PRETRAINED, WorkLayout, read_json_if_present

# Item age at the impression, in days since launch: [lower, upper).
AGE_BUCKETS = ((0, 1), (1, 3), (3, 7), (7, 14), (14, 30), (30, 90), (90, float("inf")))
# Clicks in the user's behaviour sequence at the impression: [lower, upper).
HISTORY_BUCKETS = ((0, 1), (1, 3), (3, 6), (6, 11), (11, float("inf")))
ORACLE = "oracle"


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
    return {key: values[order] for key, values in arrays.items()}


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


def slice_metrics(rows: dict[str, np.ndarray]) -> dict[str, float]:
    click, order = rows[features.CLICK], rows[features.ORDER]
    return {
        "examples": int(click.size),
        "click_auc": roc_auc(click, rows["click_prob"]),
        "order_auc": roc_auc(order, rows["order_prob"]),
        "click_gauc": grouped_auc(rows[features.USER_ID], click, rows["click_prob"]),
        "logloss": log_loss(click, rows["click_prob"]),
        "order_logloss": log_loss(order, rows["order_prob"]),
        "calibration": calibration(click, rows["click_prob"]),
    }


def _select(rows: dict[str, np.ndarray], where: np.ndarray) -> dict[str, np.ndarray]:
    return {key: values[where] for key, values in rows.items()}


def model_metrics(rows: dict[str, np.ndarray]) -> dict[str, Any]:
    cold = rows[features.IS_COLD_ITEM].astype(bool)
    metrics = {"overall": slice_metrics(rows), "cold": slice_metrics(_select(rows, cold)),
               "warm": slice_metrics(_select(rows, ~cold))}
    metrics["click_auc_by_item_age"] = {
        f"{low:g}-{high:g}d": roc_auc(rows[features.CLICK][where], rows["click_prob"][where])
        for (low, high), where in _buckets(rows[features.ITEM_AGE_DAYS], AGE_BUCKETS)}
    metrics["click_auc_by_history_length"] = {
        _history_label(low, high): roc_auc(rows[features.CLICK][where], rows["click_prob"][where])
        for (low, high), where in _buckets(rows[features.HIST_LEN], HISTORY_BUCKETS)}
    return metrics


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


def evaluate(work: str) -> dict[str, Any]:
    """Computes and writes WORK/eval/metrics.json; returns it."""
    layout = WorkLayout(work)
    if not any(tf.io.gfile.exists(layout.predictions(name)) for name in MODELS):
        raise FileNotFoundError(f"no predictions under {layout.path('predictions')}: run "
                                f"`{layout.command('train', 'all')}` first")
    results: dict[str, Any] = {"models": {}}
    reference = None
    for name in MODELS:
        rows = load_predictions(work, name)
        if rows is None:
            continue
        if reference is not None and not np.array_equal(rows[features.REQUEST_ID],
                                                         reference[features.REQUEST_ID]):
            raise ValueError(f"predictions of {name!r} cover other eval rows than the first "
                             "model's; retrain it on the current preprocessing")
        reference = rows if reference is None else reference
        training = read_json_if_present(layout.training_summary(name)) or {}
        results["models"][name] = {
            **model_metrics(rows),
            **{key: training.get(key) for key in ("train_seconds", "trainable_params",
                                                   "examples_per_second", "train_examples")}}
    results["eval_share_by_history_length"] = history_length_shares(reference)
    oracle = load_oracle(work, reference)
    if oracle is not None:
        results[ORACLE] = model_metrics(oracle)
        for metrics in results["models"].values():
            metrics["gap_to_oracle"] = {
                name: results[ORACLE][name]["click_auc"] - metrics[name]["click_auc"]
                for name in SLICES}
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
