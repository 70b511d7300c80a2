"""Model options measured the way defaults are chosen: rows trained with preset fields
overridden, seed by seed, scored on ``valid`` (to choose) and ``eval`` (to report).

    python benchmarks/model_options.py --work WORK [WORK ...] [--models base urm]
        [--variants "" ranking_loss=listwise "urm_integration=gated_logits,content_norm=true"]
        [--seeds 0 1 2] [--preset NAME] [--resamples 500] [--bootstrap-seed 0]

A variant is a comma-separated list of ``ModelConfig`` fields and values, each as ``ppm train
--set FIELD=VALUE`` reads it (``""`` is the preset as it is). WORK is a finished local pipeline
run up to ``ppm precompute``; nothing is written into it (each fit backs up to a temporary
folder). For each model and variant, prints per seed and then averaged over the seeds: the
valid split's click AUC at the best epoch, or of the starting weights when the run kept them
(what early stopping and the choice of a default read), per-request GAUC and click AUC on cold
items, then the eval split's click AUC, per-request GAUC and cold click AUC (reported, never
used to choose). Rows that ``ppm train`` never fits (``ppm_zero_shot``, ``counts``) are scored
as they start. Then, for each model, every variant's click AUC minus the first variant's (the
reference, usually ``""``) on ``valid`` and on eval: overall, on cold items and on the cold
items never shown before the split (for ``valid``: not in ``train``; for eval: not in the
recent window). Several work dirs that share one preprocessing output (copies pre-trained
with different settings, say) run every variant on each, paired with the first work dir's
first variant: that is how two pre-trainings are compared. Each difference is the mean over
seeds of the restored weights' scores, with a 95% interval from the bootstrap over users,
paired over users and seeds (resample b's difference is the mean over seeds of variant minus
reference on that resample), so a choice on ``valid`` can tell a difference from noise.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ppm_tf  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from benchmarks.ablation_seeds import interval_text  # noqa: E402
from ppm_tf import features  # noqa: E402
from ppm_tf.data.tfrecords import read_cached, read_split  # noqa: E402
from ppm_tf.evaluation import COLD_UNSEEN  # noqa: E402
from ppm_tf.evaluation.bootstrap import (DEFAULT_RESAMPLES, UserResamples,  # noqa: E402
                                         auc_replicates, percentile_interval)
from ppm_tf.evaluation.evaluate import (RECENT_WINDOW, REQUEST_GROUP,  # noqa: E402
                                        slice_masks, window_item_ids, with_request_groups)
from ppm_tf.metrics import grouped_auc, roc_auc  # noqa: E402
from ppm_tf.models.config import parse_override  # noqa: E402
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


SPLITS = ("valid", "eval")
EARLIER_SPLITS = {"valid": ("train",), "eval": RECENT_WINDOW}  # the window's splits before each
# Overall, cold items, and cold items with no impression in the window before the split.
DIFFERENCE_SLICES = {"overall": "overall", "cold": "cold", COLD_UNSEEN: "unseen"}


def predictions(model, work: str, name: str, split: str) -> dict[str, np.ndarray]:
    """The split's ids, labels, request groups, cold flags and the model's click
    probabilities, in the reader's one deterministic order."""
    rows = with_request_groups(ablations.score_split(model, name, work, split, 2048))
    rows[features.IS_COLD_ITEM] = rows[features.IS_COLD_ITEM].astype(bool)
    return rows


def scores(rows: dict[str, np.ndarray]) -> tuple[float, float, float]:
    """Click AUC, per-request GAUC (groups = (user, request)) and click AUC on cold items
    (``features.IS_COLD_ITEM``: no impression before the recent window)."""
    labels, probabilities = rows[features.CLICK], rows["click_prob"]
    cold = rows[features.IS_COLD_ITEM]
    return (roc_auc(labels, probabilities),
            grouped_auc(rows[REQUEST_GROUP], labels, probabilities),
            roc_auc(labels[cold], probabilities[cold]))


class PairedRuns:
    """One model's runs (variant x seed) on one split, scored on shared user resamples so
    that variants can be compared in pairs."""

    def __init__(self, earlier_items: np.ndarray, resamples: int, bootstrap_seed: int):
        self.earlier_items = earlier_items
        self.resamples, self.bootstrap_seed = resamples, bootstrap_seed
        self.rows: dict[str, np.ndarray] | None = None
        self.masks: dict[str, np.ndarray] = {}
        self.draws: UserResamples | None = None
        self.points: dict[str, dict[str, list[float]]] = {}
        self.replicates: dict[str, dict[str, list[np.ndarray]]] = {}

    def add(self, variant: str, rows: dict[str, np.ndarray]) -> None:
        if self.rows is None:
            masks = slice_masks(rows, self.earlier_items)  # the evaluation's, split-relative
            self.rows, self.masks = rows, {piece: masks[piece] for piece in DIFFERENCE_SLICES}
            self.draws = UserResamples.draw(rows[features.USER_ID], self.resamples,
                                            self.bootstrap_seed)
        elif not (np.array_equal(rows[features.USER_ID], self.rows[features.USER_ID])
                  and np.array_equal(rows[features.CLICK], self.rows[features.CLICK])):
            raise RuntimeError("the split was read in another order; runs cannot be paired")
        labels, probabilities = rows[features.CLICK], rows["click_prob"]
        for piece, where in self.masks.items():
            self.points.setdefault(variant, {}).setdefault(piece, []).append(
                roc_auc(labels[where], probabilities[where]))
            self.replicates.setdefault(variant, {}).setdefault(piece, []).append(
                auc_replicates(self.draws, labels, probabilities, where))

    def difference(self, variant: str, reference: str, piece: str):
        """Mean over seeds of variant minus reference, and its paired 95% interval."""
        point = np.mean(self.points[variant][piece]) - np.mean(self.points[reference][piece])
        paired = (np.mean(self.replicates[variant][piece], axis=0)
                  - np.mean(self.replicates[reference][piece], axis=0))
        return float(point), percentile_interval(paired)


def slice_sizes(name: str, runs: dict[str, PairedRuns]) -> str:
    return f"{name} impressions: " + "  ".join(
        f"{split} {DIFFERENCE_SLICES[piece]} {int(mask.sum()):,}" for split in SPLITS
        for piece, mask in runs[split].masks.items())


def difference_line(name: str, runs: dict[str, PairedRuns], label: str, reference: str) -> str:
    cells = []
    for split in SPLITS:
        for piece, piece_label in DIFFERENCE_SLICES.items():
            point, interval = runs[split].difference(label, reference, piece)
            cells.append(f"{split} {piece_label} {point:+.4f} "
                         f"{interval_text(interval, signed=True)}")
    return f"{name} [{label}] - [{reference}]: " + "  ".join(cells)


def parse_variant(text: str) -> dict:
    """``"field=value,field=value"`` -> overrides of ``ModelConfig`` fields, each read as
    ``ppm train --set`` reads it."""
    try:
        return dict(parse_override(item) for item in filter(None, text.split(",")))
    except ValueError as error:
        raise SystemExit(f"variant {text!r}: {error}") from None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", required=True, nargs="+",
                        help="work dir(s); several must share one preprocessing output")
    parser.add_argument("--models", nargs="+", default=["base", "urm"])
    parser.add_argument("--variants", nargs="+", default=[""],
                        help='FIELD=VALUE[,FIELD=VALUE...] per variant; "" is the preset')
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--preset", help="model preset (default: the one WORK was trained with)")
    parser.add_argument("--resamples", type=int, default=DEFAULT_RESAMPLES)
    parser.add_argument("--bootstrap-seed", type=int, default=0)
    args = parser.parse_args(argv)
    overrides = {variant: parse_variant(variant) for variant in args.variants}
    # Each run: (work dir, variant), labelled by the variant, and by the work dir when several.
    contenders = [(work, variant) for work in args.work for variant in args.variants]
    labels = {(work, variant): (variant or "preset")
              + (f" @ {work}" if len(args.work) > 1 else "") for work, variant in contenders}
    print("model  variant  seed  valid AUC  valid GAUC  valid cold  eval AUC  eval GAUC  "
          "eval cold  best epoch")
    earlier_items = {split: window_item_ids(args.work[0], EARLIER_SPLITS[split])
                     for split in SPLITS}
    differences = []
    for name in args.models:
        runs = {split: PairedRuns(earlier_items[split], args.resamples, args.bootstrap_seed)
                for split in SPLITS}
        for work, variant in contenders:
            preset_name = ablations.resolve_preset(work, args.preset)
            config = ablations.row_config(work, name, preset_name, overrides[variant])
            label = labels[work, variant]
            table = []
            for seed in args.seeds:
                model, result = train(work, name, config, seed)
                split_rows = {split: predictions(model, work, name, split) for split in SPLITS}
                for split in SPLITS:
                    runs[split].add(label, split_rows[split])
                valid = scores(split_rows["valid"])
                if result is not None:  # the AUC early stopping read, not a fresh scoring
                    kept_start = ([] if result.validation_start is None
                                  else [result.validation_start])
                    valid = (max((*result.validation_curve, *kept_start)), *valid[1:])
                row = (*valid, *scores(split_rows["eval"]))
                table.append(row)
                fitted = "not fitted" if result is None else f"{result.best_epoch}/{result.epochs}"
                print(f"{name} [{label}] seed {seed}  "
                      + "  ".join(f"{value:.4f}" for value in row) + f"  {fitted}", flush=True)
            print(f"{name} [{label}] mean    "
                  + "  ".join(f"{value:.4f}" for value in np.mean(table, axis=0)), flush=True)
        reference = labels[contenders[0]]
        if len(contenders) > 1:
            differences.append(slice_sizes(name, runs))
        differences += [difference_line(name, runs, labels[contender], reference)
                        for contender in contenders[1:]]
    if differences:
        print(f"\nclick AUC minus the first variant's, mean over seeds {args.seeds} [95% "
              f"interval, bootstrap over users ({args.resamples} resamples), paired over "
              "users and seeds]")
        print("\n".join(differences))


if __name__ == "__main__":
    main()
