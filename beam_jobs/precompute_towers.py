"""Caches PPM's frozen user-tower outputs and item vectors into the train/eval examples.

    python -m beam_jobs.precompute_towers --work WORK [Beam pipeline options]

Needs WORK/ppm_user_tower (``ppm pretrain``) and WORK/item_vectors (``ppm embed-items``).
Writes WORK/cached/<split>/ and WORK/cached/metadata.json (written last: a complete run).
The job is ``ppm_tf.caching.user_states.run_precompute``.
"""
from __future__ import annotations

import argparse
import logging
import sys

from ppm_tf.beam_runner import pipeline_options
from ppm_tf.caching.user_states import PrecomputeSettings, run_precompute


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppm precompute", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="work directory (local or gs://)")
    return parser


def run(argv: list[str] | None = None) -> dict:
    args, beam_args = build_parser().parse_known_args(argv)
    return run_precompute(PrecomputeSettings(work=args.work), pipeline_options(beam_args))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(run(sys.argv[1:]))
