"""The in-request ranking loss measured: rows trained with and without it, seed by seed.

    python benchmarks/ranking_loss.py --work WORK [--models base urm]
        [--losses none pairwise listwise] [--weights 1.0] [--seeds 0 1 2] [--preset demo]

WORK is a finished local pipeline run up to ``ppm precompute``; nothing is written into it
(each fit backs up to a temporary folder). For each model, loss and weight, prints per seed
and then averaged over the seeds: the valid split's click AUC at the best epoch (what early
stopping and the choice of a default read) and per-request GAUC, then the eval split's click
AUC and per-request GAUC (reported, never used to choose).
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
from ppm_tf.metrics import grouped_auc, roc_auc  # noqa: E402
from ppm_tf.models.config import RANKING_LOSSES, preset  # noqa: E402
from ppm_tf.training import ablations  # noqa: E402
from ppm_tf.training.registry import ablation_row  # noqa: E402


def train(work: str, name: str, config, seed: int):
    """One fit of row ``name`` as ``ppm train`` runs it, its backup in a scratch folder."""
    tf.keras.utils.set_random_seed(seed)
    row = ablation_row(name)
    reader = read_cached if row.cached_inputs else read_split
    model = ablations.build_model(name, work, config)
    if row.head_from_pretraining:
        ablations.initialise_head_from_pretraining(
            model, work, next(iter(reader(work, row.splits, 2, deterministic=True))))
        ablations.pace_pretrained_head(model, config)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    with tempfile.TemporaryDirectory(prefix="ranking-loss-") as backup:
        result = ablations.fit_on_splits(model, work, reader, row.splits, config, seed,
                                         config.train_epochs, config.min_train_steps,
                                         backup, verbose=0)
    return model, result


def scores(model, work: str, name: str, split: str) -> tuple[float, float]:
    """Click AUC and per-request GAUC (groups = (user, request)) on ``split``."""
    labels, probabilities, requests = [], [], []
    for batch in ablations.read_examples(name, work, split, 2048, deterministic=True):
        labels.append(batch[features.CLICK].numpy())
        probabilities.append(model.predict_probabilities(batch)["click_prob"].numpy())
        requests.append(np.char.add(np.char.add(batch[features.USER_ID].numpy().astype(str),
                                                "/"),
                                    batch[features.REQUEST_ID].numpy().astype(str)))
    labels, probabilities, requests = map(np.concatenate, (labels, probabilities, requests))
    return roc_auc(labels, probabilities), grouped_auc(requests, labels, probabilities)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True)
    parser.add_argument("--models", nargs="+", default=["base", "urm"])
    parser.add_argument("--losses", nargs="+", choices=RANKING_LOSSES,
                        default=list(RANKING_LOSSES))
    parser.add_argument("--weights", nargs="+", type=float, default=[1.0])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--preset", default="demo")
    args = parser.parse_args(argv)
    print("model  loss      weight  seed  valid AUC  valid GAUC  eval AUC  eval GAUC  epochs")
    for name in args.models:
        for loss in args.losses:
            for weight in args.weights if loss != "none" else [0.0]:
                config = dataclasses.replace(preset(args.preset), ranking_loss=loss,
                                             ranking_loss_weight=weight)
                rows = []
                for seed in args.seeds:
                    model, result = train(args.work, name, config, seed)
                    row = (max(result.validation_curve),
                           scores(model, args.work, name, "valid")[1],
                           *scores(model, args.work, name, "eval"))
                    rows.append(row)
                    print(f"{name:6s} {loss:9s} {weight:6.2f}  {seed:4d}  "
                          + "  ".join(f"{value:9.4f}" for value in row)
                          + f"  {result.best_epoch}/{result.epochs}", flush=True)
                print(f"{name:6s} {loss:9s} {weight:6.2f}  mean  "
                      + "  ".join(f"{value:9.4f}" for value in np.mean(rows, axis=0)),
                      flush=True)


if __name__ == "__main__":
    main()
