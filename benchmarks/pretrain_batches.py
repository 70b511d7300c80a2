"""PPM pre-training on batches that keep a request's impressions together against batches of
shuffled records, side by side: the user tower runs once per distinct history of a batch, so
groups of a request's impressions (``pretrain_request_group``) need fewer tower rows.

    python benchmarks/pretrain_batches.py --work WORK [--preset NAME] [--group N]
        [--rounds 6] [--round-seconds 5] [--batches 30]

WORK is a pipeline run up to ``ppm embed-items`` (e.g. runs/demo/work). Two PPMs, built the
same way and seeded alike, train in one process on ``--batches`` batches of the pretrain
split each, held in memory and cycled (the model's cost, not the input pipeline's), read as
``ppm pretrain`` reads them with ``--request-group 1`` and ``--request-group N`` (default:
8); they take turns in alternating rounds of at least ``--round-seconds``
(``rounds.py``). Prints each one's examples/s as its median over rounds [slowest, fastest
round], the tower rows a batch needs, and the ratio of medians with a 95% interval over
paired rounds.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

import ppm_tf  # noqa: E402,F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf  # noqa: E402

from benchmarks.rounds import RATIO_LEGEND, Ratio, Spread, alternate  # noqa: E402
from benchmarks.train_throughput import cycled, training_step  # noqa: E402
from ppm_tf.data.tfrecords import load_preprocess_metadata, read_split  # noqa: E402
from ppm_tf.models.config import AUTO_GROUP, preset  # noqa: E402
from ppm_tf.models.item_table import load_item_table  # noqa: E402
from ppm_tf.models.ppm import PPM  # noqa: E402
from ppm_tf.training.ablations import resolve_preset  # noqa: E402


def pretrain_batches(work: str, batch_size: int, count: int,
                     request_group: int) -> list[dict[str, tf.Tensor]]:
    """``count`` full batches of the pretrain split, read as pre-training reads them."""
    batches = list(read_split(work, "pretrain", batch_size, shuffle=True, seed=0,
                              drop_remainder=True, group_requests=request_group > 1,
                              max_group=request_group).take(count))
    if len(batches) < count:
        raise ValueError(f"{work}'s pretrain split has {len(batches)} full batches of "
                         f"{batch_size}, fewer than --batches {count}")
    return batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--preset", help="model preset (default: the one WORK was trained with)")
    parser.add_argument("--group", type=int, default=AUTO_GROUP,
                        help="impressions of a request read together (default: %(default)s, "
                             "what the presets' 'auto' reads when grouping pays)")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-seconds", type=float, default=5.0,
                        help="each contender's least time per round")
    parser.add_argument("--batches", type=int, default=30, help="distinct batches, cycled")
    args = parser.parse_args()
    preset_name = resolve_preset(args.work, args.preset)
    config = preset(preset_name)
    group = args.group
    if group < 2:
        parser.error(f"--group {group}: nothing to compare with records one by one")
    metadata = load_preprocess_metadata(args.work)
    contenders, tower_rows = {}, {}
    for name, request_group in {"records": 1, f"groups of {group}": group}.items():
        tf.keras.utils.set_random_seed(0)
        model = PPM(load_item_table(args.work, name="item_vectors"), config,
                    metadata["max_seq_len"], metadata["count_priors"])
        batches = pretrain_batches(args.work, config.batch_size, args.batches,
                                   request_group)
        tower_rows[name] = float(np.mean([len(model.distinct_histories(batch)[0])
                                          for batch in batches]))
        contenders[name] = training_step(model, cycled(batches), config.learning_rate)
    results = alternate(contenders, args.rounds, args.round_seconds,
                        units_per_call=dict.fromkeys(contenders, config.batch_size))
    rates = {name: [one.units_per_second for one in rounds] for name, rounds in results.items()}
    print(f"PPM pre-training throughput, preset {preset_name}, batch {config.batch_size}: "
          f"{args.rounds} rounds of >= {args.round_seconds:g} s per reading, alternating")
    print("reading         examples/s: median [slowest, fastest round]   tower rows/batch")
    for name, values in rates.items():
        print(f"{name:<15} {Spread.of(values).format(',.0f'):<40} {tower_rows[name]:>8.1f}")
    print(RATIO_LEGEND)
    grouped = f"groups of {group}"
    print(f"{grouped} / records: {Ratio.of_medians(rates[grouped], rates['records']).format()}")


if __name__ == "__main__":
    main()
