"""The demo's precompute and ablation rows in one process, against the same with the side
process.

    python benchmarks/demo_side_process.py --out runs/demo [--rounds 2] [--rows base urm ...]

OUT is a finished ``ppm demo`` run folder; its preset and seed are read from its
metrics.json. Each contender redoes, from the run's pre-trained PPM on, what ``ppm demo``
does there (``demo.precompute_and_train_rows``): precompute, every row of
``registry.ROWS`` (or of ``--rows``) and the exports of the served ones:

- ``in sequence``: every stage one after the other in this process (as the demo does
  without a side process);
- ``beside``: the rows that need only preprocess's outputs train, and base exports, in a
  second process while this one runs precompute and the cached rows, then exports urm.

One call is one whole section (minutes), so a round is one call; the contenders alternate
(``rounds.py``). Printed: each contender's seconds per section, median [fastest, slowest],
and beside / in sequence as a ratio of medians with its 95% interval. The run folder's rows
and base's export are rewritten by every call (the same inputs and seed each time).
"""
from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.rounds import RATIO_LEGEND, Ratio, Spread, alternate  # noqa: E402
from ppm_tf.beam_runner import pipeline_options  # noqa: E402
from ppm_tf.demo import DemoRun, precompute_and_train_rows  # noqa: E402
from ppm_tf.training.registry import EXPORTABLE, ROWS  # noqa: E402
from ppm_tf.work_layout import RunLayout  # noqa: E402


def section(out: str, preset: str, seed: int, use_side_process: bool, rows: tuple[str, ...]):
    """One call of a contender: the section redone from scratch (``force``)."""
    def call() -> None:
        run = DemoRun(out=out, preset=preset, seed=seed, force=True)
        precompute_and_train_rows(run, pipeline_options([]), use_side_process, rows)
    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="a finished `ppm demo` run folder")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rows", nargs="+", choices=list(ROWS), default=list(ROWS),
                        help="the rows redone (default: every row, as the demo trains them)")
    args = parser.parse_args()
    with open(RunLayout(args.out).metrics_json, encoding="utf-8") as handle:
        finished = json.load(handle)
    contenders = {name: section(args.out, finished["preset"], finished["seed"], beside,
                                tuple(args.rows))
                  for name, beside in (("in sequence", False), ("beside", True))}
    results = alternate(contenders, args.rounds, round_seconds=1e-9, warmup_calls=0)
    seconds = {name: [sum(one.seconds) for one in rounds] for name, rounds in results.items()}
    served = [name for name in args.rows if name in EXPORTABLE]
    print(f"\nprecompute + {len(args.rows)} rows + export of {', '.join(served)}, preset "
          f"{finished['preset']}, seed {finished['seed']}: {args.rounds} rounds, alternating")
    print("contender      seconds: median [fastest, slowest round]")
    for name, values in seconds.items():
        print(f"{name:<14} {Spread.of(values).format('.1f')}")
    print(RATIO_LEGEND)
    print(f"beside / in sequence: "
          f"{Ratio.of_medians(seconds['beside'], seconds['in sequence']).format()}")


if __name__ == "__main__":
    main()
