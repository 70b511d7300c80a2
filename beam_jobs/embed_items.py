"""Frozen modal encoders -> one ME vector per catalogue item (Beam, RunInference).

    python -m beam_jobs.embed_items --work WORK [--min_batch_size 16 --max_batch_size 256]
        [Beam pipeline options, e.g. --runner DataflowRunner --project P --region R
         --temp_location gs://... --setup_file ./setup.py]

Reads WORK/items/ and the SavedModels in WORK/encoders/{text,image}/ (``ppm train-encoders``)
and writes WORK/item_vectors/part-*.tfrecord.gz (``features.ITEM_VECTOR_FEATURES``: item_id,
text_vec, image_vec, has_image, ppm_item_vec = [text_vec ; image_vec]) and
WORK/item_vectors/metadata.json (text_dim, image_dim, item_dim, counts, the encoders'
descriptions). Items without a (decodable) image get image_vec = zeros and has_image = 0.
Flags not listed here go to Beam.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_jobs.runner_defaults import pipeline_options
from ppm_tf.encoders.export import ENCODER_JSON, IMAGE, TEXT
from ppm_tf.encoders.item_vectors import EmbedItems, WriteItemVectors
from ppm_tf.work_layout import WorkLayout


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


def _read_json(path: str) -> dict[str, Any]:
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path} not found: run `ppm train-encoders --work WORK` first")
    with FileSystems.open(path) as handle:
        return json.loads(handle.read())


def encoder_descriptions(layout: WorkLayout) -> dict[str, dict[str, Any]]:
    """The ``encoder.json`` of both exports (their presence means complete exports)."""
    return {kind: _read_json(layout.path("encoders", kind, ENCODER_JSON))
            for kind in (TEXT, IMAGE)}


def clear_outputs(layout: WorkLayout) -> None:
    """Removes an earlier run's shards: readers glob them, so stale ones would be read."""
    stale = [metadata.path
             for result in FileSystems.match([layout.item_vectors_pattern,
                                              layout.item_vectors_metadata])
             for metadata in result.metadata_list]
    if stale:
        FileSystems.delete(stale)


def run(argv: list[str] | None = None) -> dict[str, Any]:
    """Runs the job and returns metadata.json's content."""
    args, beam_args = build_parser().parse_known_args(argv)
    if not 1 <= args.min_batch_size <= args.max_batch_size:
        raise ValueError(f"need 1 <= --min_batch_size ({args.min_batch_size}) <= "
                         f"--max_batch_size ({args.max_batch_size})")
    layout = WorkLayout(args.work)
    descriptions = encoder_descriptions(layout)
    if not FileSystems.match([layout.items_pattern])[0].metadata_list:
        raise FileNotFoundError(f"no catalogue shard matches {layout.items_pattern}: run "
                                "`ppm preprocess` first")
    text_dim = descriptions[TEXT]["output_dim"]
    image_dim = descriptions[IMAGE]["output_dim"]
    metadata = {"text_dim": text_dim, "image_dim": image_dim, "item_dim": text_dim + image_dim,
                "image_fallback": "zeros with has_image 0 (no image, or one that does not "
                                  "decode)",
                "encoders": descriptions}
    clear_outputs(layout)
    with beam.Pipeline(options=pipeline_options(beam_args)) as pipeline:
        _ = (pipeline
             | "ReadItems" >> beam.io.ReadFromTFRecord(
                 layout.items_pattern,
                 compression_type=beam.io.filesystem.CompressionTypes.GZIP)
             | "EmbedItems" >> EmbedItems(
                 layout.path("encoders", TEXT), layout.path("encoders", IMAGE), image_dim,
                 args.min_batch_size, args.max_batch_size)
             | "WriteItemVectors" >> WriteItemVectors(
                 layout.item_vectors_prefix, layout.item_vectors_metadata, metadata))
    return _read_json(layout.item_vectors_metadata)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    summary = run(sys.argv[1:])
    print({key: summary[key] for key in ("items", "items_with_image", "text_dim", "image_dim",
                                         "item_dim")})
