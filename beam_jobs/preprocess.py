"""Raw logs -> validated, leak-free, time-split TFRecords.

    python -m beam_jobs.preprocess --data DIR --out WORK [--train_days 7 --eval_days 7
        --max_seq_len 20 --history clicks --min_count 2 ...] [Beam pipeline options]

Beam's own pipeline options (``--runner``, ``--project``, ``--temp_location``, ...) are
accepted too; any other flag is an error.
"""
from __future__ import annotations

import logging
import sys

from apache_beam.options.pipeline_options import PipelineOptions

from ppm_tf import features
from ppm_tf.beam_runner import WorkOptions, parse_job_options
from ppm_tf.data import schema
from ppm_tf.preprocessing.pipeline import PreprocessSettings, run_preprocess


class PreprocessOptions(PipelineOptions):
    """``ppm preprocess``'s flags, as pipeline options (they show in the job's display
    data)."""

    @classmethod
    def _add_argparse_args(cls, parser):
        parser.add_argument("--data", help="raw data directory (local or gs://); required")
        parser.add_argument("--train_days", type=int,
                            help="recent-window length in days (default: world.json's split, "
                                 "else 7)")
        parser.add_argument("--eval_days", type=int,
                            help="evaluation days after the window (default: world.json, "
                                 "else 7)")
        parser.add_argument("--valid_days", type=int,
                            help="last days of the recent window held out as the valid split "
                                 "(early stopping, model selection; default: world.json's "
                                 "valid split, else 1)")
        parser.add_argument("--max_seq_len", type=int, default=20,
                            help="behaviour sequence length L")
        parser.add_argument("--history", choices=features.HISTORY_KINDS, default="clicks",
                            help="what the behaviour sequences hold: the user's clicks, or "
                                 "every impression, clicked or not, with its action type "
                                 "(default %(default)s)")
        parser.add_argument("--count_lookback_days", type=int, default=7,
                            help="the recent window of the as-of count features, in days")
        parser.add_argument("--min_count", type=int, default=2,
                            help="occurrences for a token to enter its vocabulary")
        parser.add_argument("--oov_buckets", type=int, default=64,
                            help="hash buckets the models use for out-of-vocabulary ids")
        parser.add_argument("--max_events_per_user", type=int, default=50_000,
                            help="users with more events are dead-lettered (bots, crawlers)")
        parser.add_argument("--as_of", type=int,
                            help="export time of the logs (epoch seconds): later timestamps "
                                 "are rejected as future (default: world.json's end, else now)")
        parser.add_argument("--image_root", dest="image_roots", action="append", default=[],
                            metavar="DIR",
                            help="a folder (local or gs://) outside --data where item images "
                                 "may also lie; repeatable. Images anywhere else are "
                                 "dead-lettered")
        parser.add_argument("--max_record_bytes", type=int,
                            default=schema.DEFAULT_MAX_RECORD_BYTES,
                            help="longer JSON lines are dead-lettered unparsed "
                                 "(default %(default)s)")
        parser.add_argument("--max_image_bytes", type=int,
                            default=schema.DEFAULT_MAX_IMAGE_BYTES,
                            help="larger image files are dead-lettered unread "
                                 "(default %(default)s)")
        parser.add_argument("--max_image_pixels", type=int,
                            default=schema.DEFAULT_MAX_IMAGE_PIXELS,
                            help="images with more pixels (by their header) are dead-lettered "
                                 "undecoded (default %(default)s)")


def run(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    options = parse_job_options(PreprocessOptions, argv, "ppm preprocess", __doc__,
                                required=("data", "work"))
    settings = PreprocessSettings(
        data=options.data, work=options.view_as(WorkOptions).work,
        train_days=options.train_days, eval_days=options.eval_days,
        valid_days=options.valid_days, max_seq_len=options.max_seq_len,
        history=options.history,
        count_lookback_days=options.count_lookback_days,
        min_count=options.min_count, oov_buckets=options.oov_buckets,
        max_events_per_user=options.max_events_per_user, as_of=options.as_of,
        image_roots=tuple(options.image_roots), max_record_bytes=options.max_record_bytes,
        max_image_bytes=options.max_image_bytes, max_image_pixels=options.max_image_pixels)
    return run_preprocess(settings, options)


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    stats = run(sys.argv[1:])
    print({split: counts["examples"] for split, counts in stats["splits"].items()})
