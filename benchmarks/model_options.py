"""Model options measured the way defaults are chosen: rows trained with preset fields
overridden, seed by seed, scored on ``valid`` (to choose) and ``eval`` (to report).

    python benchmarks/model_options.py --work WORK [--models base urm]
        [--variants "" ranking_loss=listwise "urm_integration=gated_logits,content_norm=true"]
        [--seeds 0 1 2] [--preset NAME]

A variant is a comma-separated list of ``ModelConfig`` fields and values, each as ``ppm train
--set FIELD=VALUE`` reads it (``""`` is the preset as it is). WORK is a finished local pipeline
run up to ``ppm precompute``; nothing is written into it (each fit backs up to a temporary
folder). For each model and variant, prints per seed and then averaged over the seeds: the
valid split's click AUC at the best epoch, or of the starting weights when the run kept them
(what early stopping and the choice of a default read), per-request GAUC and click AUC on cold
items, then the eval split's click AUC, per-request GAUC and cold click AUC (reported, never
used to choose). Rows that ``ppm train`` never fits (``ppm_zero_shot``, ``counts``) are scored
as they start.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ppm_tf  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from ppm_tf import features  # noqa: E402
from ppm_tf.data.tfrecords import read_cached, read_split  # noqa: E402
from ppm_tf.evaluation.evaluate import REQUEST_GROUP, with_request_groups  # noqa: E402
from ppm_tf.metrics import grouped_auc, roc_auc  # noqa: E402
from ppm_tf.models.config import parse_override, preset  # noqa: E402
from ppm_tf.training import ablations  # noqa: E402
from ppm_tf.training.registry import ablation_row  # noqa: E402


def train(work: str, name: str, config, seed: int):
    """One fit of row ``name`` as ``ppm train`` runs it, its backup in a scratch folder; no
    fit (``None``) for a row ``ppm train`` scores as it starts (``ppm_zero_shot``, ``counts``)."""
    tf.keras.utils.set_random_seed(seed)
    row = ablation_row(name)
    reader = read_cached if row.cached_inputs else read_split
    model = ablations.prepared_model(work, name, config)
    if not row.fine_tuned:
        return model, None
    with tempfile.TemporaryDirectory(prefix="model-options-") as backup:
        result = ablations.fit_on_splits(model, work, reader, row.splits, config, seed,
                                         config.train_epochs, config.min_train_steps,
                                         config.patience, backup, verbose=0)
    return model, result


def scores(model, work: str, name: str, split: str) -> tuple[float, float, float]:
    """Click AUC, per-request GAUC (groups = (user, request)) and click AUC on cold items
    (``features.IS_COLD_ITEM``: no impression before the recent window) on ``split``."""
    read = (features.CLICK, features.USER_ID, features.REQUEST_ID, features.IS_COLD_ITEM)
    columns = {key: [] for key in (*read, "click_prob")}
    for batch in ablations.read_examples(name, work, split, 2048, deterministic=True):
        for key in read:
            columns[key].append(batch[key].numpy())
        columns["click_prob"].append(model.predict_probabilities(batch)["click_prob"].numpy())
    rows = with_request_groups({key: np.concatenate(values) for key, values in columns.items()})
    labels, probabilities = rows[features.CLICK], rows["click_prob"]
    cold = rows[features.IS_COLD_ITEM].astype(bool)
    return (roc_auc(labels, probabilities),
            grouped_auc(rows[REQUEST_GROUP], labels, probabilities),
            roc_auc(labels[cold], probabilities[cold]))


def parse_variant(text: str) -> dict:
    """``"field=value,field=value"`` -> overrides of ``ModelConfig`` fields, each read as
    ``ppm train --set`` reads it."""
    try:
        return dict(parse_override(item) for item in filter(None, text.split(",")))
    except ValueError as error:
        raise SystemExit(f"variant {text!r}: {error}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--models", nargs="+", default=["base", "urm"])
    parser.add_argument("--variants", nargs="+", default=[""],
                        help='FIELD=VALUE[,FIELD=VALUE...] per variant; "" is the preset')
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--preset", help="model preset (default: the one WORK was trained with)")
    args = parser.parse_args(argv)
    base_config = preset(ablations.resolve_preset(args.work, args.preset))
    print("model  variant  seed  valid AUC  valid GAUC  valid cold  eval AUC  eval GAUC  "
          "eval cold  best epoch")
    for name in args.models:
        for variant in args.variants:
            config = dataclasses.replace(base_config, **parse_variant(variant))
            label = variant or "preset"
            rows = []
            for seed in args.seeds:
                model, result = train(args.work, name, config, seed)
                valid = scores(model, args.work, name, "valid")
                if result is not None:  # the AUC early stopping read, not a fresh scoring
                    kept_start = ([] if result.validation_start is None
                                  else [result.validation_start])
                    valid = (max((*result.validation_curve, *kept_start)), *valid[1:])
                row = (*valid, *scores(model, args.work, name, "eval"))
                rows.append(row)
                fitted = "not fitted" if result is None else f"{result.best_epoch}/{result.epochs}"
                print(f"{name} [{label}] seed {seed}  "
                      + "  ".join(f"{value:.4f}" for value in row) + f"  {fitted}", flush=True)
            print(f"{name} [{label}] mean    "
                  + "  ".join(f"{value:.4f}" for value in np.mean(rows, axis=0)), flush=True)


if __name__ == "__main__":
    main()
