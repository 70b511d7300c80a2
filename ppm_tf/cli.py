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

from ppm_tf.data.synthetic import PRESETS as WORLD_PRESETS
from ppm_tf.demo import DEMO_PRESETS
from ppm_tf.distribute import STRATEGIES
from ppm_tf.encoders.presets import PRESETS as ENCODER_PRESETS
from ppm_tf.errors import StageError
from ppm_tf.models.config import PRESETS as MODEL_PRESETS
from ppm_tf.training.registry import EXPORTABLE, MODELS
from ppm_tf.work_layout import WorkLayout


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


def _preprocess(args: argparse.Namespace) -> None:
    from beam_jobs.preprocess import run
    from ppm_tf.preprocessing.pipeline import format_stats

    started = time.perf_counter()
    stats = run(args.job_args)
    print(format_stats(stats))
    print(f"  done in {time.perf_counter() - started:.1f} s")


def _train_encoders(args: argparse.Namespace) -> None:
    from ppm_tf.distribute import make_strategy

    strategy = make_strategy(args.strategy, args.collective_timeout)  # before any other op
    from ppm_tf.encoders.training import format_metrics, train_encoders

    metrics = train_encoders(args.work, args.preset, args.seed, args.bert_checkpoint,
                             args.imagenet_weights, epochs=args.epochs, strategy=strategy,
                             save_every_steps=args.save_every_steps)
    if not metrics.get("written", True):
        print("train-encoders: worker done; the chief wrote the outputs")
        return
    print(format_metrics(metrics))


def _embed_items(args: argparse.Namespace) -> None:
    from beam_jobs.embed_items import run

    metadata = run(args.job_args)
    print("item vectors: " + ", ".join(f"{key} {metadata[key]}" for key in (
        "items", "items_with_image", "text_dim", "image_dim", "item_dim") if key in metadata))


def _overrides(args: argparse.Namespace) -> dict:
    return {"save_every_steps": args.save_every_steps} if args.save_every_steps else {}


def _pretrain(args: argparse.Namespace) -> None:
    from ppm_tf.distribute import make_strategy

    strategy = make_strategy(args.strategy, args.collective_timeout)  # before any other op
    from ppm_tf.training.pretrain import pretrain_ppm

    summary = pretrain_ppm(args.work, args.preset, args.seed, args.epochs, strategy=strategy,
                           overrides=_overrides(args))
    if not summary.get("written", True):
        print("pretrain: worker done; the chief wrote the outputs")
        return
    print(f"pretrained PPM on the long span: {summary['trainable_params']:,} trainable "
          f"parameters ({summary['user_tower_params']:,} user tower, "
          f"{summary['head_params']:,} plug-in head), {summary['train_seconds']:.1f} s; "
          f"user tower exported to {args.work}/ppm_user_tower")


def _precompute(args: argparse.Namespace) -> None:
    from beam_jobs.precompute_towers import run

    print(f"cached PPM tensors: {run(args.job_args)}")


def _train(args: argparse.Namespace) -> None:
    from ppm_tf.distribute import make_strategy

    strategy = make_strategy(args.strategy, args.collective_timeout)  # before any other op
    from ppm_tf.training.ablations import train_ablation

    for name in MODELS if args.model == "all" else [args.model]:
        summary = train_ablation(args.work, name, args.preset, args.seed, args.epochs,
                                 strategy=strategy, overrides=_overrides(args))
        if not summary.get("written", True):
            print(f"trained {name} as a worker; the chief wrote the outputs")
            continue
        print(f"trained {name}: {summary['trainable_params']:,} trainable parameters, "
              f"{summary['train_examples']:,} examples in {summary['train_seconds']:.1f} s "
              f"({summary['examples_per_second']:,.0f} examples/s)")


def _evaluate(args: argparse.Namespace) -> None:
    from ppm_tf.evaluation.evaluate import evaluate
    from ppm_tf.evaluation.report import results_table, write_report

    metrics = evaluate(args.work)
    print(results_table(metrics))
    print(f"report: {write_report(metrics, WorkLayout(args.work).eval_dir)}")


def _export(args: argparse.Namespace) -> None:
    from ppm_tf.export.publish import export_model

    base_path = args.base_path or os.path.join("saved_models", args.model)
    result = export_model(args.work, args.model, base_path, args.min_auc)
    print(f"exported {args.model} version {result['version']} to {result['path']} "
          f"(validation click AUC {result['validation_click_auc']:.4f} on "
          f"{result['validation_examples']:,} eval examples)")


def _serve(args: argparse.Namespace) -> None:
    from ppm_tf.serving.server import main as serve

    logging.getLogger("ppm_tf.serving").setLevel(logging.INFO)  # the server's start-up lines
    raise SystemExit(serve(args.job_args))


def _demo(args: argparse.Namespace) -> None:
    from ppm_tf.demo import DemoRun, run_demo

    run_demo(DemoRun(out=args.out, preset=args.preset, seed=args.seed, data=args.data,
                     force=args.force))


def _add_distribution_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategy", choices=STRATEGIES, default="default",
                        help="tf.distribute strategy: one process, all local GPUs, or several "
                             "workers described by TF_CONFIG (default: %(default)s)")
    parser.add_argument("--save-every-steps", "--save_every_steps", dest="save_every_steps",
                        type=int, help="also back up every N steps, not only at epoch ends")
    parser.add_argument("--collective-timeout", "--collective_timeout",
                        dest="collective_timeout", type=float, default=300.0,
                        help="multi_worker: seconds a worker waits for a lost peer before it "
                             "fails, so the restarted cluster resumes (default %(default)s)")


def _add_training_flags(parser: argparse.ArgumentParser, presets, default: str | None) -> None:
    parser.add_argument("--work", required=True, help="work directory")
    parser.add_argument(
        "--preset", choices=sorted(presets), default=default,
        help=f"sizes and training settings (default: {default})" if default else
        "sizes and training settings (default: the preset the work dir's encoders or "
        "pre-training ran with)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--epochs", type=int, help="override the preset's epochs")


def _add_pass_through(commands, name: str, handler, help_text: str) -> None:
    """A command whose flags all go to the job it runs (a Beam job or the server), which
    parses them, ``--help`` included."""
    command = commands.add_parser(name, add_help=False, help=help_text)
    command.set_defaults(handler=handler, passes_flags_through=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ppm", description="PPM-TF: the Pre-trained Plug-in Model for CTR prediction.")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate a synthetic e-commerce world")
    generate.add_argument("--preset", choices=sorted(WORLD_PRESETS), default="demo")
    generate.add_argument("--seed", type=int, default=0)
    generate.add_argument("--out", required=True, help="raw data directory to write")
    generate.set_defaults(handler=_generate)

    movielens = commands.add_parser("import-movielens",
                                    help="convert MovieLens latest-small to the raw contract")
    movielens.add_argument("--src", required=True, help="the ml-latest-small directory")
    movielens.add_argument("--out", required=True, help="raw data directory to write")
    movielens.set_defaults(handler=_import_movielens)

    _add_pass_through(commands, "preprocess", _preprocess,
                      "raw data -> validated, time-split TFRecords (Beam; --help: flags)")

    encoders = commands.add_parser(
        "train-encoders", help="fit and export the modal encoders (query matching, entities)")
    _add_training_flags(encoders, ENCODER_PRESETS, "demo")
    encoders.add_argument("--bert-checkpoint", "--bert_checkpoint", dest="bert_checkpoint",
                          help="local pre-trained BERT directory (paper preset)")
    encoders.add_argument("--imagenet-weights", "--imagenet_weights", dest="imagenet_weights",
                          help="local ImageNet ResNet weights file (paper preset)")
    _add_distribution_flags(encoders)
    encoders.set_defaults(handler=_train_encoders)

    _add_pass_through(commands, "embed-items", _embed_items,
                      "the frozen encoders over the catalogue (Beam RunInference; --help: flags)")

    pretrain = commands.add_parser("pretrain", help="pre-train PPM on the long span")
    _add_training_flags(pretrain, MODEL_PRESETS, None)
    _add_distribution_flags(pretrain)
    pretrain.set_defaults(handler=_pretrain)

    _add_pass_through(commands, "precompute", _precompute,
                      "cache PPM's user-tower outputs into the examples (Beam; --help: flags)")

    train = commands.add_parser("train", help="train an ablation model on the recent window")
    _add_training_flags(train, MODEL_PRESETS, None)
    _add_distribution_flags(train)
    train.add_argument("--model", required=True, choices=[*MODELS, "all"],
                       help="an ablation row, or all of them")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="the paper's table from eval predictions")
    evaluate.add_argument("--work", required=True)
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser("export", help="export a trained model for TF Serving")
    export.add_argument("--work", required=True)
    export.add_argument("--model", required=True, choices=list(EXPORTABLE))
    export.add_argument("--base-path", "--base_path", dest="base_path",
                        help="TF Serving base path (default saved_models/<model>)")
    export.add_argument("--min-auc", "--min_auc", dest="min_auc", type=float,
                        help="refuse to publish below this click AUC on a validation slice")
    export.set_defaults(handler=_export)

    _add_pass_through(commands, "serve", _serve,
                      "local TF-Serving-compatible server (TF Serving's flags; --help: flags)")

    demo = commands.add_parser(
        "demo", help="the whole pipeline on the synthetic world, to the results table")
    demo.add_argument("--preset", choices=list(DEMO_PRESETS), default="demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default=os.path.join("runs", "demo"), help="run directory")
    demo.add_argument("--data", help="use this raw data directory instead of generating one")
    demo.add_argument("--force", action="store_true", help="redo stages that are up to date")
    demo.set_defaults(handler=_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up notices (CPU features, CUDA absent) are noise in a CLI; Beam's
    # worker processes inherit the setting.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    # Beam jobs take their own flags plus any Beam pipeline option: those pass through.
    args, job_args = parser.parse_known_args(argv)
    if job_args and not getattr(args, "passes_flags_through", False):
        parser.error(f"unrecognized arguments: {' '.join(job_args)}")
    args.job_args = job_args
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, StageError) as error:
        print(f"ppm {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
