"""Frozen modal encoders -> one ME vector per catalogue item (Beam, RunInference).

    python -m beam_jobs.embed_items --work WORK [--batch_size 256]
        [Beam pipeline options, e.g. --runner DataflowRunner --project P --region R
         --temp_location gs://... --setup_file ./setup.py]

Reads WORK/items/ and the SavedModels in WORK/encoders/{text,image}/ (``ppm train-encoders``)
and writes WORK/item_vectors/part-*.tfrecord.gz (``features.ITEM_VECTOR_FEATURES``: item_id,
text_vec, image_vec, has_image, ppm_item_vec = [text_vec ; image_vec]) and
WORK/item_vectors/metadata.json (text_dim, image_dim, item_dim, counts, the encoders'
descriptions). Items without a (decodable) image get image_vec = zeros and has_image = 0.
The job is ``ppm_tf.caching.item_vectors.run_embed_items``.
"""
from __future__ import annotations

import logging
import sys
from typing import Any

from apache_beam.options.pipeline_options import PipelineOptions

from ppm_tf.beam_runner import WorkOptions, parse_job_options
from ppm_tf.caching.item_vectors import EmbedItemsSettings, run_embed_items


class EmbedItemsOptions(PipelineOptions):
    """``ppm embed-items``'s flags, as pipeline options (they show in the job's display
    data)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--batch_size", type=int, default=256,
                            help="items per encoder call; a bundle's last, shorter batch is "
                                 "padded, so every item's vector is the same on every run")


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the job and returns metadata.json's content."""
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_job_options(EmbedItemsOptions, argv, "ppm embed-items", __doc__,
                                required=("work",))
    settings = EmbedItemsSettings(work=options.view_as(WorkOptions).work,
                                  batch_size=options.batch_size)
    return run_embed_items(settings, options)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    summary = run(sys.argv[1:])
    print({key: summary[key] for key in ("items", "items_with_image", "text_dim", "image_dim",
                                         "item_dim")})
