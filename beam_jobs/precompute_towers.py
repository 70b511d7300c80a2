"""Caches PPM's frozen user-tower outputs and item vectors into the train/eval examples.

    python -m beam_jobs.precompute_towers --work WORK [Beam pipeline options]

Needs WORK/ppm_user_tower (``ppm pretrain``) and WORK/item_vectors (``ppm embed-items``).
Writes WORK/cached/<split>/ and WORK/cached/metadata.json (written last: a complete run).
"""
from __future__ import annotations

import argparse
import logging
import sys

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter

from beam_jobs.runner_defaults import pipeline_options
from ppm_tf.caching.precompute import (CACHED_SPLITS, COUNTERS, build_pipeline, read_json,
                                       write_metadata)
from ppm_tf.errors import StageError
from ppm_tf.filesystem import delete_tree
from ppm_tf.training.pretrain import PRETRAINED
from ppm_tf.work_layout import WorkLayout


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ppm precompute", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="work directory (local or gs://)")
    return parser


def check_nothing_lost(result) -> None:
    """Every example read must be written with its cached tensors: fail loudly otherwise."""
    counters = result.metrics().query(MetricsFilter().with_namespace(COUNTERS))["counters"]
    totals = {counter.key.metric.name: counter.committed for counter in counters}
    for split in CACHED_SPLITS:
        read, written = totals.get(f"{split}_read"), totals.get(f"{split}_written")
        if read is not None and read != written:
            raise StageError(f"precompute lost {split} examples: read {read:,}, wrote "
                             f"{written or 0:,}; WORK/cached is incomplete and its metadata.json "
                             "was not written")


def run(argv: list[str] | None = None) -> dict:
    args, beam_args = build_parser().parse_known_args(argv)
    layout = WorkLayout(args.work)
    pretrained = read_json(layout.model_dir(PRETRAINED) + "/training.json")
    item_dim = read_json(layout.item_vectors_metadata)["item_dim"]
    max_seq_len = read_json(layout.preprocess_json)["max_seq_len"]
    delete_tree(layout.path("cached/"))  # readers glob shards: stale ones would be read
    pipeline = beam.Pipeline(options=pipeline_options(beam_args))
    build_pipeline(pipeline, args.work, item_dim, max_seq_len)
    result = pipeline.run()
    result.wait_until_finish()
    check_nothing_lost(result)
    metadata = {"max_seq_len": max_seq_len, "tower_dim": pretrained["tower_dim"],
                "item_dim": item_dim}
    write_metadata(args.work, metadata)
    return metadata


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    print(run(sys.argv[1:]))
