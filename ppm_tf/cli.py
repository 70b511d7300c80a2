"""The ``ppm`` command line: one subcommand per pipeline stage, plus ``demo`` that chains them.

The CLI parses flags, calls library functions and prints their results; the work itself lives
in the library so notebooks and pipelines call the same code.
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import sys
import time

from ppm_tf.data import raw_files
from ppm_tf.data.synthetic import PRESETS


def _generate(args: argparse.Namespace) -> None:
    from ppm_tf.data.synthetic import format_summary, generate_world, preset

    started = time.perf_counter()
    summary = generate_world(preset(args.preset), args.seed, args.out, args.preset)
    print(format_summary(summary))
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
    print(f"  written to {args.out} in {time.perf_counter() - started:.1f} s "
          f"(peak memory {peak_gib:.2f} GiB)")


def _import_movielens(args: argparse.Namespace) -> None:
    from ppm_tf.data.movielens import format_summary, import_movielens

    started = time.perf_counter()
    print(format_summary(import_movielens(args.src, args.out)))
    print(f"  written to {args.out} in {time.perf_counter() - started:.1f} s")


def _demo(args: argparse.Namespace) -> None:
    """The main job. So far: generate the synthetic world (or use --data) and summarise it."""
    data_dir = args.data or os.path.join(args.out, "data")
    if args.data is None:
        if _is_generated(data_dir, args.preset, args.seed) and not args.force:
            print(f"[generate] {data_dir} is up to date (preset={args.preset} seed={args.seed}); "
                  "skipped (--force redoes it)")
        else:
            print(f"[generate] preset={args.preset} seed={args.seed} -> {data_dir}")
            _generate(argparse.Namespace(preset=args.preset, seed=args.seed, out=data_dir))
    world = raw_files.read_world(data_dir)
    print(f"[data] {data_dir}: source={world['source']} sizes={world['sizes']}")


def _is_generated(data_dir: str, preset_name: str, seed: int) -> bool:
    try:
        world = raw_files.read_world(data_dir)
    except FileNotFoundError:
        return False
    return world.get("preset") == preset_name and world.get("seed") == seed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppm", description="PPM-TF: the Pre-trained Plug-in Model for CTR prediction.")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate a synthetic e-commerce world")
    generate.add_argument("--preset", choices=sorted(PRESETS), default="demo")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--out", required=True, help="raw data directory to write")
    generate.set_defaults(handler=_generate)

    movielens = commands.add_parser("import-movielens",
                                    help="convert MovieLens latest-small to the raw contract")
    movielens.add_argument("--src", required=True, help="the ml-latest-small directory")
    movielens.add_argument("--out", required=True, help="raw data directory to write")
    movielens.set_defaults(handler=_import_movielens)

    demo = commands.add_parser("demo", help="run the whole pipeline on the synthetic world")
    demo.add_argument("--preset", choices=["tiny", "demo"], default="demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default=os.path.join("runs", "demo"), help="run directory")
    demo.add_argument("--data", help="use this raw data directory instead of generating one")
    demo.add_argument("--force", action="store_true", help="redo stages that are up to date")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError) as error:
        print(f"ppm {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
