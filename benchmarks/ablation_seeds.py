"""Seed spread of the ablation: how much of a gap between two rows is training noise.

    python benchmarks/ablation_seeds.py --work WORK [--models base urm] [--seeds 0 1 2]

WORK is a finished local pipeline run up to ``ppm precompute`` (e.g. runs/demo/work). Each
model trains once per seed in a scratch directory that links WORK's inputs, so WORK's own
models, predictions and metrics stay as they are. Prints click AUC overall / cold / warm per
run, the mean and standard deviation per model, and each model's gains over ``base`` with
the cold-to-overall gain ratio (issue 5's bar: >= 2).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ppm_tf.evaluation import SLICES  # noqa: E402
from ppm_tf.evaluation.evaluate import load_predictions, model_metrics  # noqa: E402
from ppm_tf.training.ablations import train_ablation  # noqa: E402
from ppm_tf.work_layout import PRETRAINED  # noqa: E402

WRITTEN_BY_TRAINING = ("models", "predictions", "eval")


def scratch_work(work: str, scratch: str) -> str:
    """A work directory whose inputs are WORK's (links) and whose outputs are its own."""
    for name in os.listdir(work):
        if name not in WRITTEN_BY_TRAINING:
            os.symlink(os.path.abspath(os.path.join(work, name)), os.path.join(scratch, name))
    os.makedirs(os.path.join(scratch, "models"))
    pretrained = os.path.join(work, "models", PRETRAINED)
    if os.path.isdir(pretrained):  # the plug-in head's initial weights
        os.symlink(os.path.abspath(pretrained), os.path.join(scratch, "models", PRETRAINED))
    return scratch


def click_aucs(work: str, name: str, preset: str, seed: int) -> dict[str, float]:
    train_ablation(work, name, preset, seed, verbose=0)
    metrics = model_metrics(load_predictions(work, name))
    return {piece: metrics[piece]["click_auc"] for piece in SLICES}


def spread(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def ratio(cold_gain: float, overall_gain: float) -> str:
    """The cold-to-overall gain ratio; meaningless (n/a) unless the model gains overall."""
    return f"{cold_gain / overall_gain:.2f}" if overall_gain > 0 else "n/a"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--models", nargs="+", default=["base", "urm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    args = parser.parse_args()
    models = list(dict.fromkeys(["base", *args.models]))
    runs: dict[str, list[dict[str, float]]] = {name: [] for name in models}
    with tempfile.TemporaryDirectory() as scratch:
        work = scratch_work(args.work, scratch)
        for seed in args.seeds:
            for name in models:
                runs[name].append(click_aucs(work, name, args.preset, seed))
                print(f"seed {seed} {name:<9} " + "  ".join(
                    f"{piece} {runs[name][-1][piece]:.4f}" for piece in SLICES), flush=True)
    print(f"\nclick AUC over seeds {args.seeds}: mean (sd)")
    print(f"{'model':<10}" + "".join(f"{piece:>18}" for piece in SLICES))
    for name in models:
        cells = [np.array([run[piece] for run in runs[name]]) for piece in SLICES]
        print(f"{name:<10}" + "".join(f"{values.mean():>10.4f} ({spread(values):.4f})"
                                      for values in cells))
    for name in models[1:]:
        gains = {piece: np.array([run[piece] - base[piece] for run, base in
                                  zip(runs[name], runs["base"])]) for piece in SLICES}
        print(f"{name} - base: " + "  ".join(
            f"{piece} {gains[piece].mean():+.4f}" for piece in SLICES)
              + f"  cold/overall {ratio(gains['cold'].mean(), gains['overall'].mean())}"
              + f" (per seed {', '.join(map(ratio, gains['cold'], gains['overall']))})")


if __name__ == "__main__":
    main()
