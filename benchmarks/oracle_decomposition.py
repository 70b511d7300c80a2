"""Where the gap to the oracle comes from, on a synthetic world.

    python benchmarks/oracle_decomposition.py --data RAW --work WORK [--models base urm]

RAW is a synthetic world (``ppm generate`` or ``ppm demo``'s OUT/data) and WORK a run on it
with ``ppm train`` done (OUT/work). The world's hidden per-id effects are drawn again from
the preset and seed in RAW/world.json, and the oracle's click logit is split into

- id-only effects: user click bias + item quality + user latent . item latent, which no
  title, image or click history reveals: a model learns them per id, from that id's own
  impressions;
- everything else: taste . content, the market trend, similarity to recent clicks, which
  content and behaviour can carry to any item, new ones included.

Prints the click AUC and GAUC (within a user's impressions) of each part alone and of the
models, overall / cold / warm.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ppm_tf import features  # noqa: E402
from ppm_tf.data import raw_files  # noqa: E402
from ppm_tf.data.synthetic.world import catalog_and_population  # noqa: E402
from ppm_tf.evaluation import SLICES  # noqa: E402
from ppm_tf.evaluation.evaluate import load_oracle, load_predictions  # noqa: E402
from ppm_tf.metrics import grouped_auc, roc_auc  # noqa: E402


def id_only_logits(rows: dict[str, np.ndarray], data: str) -> np.ndarray:
    catalog, population = catalog_and_population(raw_files.read_world(data))
    item_rows = {item_id: row for row, item_id in enumerate(catalog.item_ids)}
    user_rows = {user_id: row for row, user_id in enumerate(population.user_ids)}
    try:
        items = np.array([item_rows[item_id] for item_id in rows[features.ITEM_ID]])
        users = np.array([user_rows[user_id] for user_id in rows[features.USER_ID]])
    except KeyError as error:
        raise SystemExit(f"id {error} is not in the world at {data}: pass the world WORK was "
                         "preprocessed from") from None
    return (population.click_bias[users] + catalog.quality[items]
            + np.einsum("nr,nr->n", population.latent[users], catalog.latent[items]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="the synthetic world (raw data)")
    parser.add_argument("--work", required=True)
    parser.add_argument("--models", nargs="+", default=["base", "urm", "base_long"])
    args = parser.parse_args()
    rows = {name: load_predictions(args.work, name) for name in args.models}
    missing = [name for name, predictions in rows.items() if predictions is None]
    if missing:
        raise SystemExit(f"no predictions of {missing} in {args.work}: run `ppm train` first")
    reference = rows[args.models[0]]
    oracle = load_oracle(args.work, reference)
    if oracle is None:
        raise SystemExit(f"no oracle rows in {args.work}: a synthetic world's run is needed")
    p_click = np.clip(oracle["click_prob"], 1e-7, 1 - 1e-7)
    logit = np.log(p_click / (1 - p_click))
    id_only = id_only_logits(reference, args.data)
    scores = {"oracle (every cause)": logit, "oracle without id-only effects": logit - id_only,
              "id-only effects alone": id_only,
              **{name: predictions["click_prob"] for name, predictions in rows.items()}}
    click = reference[features.CLICK]
    cold = reference[features.IS_COLD_ITEM].astype(bool)
    where = {"overall": np.ones_like(cold), "cold": cold, "warm": ~cold}
    users = reference[features.USER_ID]
    print(f"click AUC | GAUC on {click.size:,} eval impressions ({cold.mean():.0%} cold)")
    print(f"{'scorer':<32}" + "".join(f"{piece:>9}" for piece in SLICES) + " |"
          + "".join(f"{piece:>9}" for piece in SLICES))
    for name, score in scores.items():
        aucs = [roc_auc(click[where[piece]], score[where[piece]]) for piece in SLICES]
        gaucs = [grouped_auc(users[where[piece]], click[where[piece]], score[where[piece]])
                 for piece in SLICES]
        print(f"{name:<32}" + "".join(f"{auc:>9.4f}" for auc in aucs) + " |"
              + "".join(f"{gauc:>9.4f}" for gauc in gaucs))
    shares = np.var(id_only) / np.var(logit)
    print(f"id-only effects: {shares:.0%} of the oracle logit's variance")


if __name__ == "__main__":
    main()
