"""Frozen modal encoders -> one ME vector per catalogue item (Beam, RunInference).

    python -m beam_jobs.embed_items --work WORK [--min_batch_size 16 --max_batch_size 256]
        [Beam pipeline options, e.g. --runner DataflowRunner --project P --region R
         --temp_location gs://... --setup_file ./setup.py]

Reads WORK/items/ and the SavedModels in WORK/encoders/{text,image}/ (``ppm train-encoders``)
and writes WORK/item_vectors/part-*.tfrecord.gz (``features.ITEM_VECTOR_FEATURES``: item_id,
text_vec, image_vec, has_image, ppm_item_vec = [text_vec ; image_vec]) and
WORK/item_vectors/metadata.json (text_dim, image_dim, item_dim, counts, the encoders'
descriptions). Items without a (decodable) image get image_vec = zeros and has_image = 0.
Flags not listed here go to Beam. The job is ``ppm_tf.caching.item_vectors.run_embed_items``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from ppm_tf.beam_runner import pipeline_options
from ppm_tf.caching.item_vectors import EmbedItemsSettings, run_embed_items


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppm embed-items", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="work directory (local or gs://)")
    parser.add_argument("--min_batch_size", type=int, default=16,
                        help="smallest batch RunInference sends to an encoder")
    parser.add_argument("--max_batch_size", type=int, default=256,
                        help="largest batch RunInference sends to an encoder")
    return parser


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the job and returns metadata.json's content."""
    args, beam_args = build_parser().parse_known_args(argv)
    settings = EmbedItemsSettings(work=args.work, min_batch_size=args.min_batch_size,
                                  max_batch_size=args.max_batch_size)
    return run_embed_items(settings, pipeline_options(beam_args))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    summary = run(sys.argv[1:])
    print({key: summary[key] for key in ("items", "items_with_image", "text_dim", "image_dim",
                                         "item_dim")})
