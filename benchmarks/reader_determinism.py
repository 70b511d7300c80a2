"""What deterministic training reads cost: the training reader with ``deterministic=True``
(the default of every fit, so a run and a resumed run read the same batches) vs ``False``.

    python benchmarks/reader_determinism.py --work WORK [--split train] [--repeats 3]

Reads the split as ``fit_on_splits`` does (shuffled with a per-epoch seed, the cached
tensors when WORK/cached exists, batch 512), both ways, alternated and repeated, and prints
examples/s for each and their ratio. The reader is all that differs: the model's step is
the same either way.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def examples_per_second(reader, work: str, split: str, deterministic: bool, seed: int) -> float:
    from ppm_tf import features

    started, examples = time.perf_counter(), 0
    for batch in reader(work, split, 512, shuffle=True, deterministic=deterministic, seed=seed):
        examples += int(batch[features.CLICK].shape[0])
    return examples / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True)
    parser.add_argument("--split", default="train")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from ppm_tf.data.tfrecords import read_cached, read_split
    from ppm_tf.work_layout import WorkLayout

    cached = os.path.exists(WorkLayout(args.work).cached_metadata)
    reader = read_cached if cached else read_split
    rates: dict[bool, list[float]] = {True: [], False: []}
    for repeat in range(args.repeats):
        for deterministic in (True, False):
            rates[deterministic].append(
                examples_per_second(reader, args.work, args.split, deterministic, repeat))
    print(f"{reader.__name__}({args.split!r}), batch 512, shuffled, {args.repeats} passes each, "
          "alternated")
    for deterministic, values in rates.items():
        print(f"  deterministic={deterministic!s:<5}  best {max(values):9,.0f} examples/s  "
              f"(all: {', '.join(f'{value:,.0f}' for value in values)})")
    print(f"  deterministic / not: {max(rates[True]) / max(rates[False]):.2f}x")


if __name__ == "__main__":
    main()
