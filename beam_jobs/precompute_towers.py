"""Caches PPM's frozen user-tower outputs and item vectors into the train/eval examples.

    python -m beam_jobs.precompute_towers --work WORK [Beam pipeline options]

Needs WORK/ppm_user_tower (``ppm pretrain``) and WORK/item_vectors (``ppm embed-items``).
Writes WORK/cached/<split>/ and WORK/cached/metadata.json (written last: a complete run).
The job is ``ppm_tf.caching.user_states.run_precompute``.
"""
from __future__ import annotations

import logging
import sys

from ppm_tf.beam_runner import WorkOptions, parse_job_options
from ppm_tf.caching.user_states import PrecomputeSettings, run_precompute


def run(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_job_options(WorkOptions, argv, "ppm precompute", __doc__,
                                required=("work",))
    return run_precompute(PrecomputeSettings(work=options.work), options)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(run(sys.argv[1:]))
