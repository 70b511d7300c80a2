"""Raw logs -> validated, leak-free, time-split TFRecords.

    python -m beam_jobs.preprocess --data DIR --out WORK [--train_days 7 --eval_days 7
        --max_seq_len 20 --min_count 2 ...] [Beam pipeline options]

Flags not listed below go to Beam (``--runner``, ``--project``, ``--temp_location``, ...).
"""
from __future__ import annotations

import argparse
import logging
import sys

from ppm_tf.beam_runner import pipeline_options
from ppm_tf.data import schema
from ppm_tf.preprocessing.pipeline import PreprocessSettings, run_preprocess


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppm preprocess", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True, help="raw data directory (local or gs://)")
    parser.add_argument("--out", "--work", dest="work", required=True, help="work directory")
    parser.add_argument("--train_days", type=int,
                        help="recent-window length in days (default: world.json's split, else 7)")
    parser.add_argument("--eval_days", type=int,
                        help="evaluation days after the window (default: world.json, else 7)")
    parser.add_argument("--valid_days", type=int,
                        help="last days of the recent window held out as the valid split "
                             "(early stopping, model selection; default: world.json's valid "
                             "split, else 1)")
    parser.add_argument("--max_seq_len", type=int, default=20,
                        help="behaviour sequence length L")
    parser.add_argument("--count_lookback_days", type=int, default=7,
                        help="the recent window of the as-of count features, in days")
    parser.add_argument("--min_count", type=int, default=2,
                        help="occurrences for a token to enter its vocabulary")
    parser.add_argument("--oov_buckets", type=int, default=64,
                        help="hash buckets the models use for out-of-vocabulary ids")
    parser.add_argument("--max_events_per_user", type=int, default=50_000,
                        help="users with more events are dead-lettered (bots, crawlers)")
    parser.add_argument("--as_of", type=int,
                        help="export time of the logs (epoch seconds): later timestamps are "
                             "rejected as future (default: world.json's end, else now)")
    parser.add_argument("--image_root", dest="image_roots", action="append", default=[],
                        metavar="DIR",
                        help="a folder (local or gs://) outside --data where item images may "
                             "also lie; repeatable. Images anywhere else are dead-lettered")
    parser.add_argument("--max_record_bytes", type=int, default=schema.DEFAULT_MAX_RECORD_BYTES,
                        help="longer JSON lines are dead-lettered unparsed (default %(default)s)")
    parser.add_argument("--max_image_bytes", type=int, default=schema.DEFAULT_MAX_IMAGE_BYTES,
                        help="larger image files are dead-lettered unread (default %(default)s)")
    parser.add_argument("--max_image_pixels", type=int, default=schema.DEFAULT_MAX_IMAGE_PIXELS,
                        help="images with more pixels (by their header) are dead-lettered "
                             "undecoded (default %(default)s)")
    return parser


def run(argv: list[str] | None = None) -> dict:
    args, beam_args = build_parser().parse_known_args(argv)
    settings = PreprocessSettings(
        data=args.data, work=args.work, train_days=args.train_days, eval_days=args.eval_days,
        valid_days=args.valid_days,
        max_seq_len=args.max_seq_len, count_lookback_days=args.count_lookback_days,
        min_count=args.min_count, oov_buckets=args.oov_buckets,
        max_events_per_user=args.max_events_per_user, as_of=args.as_of,
        image_roots=tuple(args.image_roots), max_record_bytes=args.max_record_bytes,
        max_image_bytes=args.max_image_bytes, max_image_pixels=args.max_image_pixels)
    return run_preprocess(settings, pipeline_options(beam_args))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    stats = run(sys.argv[1:])
    print({split: counts["examples"] for split, counts in stats["splits"].items()})
