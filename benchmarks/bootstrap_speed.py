"""Speed of the bootstrap over users: the vectorised click AUC of ``evaluation.bootstrap``
against the plain way (rebuild each resample's rows, then ``metrics.roc_auc``), side by side,
alternating and repeated, on a synthetic eval split the size of the demo world's.

    python benchmarks/bootstrap_speed.py [--rows 145930] [--users 15000] [--resamples 200]

Prints milliseconds per resample for each, their ratio, and that both give the same values.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from ppm_tf.evaluation.bootstrap import UserResamples, auc_replicates  # noqa: E402
from ppm_tf.metrics import roc_auc  # noqa: E402


def plain_replicates(draws: UserResamples, labels: np.ndarray, scores: np.ndarray,
                     ) -> np.ndarray:
    """Each resample's rows built explicitly (every drawn user's rows, once per draw)."""
    rows_of_user = np.split(np.argsort(draws.user_index, kind="stable"),
                            np.cumsum(np.bincount(draws.user_index))[:-1])
    values = []
    for counts in draws.counts:
        rows = np.concatenate([rows_of_user[user] for user in np.repeat(
            np.arange(counts.size), counts)])
        values.append(roc_auc(labels[rows], scores[rows]))
    return np.array(values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=145_930)
    parser.add_argument("--users", type=int, default=15_000)
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    users = rng.integers(0, args.users, args.rows)
    labels = rng.random(args.rows) < 0.036
    scores = rng.normal(size=args.rows) + 0.5 * labels
    everything = np.ones(args.rows, bool)
    timings: dict[str, list[float]] = {"vectorised": [], "plain": []}
    for repeat in range(args.repeats):
        draws = UserResamples.draw(users, args.resamples, seed=repeat)
        started = time.perf_counter()
        fast = auc_replicates(draws, labels, scores, everything)
        timings["vectorised"].append((time.perf_counter() - started) / args.resamples)
        started = time.perf_counter()
        slow = plain_replicates(draws, labels, scores)
        timings["plain"].append((time.perf_counter() - started) / args.resamples)
        if not np.allclose(fast, slow):
            raise SystemExit(f"the two disagree on repeat {repeat}: {fast[:3]} vs {slow[:3]}")
    print(f"click AUC per resample, {args.rows:,} rows of {args.users:,} users, "
          f"{args.resamples} resamples x {args.repeats} repeats (median ms; all equal):")
    medians = {name: float(np.median(values)) * 1000 for name, values in timings.items()}
    for name, milliseconds in medians.items():
        print(f"  {name:<11} {milliseconds:8.2f} ms")
    print(f"  vectorised is {medians['plain'] / medians['vectorised']:.1f}x faster")


if __name__ == "__main__":
    main()
