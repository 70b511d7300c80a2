"""Seeds pooled into one table with intervals: how much of a gap between two rows is
training noise, and how much is the eval sample.

    python benchmarks/ablation_seeds.py --work WORK [--models base urm] [--seeds 0 1 2]
        [--set MODEL:FIELD=VALUE ...] [--resamples 500] [--bootstrap-seed 0]

WORK is a finished local pipeline run up to ``ppm precompute`` (e.g. runs/demo/work). Each
model trains once per seed in a scratch directory that links WORK's inputs, so WORK's own
models, predictions and metrics stay as they are. Prints click AUC per slice per run, then
per model and slice the mean over seeds, the spread between seeds (sd) and the 95% interval
of the seed mean (bootstrap over users: every run is scored on the same resampled users);
then each model's difference to ``base``, paired over users and seeds (resample b's
difference is the mean over seeds of model minus base on that resample), with the
cold-to-overall gain ratio (issue 5's bar: >= 2) and the per-request GAUC's difference.
``--set MODEL:FIELD=VALUE`` trains one row with a preset field replaced, as ``ppm train --set``
does (e.g. ``lr:learning_rate=0.01``, a setting chosen on the data set's own ``valid``), so it
is compared with the others on the same users and seeds.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ppm_tf import features  # noqa: E402
from ppm_tf.evaluation import BASE, EVAL_SLICES, SLICE_LABELS, SLICES  # noqa: E402
from ppm_tf.evaluation.bootstrap import (DEFAULT_RESAMPLES, UserResamples,  # noqa: E402
                                         percentile_interval)
from ppm_tf.evaluation.evaluate import (load_predictions, model_metrics,  # noqa: E402
                                        slice_masks, window_item_ids)
from ppm_tf.models.config import parse_override  # noqa: E402
from ppm_tf.training.ablations import train_ablation  # noqa: E402
from ppm_tf.work_layout import PRETRAINED, WorkLayout  # noqa: E402

POOLED_METRICS = {"click_auc": "click AUC", "click_request_gauc": "click GAUC per request"}


def scratch_work(work: str, scratch: str) -> str:
    """A work directory whose inputs are WORK's (links) and whose outputs are its own."""
    source, target = WorkLayout(work), WorkLayout(scratch)
    # The top folders training and evaluation write: models/, predictions/, eval/.
    written = {os.path.relpath(path, work).split(os.sep)[0] for path in (
        source.model_dir(PRETRAINED), source.predictions(BASE), source.eval_dir)}
    for name in os.listdir(work):
        if name not in written:
            os.symlink(os.path.abspath(source.path(name)), target.path(name))
    os.makedirs(os.path.dirname(target.model_dir(PRETRAINED)))
    pretrained = source.model_dir(PRETRAINED)
    if os.path.isdir(pretrained):  # the plug-in head's initial weights
        os.symlink(os.path.abspath(pretrained), target.model_dir(PRETRAINED))
    return scratch


class SeedPool:
    """Every run's metrics per slice, and their values on the shared user resamples."""

    def __init__(self, work: str, resamples: int, bootstrap_seed: int):
        self.work, self.resamples, self.bootstrap_seed = work, resamples, bootstrap_seed
        self.window_items = window_item_ids(work)
        self.draws: UserResamples | None = None
        self.points: dict[str, list[dict[str, dict]]] = {}
        self.replicates: dict[str, list[dict[str, dict[str, np.ndarray]]]] = {}

    def add(self, name: str) -> dict[str, dict[str, float]]:
        """Scores the predictions just written for ``name``; returns its metrics per slice."""
        rows = load_predictions(self.work, name)
        if self.draws is None:  # the eval rows are the same in every run
            self.draws = UserResamples.draw(rows[features.USER_ID], self.resamples,
                                            self.bootstrap_seed)
        points, replicates = model_metrics(rows, slice_masks(rows, self.window_items),
                                           self.draws)
        self.points.setdefault(name, []).append(points)
        self.replicates.setdefault(name, []).append(replicates)
        return points

    def values(self, name: str, piece: str, metric: str) -> np.ndarray:
        """The metric in each run (seed) of ``name``."""
        return np.array([run[piece][metric] for run in self.points[name]], np.float64)

    def seed_mean_replicates(self, name: str, piece: str, metric: str) -> np.ndarray:
        return np.mean([run[piece][metric] for run in self.replicates[name]], axis=0)


def spread(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else 0.0


def ratio(cold_gain: float, overall_gain: float) -> str:
    """The cold-to-overall gain ratio; meaningless (n/a) unless the model gains overall."""
    return f"{cold_gain / overall_gain:.2f}" if overall_gain > 0 else "n/a"


def interval_text(interval, signed: bool = False) -> str:
    if interval is None:
        return "[–]"
    sign = "+" if signed else ""
    return f"[{interval[0]:{sign}.4f}, {interval[1]:{sign}.4f}]"


def pooled_table(pool: SeedPool, models: list[str]) -> list[str]:
    header = f"{'model':<14}{'slice':<26}" + "".join(
        f"{label + ': mean (sd) [95%]':<42}" for label in POOLED_METRICS.values())
    lines = [header]
    for name in models:
        for piece in EVAL_SLICES:
            cells = []
            for metric in POOLED_METRICS:
                values = pool.values(name, piece, metric)
                interval = percentile_interval(pool.seed_mean_replicates(name, piece, metric))
                cells.append(f"{values.mean():.4f} ({spread(values):.4f}) "
                             f"{interval_text(interval)}")
            lines.append(f"{name:<14}{SLICE_LABELS[piece]:<26}"
                         + "".join(f"{cell:<42}" for cell in cells))
    return lines


def paired_gain(pool: SeedPool, name: str, piece: str, metric: str) -> tuple[np.ndarray, str]:
    """``name`` minus base on one slice's metric: per seed, and the text of the seed mean
    with its interval, paired over users and seeds."""
    per_seed = pool.values(name, piece, metric) - pool.values(BASE, piece, metric)
    paired = (pool.seed_mean_replicates(name, piece, metric)
              - pool.seed_mean_replicates(BASE, piece, metric))
    return per_seed, (f"{per_seed.mean():+.4f} "
                      f"{interval_text(percentile_interval(paired), signed=True)}")


def difference_lines(pool: SeedPool, models: list[str]) -> list[str]:
    lines = []
    for name in models:
        if name == BASE:
            continue
        gains, cells = {}, []
        for piece in EVAL_SLICES:
            gains[piece], text = paired_gain(pool, name, piece, "click_auc")
            cells.append(f"{piece} {text}")
        _, request_gauc = paired_gain(pool, name, "overall", "click_request_gauc")
        lines.append(f"{name} - {BASE}: " + "  ".join(cells)
                     + f"  cold/overall {ratio(gains['cold'].mean(), gains['overall'].mean())}"
                     + f" (per seed {', '.join(map(ratio, gains['cold'], gains['overall']))})"
                     + f"  GAUC/request overall {request_gauc}")
    return lines


def model_settings(assignments: list[str], models: list[str]) -> dict[str, dict]:
    """``["lr:learning_rate=0.01", ...]`` -> ``{"lr": {"learning_rate": 0.01}}``."""
    settings: dict[str, dict] = {}
    for assignment in assignments:
        name, colon, setting = assignment.partition(":")
        if not colon or name not in models:
            raise SystemExit(f"--set {assignment!r}: expected MODEL:FIELD=VALUE with MODEL "
                             f"one of {models}")
        try:
            field, value = parse_override(setting)
        except ValueError as error:
            raise SystemExit(f"--set {assignment!r}: {error}") from None
        settings.setdefault(name, {})[field] = value
    return settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--preset", help="model preset (default: the one WORK was trained with)")
    parser.add_argument("--models", nargs="+", default=[BASE, "urm"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--set", dest="settings", action="append", default=[],
                        metavar="MODEL:FIELD=VALUE", help="a preset field replaced for one row")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES)
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    args = parser.parse_args()
    models = list(dict.fromkeys([BASE, *args.models]))
    settings = model_settings(args.settings, models)
    with tempfile.TemporaryDirectory() as scratch:
        work = scratch_work(args.work, scratch)
        pool = SeedPool(work, args.resamples, args.bootstrap_seed)
        for seed in args.seeds:
            for name in models:
                config = train_ablation(work, name, args.preset, seed, verbose=0,
                                        overrides=settings.get(name))["config"]
                points = pool.add(name)
                cells = [f"{piece} {points[piece]['click_auc']:.4f}" for piece in SLICES]
                cells += [f"{field}={config[field]}" for field in settings.get(name, ())]
                print(f"seed {seed} {name:<13} " + "  ".join(cells), flush=True)
    print(f"\npooled over seeds {args.seeds}: mean over seeds (sd between seeds) [95% interval "
          f"of the seed mean, bootstrap over {pool.draws.counts.shape[1]:,} users, "
          f"{args.resamples} resamples]")
    print("\n".join(pooled_table(pool, models)))
    print(f"\nclick AUC (and per-request GAUC) minus {BASE}'s, mean over seeds [95% interval, "
          "paired over users and seeds]")
    print("\n".join(difference_lines(pool, models)))


if __name__ == "__main__":
    main()
