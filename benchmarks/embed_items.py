"""Item-embedding throughput: the Beam job (batched RunInference) vs one item at a time.

    python benchmarks/embed_items.py --work WORK [--loop_items 500] [--batch_size 256]

WORK must hold trained encoders (``ppm train-encoders``). Prints items/s of
``beam_jobs.embed_items`` over the whole catalogue (wall clock, pipeline start-up included,
DirectRunner on all cores unless Beam options say otherwise) and of a Python loop that calls
both frozen encoders once per item (on the first ``--loop_items`` items, same SavedModels,
same process), and their ratio.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time



def loop_items_per_second(work: str, limit: int) -> tuple[float, int]:
    import tensorflow as tf

    from ppm_tf import features
    from ppm_tf.data.tfrecords import read_items
    from ppm_tf.encoders.export import IMAGE, SERVING, TEXT, load_encoder
    from ppm_tf.work_layout import WorkLayout

    layout = WorkLayout(work)
    text = load_encoder(layout.encoder_dir(TEXT)).signatures[SERVING]
    image = load_encoder(layout.encoder_dir(IMAGE)).signatures[SERVING]
    items = []
    for batch in read_items(work, 256, deterministic=True,
                            features=[features.TITLE, features.IMAGE, features.HAS_IMAGE]):
        items.extend(zip(batch[features.TITLE].numpy(), batch[features.IMAGE].numpy(),
                         batch[features.HAS_IMAGE].numpy()))
        if len(items) >= limit:
            break
    items = items[:limit]
    text(titles=tf.constant([items[0][0]]))  # warm-up: first calls build the graphs
    image(images=tf.constant([items[0][1]]))
    started = time.perf_counter()
    for title, encoded, has_image in items:
        text(titles=tf.constant([title]))
        if has_image:
            image(images=tf.constant([encoded]))
    return len(items) / (time.perf_counter() - started), len(items)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", required=True, help="work directory with trained encoders")
    parser.add_argument("--loop_items", type=int, default=500)
    parser.add_argument("--batch_size", type=int, default=256)
    args, beam_args = parser.parse_known_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    from beam_jobs.embed_items import run
    from ppm_tf.work_layout import WorkLayout

    # The job writes WORK/item_vectors/; benchmark into a scratch work dir that links the
    # inputs, so a real WORK's vectors stay untouched.
    scratch = tempfile.mkdtemp(prefix="embed_bench_")
    layout = WorkLayout(args.work)
    for path in (os.path.dirname(layout.items_prefix), layout.encoders_dir,
                 layout.preprocess_json):
        os.symlink(os.path.abspath(path),
                   os.path.join(scratch, os.path.relpath(path, layout.root)))
    started = time.perf_counter()
    summary = run(["--work", scratch, "--batch_size", str(args.batch_size),
                   *beam_args])
    beam_seconds = time.perf_counter() - started
    beam_rate = summary["items"] / beam_seconds
    loop_rate, looped = loop_items_per_second(args.work, args.loop_items)
    print(f"items {summary['items']:,} (with image {summary['items_with_image']:,}), "
          f"item_dim {summary['item_dim']}")
    print(f"  Beam RunInference (batches of {args.batch_size}): {beam_rate:8.1f} items/s "
          f"({beam_seconds:.1f} s incl. start-up)")
    print(f"  one item at a time ({looped} items):     {loop_rate:8.1f} items/s")
    print(f"  ratio: {beam_rate / loop_rate:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
