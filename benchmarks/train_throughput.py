"""Training throughput of base, URM on cached inputs, and an un-cached URM, side by side.

    python benchmarks/train_throughput.py --work WORK [--preset NAME] [--rounds 10]
        [--round-seconds 3] [--batches 30]

WORK is a finished pipeline run up to ``ppm precompute`` (e.g. runs/demo/work). The
contenders train in one process on the same ``--batches`` recent-window batches, held in
memory and cycled (the model's cost, not the input pipeline's), taking turns in alternating
rounds of at least ``--round-seconds`` each (``rounds.py``):

- ``base``: IDRec;
- ``urm``: IDRec + plug-in head on the cached ``ppm_user_states`` / ``ppm_item_vec``;
- ``uncached``: the same URM with the cache undone: the frozen encoders embed every history
  item's and the candidate's raw title and image, and the PPM user tower runs, inside the
  training graph, as they would without precompute.

Each model's examples/s is printed as its median over rounds [slowest, fastest round], and
each ratio as the ratio of medians with a 95% interval over paired rounds.
Targets: urm >= 0.7x base; uncached <= 1/5 of urm (why the design caches).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from benchmarks.rounds import RATIO_LEGEND, Ratio, Spread, alternate  # noqa: E402
from benchmarks.uncached import UncachedURM  # noqa: E402
from ppm_tf.data.tfrecords import read_cached  # noqa: E402
from ppm_tf.models.config import preset  # noqa: E402
from ppm_tf.training.ablations import build_model, resolve_preset  # noqa: E402


def training_step(model: tf.keras.Model, batches: tf.data.Dataset, learning_rate: float):
    """One optimizer step of ``model`` per call, as ``fit`` runs it (Keras' compiled train
    function), on the next in-memory batch."""
    model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate))
    step = model.make_train_function()
    iterator = iter(batches)

    def call() -> None:
        float(step(iterator)["loss"])  # waits for the step to finish

    return call


def in_memory_batches(work: str, batch_size: int, count: int) -> tf.data.Dataset:
    """``count`` shuffled training batches of the cached examples, read once and cycled."""
    batches = list(read_cached(work, "train", batch_size, shuffle=True, seed=0,
                               drop_remainder=True).take(count))
    if not batches:
        raise ValueError(f"no full batch of {batch_size} in {work}'s train split")
    return cycled(batches)


def cycled(batches: list[dict[str, tf.Tensor]]) -> tf.data.Dataset:
    """The batches, held in memory, repeated forever."""
    stacked = {name: tf.stack([batch[name] for batch in batches]) for name in batches[0]}
    return tf.data.Dataset.from_tensor_slices(stacked).repeat().prefetch(2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--preset", help="model preset (default: the one WORK was trained with)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--round-seconds", type=float, default=3.0,
                        help="each contender's least time per round")
    parser.add_argument("--batches", type=int, default=30, help="distinct batches, cycled")
    args = parser.parse_args()
    preset_name = resolve_preset(args.work, args.preset)
    config = preset(preset_name)
    batches = in_memory_batches(args.work, config.batch_size, args.batches)
    contenders = {
        "base": training_step(build_model("base", args.work, config), batches,
                              config.learning_rate),
        "urm": training_step(build_model("urm", args.work, config), batches,
                             config.learning_rate),
        "uncached": training_step(UncachedURM(args.work, config), batches,
                                  config.learning_rate),
    }
    results = alternate(contenders, args.rounds, args.round_seconds,
                        units_per_call=dict.fromkeys(contenders, config.batch_size))
    rates = {name: [one.units_per_second for one in rounds] for name, rounds in results.items()}
    print(f"training throughput, preset {preset_name}, batch {config.batch_size}: "
          f"{args.rounds} rounds of >= {args.round_seconds:g} s per model, alternating")
    print("model      examples/s: median [slowest, fastest round]   steps")
    for name, values in rates.items():
        steps = sum(len(one.seconds) for one in results[name])
        print(f"{name:<10} {Spread.of(values).format(',.0f'):<40} {steps:>6}")
    print(RATIO_LEGEND)
    print(f"urm / base: {Ratio.of_medians(rates['urm'], rates['base']).format()} "
          "(target >= 0.7)")
    print(f"uncached / urm: {Ratio.of_medians(rates['uncached'], rates['urm']).format(3)} "
          "(target <= 0.2)")


if __name__ == "__main__":
    main()
