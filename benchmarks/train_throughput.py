"""Training throughput of base, URM on cached inputs, and an un-cached URM, side by side.

    python benchmarks/train_throughput.py --work WORK [--preset NAME] [--steps 30]

WORK is a finished pipeline run up to ``ppm precompute`` (e.g. runs/demo/work). All three
train on the same recent-window batches for the same number of steps in one process:

- ``base``: IDRec;
- ``urm``: IDRec + plug-in head on the cached ``ppm_user_states`` / ``ppm_item_vec``;
- ``uncached``: the same URM with the cache undone: the frozen encoders embed every history
  item's and the candidate's raw title and image, and the PPM user tower runs, inside the
  training graph, as they would without precompute.

Targets: urm >= 0.7x base; uncached <= 1/5 of urm (why the design caches).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402

from benchmarks.uncached import UncachedURM  # noqa: E402
from ppm_tf.data.tfrecords import read_cached  # noqa: E402
from ppm_tf.models.config import preset  # noqa: E402
from ppm_tf.training.ablations import build_model, resolve_preset  # noqa: E402


def examples_per_second(model, batches: list, config) -> float:
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    dataset = tf.data.Dataset.from_tensor_slices(batches[0]).batch(len(batches[0]["click"]))
    model.fit(dataset.take(1), verbose=0)  # traces the graph outside the timing
    data = tf.data.Dataset.from_generator(lambda: iter(batches), output_signature={
        name: tf.TensorSpec.from_tensor(value) for name, value in batches[0].items()})
    started = time.perf_counter()
    model.fit(data, verbose=0)
    seconds = time.perf_counter() - started
    return sum(int(batch["click"].shape[0]) for batch in batches) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--preset", help="model preset (default: the one WORK was trained with)")
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    config = preset(resolve_preset(args.work, args.preset))
    batches = list(read_cached(args.work, "train", config.batch_size, shuffle=True, seed=0,
                               drop_remainder=True).take(args.steps))
    rates = {
        "base": examples_per_second(build_model("base", args.work, config), batches, config),
        "urm": examples_per_second(build_model("urm", args.work, config), batches, config),
        "uncached": examples_per_second(UncachedURM(args.work, config),
                                        batches[: max(2, args.steps // 10)], config),
    }
    for name, rate in rates.items():
        print(f"{name:<9} {rate:>10,.0f} examples/s")
    print(f"urm / base: {rates['urm'] / rates['base']:.2f}x (target >= 0.7)")
    print(f"uncached / urm: {rates['uncached'] / rates['urm']:.3f}x (target <= 0.2)")


if __name__ == "__main__":
    main()
