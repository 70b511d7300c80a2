"""Quality of the modal encoders against their baselines, on a preprocessed work directory.

    python benchmarks/encoders_quality.py --work WORK [--preset demo] [--seed 0]
        [--epochs N] [--report_only]

Trains both encoders with ``train_encoders`` (writing WORK/encoders/), then prints
query -> item Recall@10 / MRR on held-out (eval-split) queries for the model, bag-of-words
TF-IDF and random ranking, and entity-prediction micro/macro F1 and AUC on held-out items for
the model and the label-frequency prior, with the issue's quality bars:
Recall@10 far above random and above TF-IDF; EP micro-F1 >= 0.9 (synthetic worlds).
``--report_only`` prints WORK/encoders/metrics.json without training.

Default WORK: /tmp/work_demo when it exists (``ppm generate --preset demo`` +
``ppm preprocess``).
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time

EP_MICRO_F1_BAR = 0.9


def quality_bars(metrics: dict) -> list[tuple[str, bool]]:
    text, image = metrics.get("text"), metrics.get("image")
    bars = []
    if text:
        model, tfidf, random = (text[name]["recall_at_10"] for name in ("model", "tfidf", "random"))
        bars.append((f"Recall@10 {model:.4f} >= 5x random ({random:.4f})", model >= 5 * random))
        bars.append((f"Recall@10 {model:.4f} > TF-IDF ({tfidf:.4f})", model > tfidf))
    if image:
        micro_f1 = image["model"]["micro_f1"]
        bars.append((f"EP micro-F1 {micro_f1:.4f} >= {EP_MICRO_F1_BAR} (the bar for synthetic "
                     "worlds, whose images draw their entities)",
                     micro_f1 >= EP_MICRO_F1_BAR))
    return bars


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="preprocessed work directory")
    parser.add_argument("--preset", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")
    parser.add_argument("--report_only", action="store_true",
                        help="print WORK/encoders/metrics.json without training")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from ppm_tf.encoders.training import format_metrics, train_encoders
    from ppm_tf.work_layout import WorkLayout, read_json

    started = time.perf_counter()
    if args.report_only:
        metrics = read_json(WorkLayout(args.work).encoders_metrics,
                            "ppm train-encoders --work WORK")
    else:
        metrics = train_encoders(args.work, args.preset, args.seed, epochs=args.epochs)
    print(format_metrics(metrics))
    for name in ("text", "image"):
        if name in metrics:
            print(f"  {name} training time {metrics[name].get('train_seconds')} s, "
                  f"epochs {metrics[name].get('epochs')}")
    for description, passed in quality_bars(metrics):
        print(f"  [{'pass' if passed else 'FAIL'}] {description}")
    print(f"  total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
