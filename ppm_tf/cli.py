"""The ``ppm`` command line: one subcommand per pipeline stage, plus ``demo`` that chains them.

The CLI parses flags, calls library functions and prints their results; the work itself lives
in the library so notebooks and pipelines call the same code.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import resource
import sys
import tempfile
import time
import warnings

from ppm_tf.ab import CLIENTS as AB_CLIENTS, DEFAULT_ARMS as AB_ARMS
from ppm_tf.data.synthetic import PRESETS as WORLD_PRESETS
from ppm_tf.demo import DEMO_PRESETS
from ppm_tf.distribute import STRATEGIES
from ppm_tf.encoders.presets import AUTO, PRESETS as ENCODER_PRESETS, TEXT_OBJECTIVES
from ppm_tf.errors import StageError
from ppm_tf.evaluation.bootstrap import DEFAULT_RESAMPLES
from ppm_tf.models.config import (AUTO as AUTO_REQUEST_GROUP, PRESETS as MODEL_PRESETS,
                                  RANKING_LOSSES, parse_override)
from ppm_tf.training.registry import EXPORTABLE, MODELS
from ppm_tf.work_layout import AB_RESULTS, SAVED_MODELS, WorkLayout


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
                             save_every_steps=args.save_every_steps,
                             text_objective=args.text_objective)
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
    """The preset fields a training command's flags and ``--set`` replace (recorded in
    training.json); a field given both ways is refused."""
    flags = {"save_every_steps": args.save_every_steps, "ranking_loss": args.ranking_loss,
             "ranking_loss_weight": args.ranking_loss_weight,
             "history_actions": getattr(args, "history_actions", None),
             "tower_item_counts": getattr(args, "tower_item_counts", None),
             "pretrain_request_group": getattr(args, "pretrain_request_group", None)}
    flags = {field: value for field, value in flags.items() if value is not None}
    settings = dict(args.settings or [])
    # --epochs reaches the command as its epoch budget, not as an override.
    budget = "train_epochs" if args.command == "train" else "pretrain_epochs"
    given = set(flags) | ({budget} if args.epochs is not None else set())
    if both := sorted(given & set(settings)):
        raise ValueError(f"{', '.join(both)}: given by its own flag and by --set; use one")
    return {**settings, **flags}


def _setting(text: str) -> tuple[str, object]:
    try:
        return parse_override(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _request_group(value: str) -> int | str:
    if value == AUTO_REQUEST_GROUP:
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected {AUTO_REQUEST_GROUP!r} or a number, got {value!r}") from None


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
          f"user tower exported to {WorkLayout(args.work).user_tower_dir}")


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
    from ppm_tf.evaluation.report import summary_tables, write_report

    metrics = evaluate(args.work, args.bootstrap_resamples, args.bootstrap_seed)
    print(summary_tables(metrics))
    print(f"report: {write_report(metrics, WorkLayout(args.work).eval_dir)}")


def _export(args: argparse.Namespace) -> None:
    from ppm_tf.export.publish import export_model

    base_path = args.base_path or os.path.join(SAVED_MODELS, args.model)
    result = export_model(args.work, args.model, base_path, args.min_auc)
    print(f"exported {args.model} version {result['version']} to {result['path']} "
          f"(validation click AUC {result['validation_click_auc']:.4f} on "
          f"{result['validation_examples']:,} eval examples)")


def _serve(args: argparse.Namespace) -> None:
    from ppm_tf.serving.server import main as serve

    logging.getLogger("ppm_tf.serving").setLevel(logging.INFO)  # the server's start-up lines
    raise SystemExit(serve(args.job_args))


def _ab(args: argparse.Namespace) -> None:
    from ppm_tf.ab.experiment import AbSettings, run_ab
    from ppm_tf.ab.table import ab_table_lines

    settings = AbSettings(
        work=args.work, data=args.data, saved_models=args.saved_models,
        arms=tuple(arm.strip() for arm in args.arms.split(",") if arm.strip()),
        control=args.control, days=args.days, pool=args.pool, slots=args.slots,
        transport=args.transport, clients=args.clients, seed=args.seed,
        resamples=args.resamples, out=args.out,
        **({"serving_dir": args.serving_dir} if args.serving_dir else {}))
    print("\n".join(ab_table_lines(run_ab(settings))))
    print(f"results: {os.path.join(settings.out_dir, AB_RESULTS)}")


def _demo(args: argparse.Namespace) -> None:
    from ppm_tf.demo import DemoRun, run_demo

    run_demo(DemoRun(out=args.out, preset=args.preset, seed=args.seed, data=args.data,
                     force=args.force, process_setup=_quiet_process_start))


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


def _add_setting_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--set", dest="settings", action="append", type=_setting,
                        metavar="FIELD=VALUE",
                        help="replace a field of the model preset for this run, e.g. "
                             "learning_rate=0.01 or count_offset=true (repeatable; recorded in "
                             "training.json); README: Settings for your own data")


def _add_ranking_loss_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ranking-loss", "--ranking_loss", dest="ranking_loss",
                        choices=RANKING_LOSSES, help="in-request click ranking loss added to "
                        "the BCE (default: the preset's, none); README: In-request ranking loss")
    parser.add_argument("--ranking-loss-weight", "--ranking_loss_weight",
                        dest="ranking_loss_weight", type=float,
                        help="its weight against the BCE (default: the preset's, 1.0)")


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
        prog="ppm", description="PPM-TF: the Pre-trained Plug-in Model for CTR prediction. "
        "The commands are the pipeline's stages, in the order they run; `ppm demo` runs them "
        "all.", epilog="`ppm COMMAND --help` lists a command's flags.")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="Python logging level (default: WARNING)")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    generate = commands.add_parser("generate", help="generate a synthetic e-commerce world")
    generate.add_argument("--preset", choices=sorted(WORLD_PRESETS), default="demo",
                          help="world size (default: demo)")
    generate.add_argument("--seed", type=int, default=0, help="random seed")
    generate.add_argument("--out", required=True, help="raw data directory to write")
    generate.set_defaults(handler=_generate, uses_tensorflow=False)

    movielens = commands.add_parser("import-movielens",
                                    help="convert MovieLens latest-small to the raw contract")
    movielens.add_argument("--src", required=True, help="the ml-latest-small directory")
    movielens.add_argument("--out", required=True, help="raw data directory to write")
    movielens.set_defaults(handler=_import_movielens, uses_tensorflow=False)

    _add_pass_through(commands, "preprocess", _preprocess,
                      "raw data -> validated, time-split TFRecords (a Beam job)")

    encoders = commands.add_parser(
        "train-encoders", help="fit and export the modal encoders (query matching or SimCSE, "
                               "entities)")
    _add_training_flags(encoders, ENCODER_PRESETS, "demo")
    encoders.add_argument("--bert-checkpoint", "--bert_checkpoint", dest="bert_checkpoint",
                          help="local pre-trained BERT-family directory, Hugging Face layout "
                               "(config.json, model.safetensors, vocab.txt) or Google's")
    encoders.add_argument("--text-objective", "--text_objective", dest="text_objective",
                          choices=TEXT_OBJECTIVES, default=AUTO,
                          help="how the text encoder trains (default auto: query matching "
                               "with enough queries, else frozen if pre-trained, else SimCSE)")
    encoders.add_argument("--imagenet-weights", "--imagenet_weights", dest="imagenet_weights",
                          help="local ImageNet ResNet weights file (paper preset)")
    _add_distribution_flags(encoders)
    encoders.set_defaults(handler=_train_encoders)

    _add_pass_through(commands, "embed-items", _embed_items,
                      "the frozen encoders over the catalogue (a Beam RunInference job)")

    pretrain = commands.add_parser("pretrain", help="pre-train PPM on the long span")
    _add_training_flags(pretrain, MODEL_PRESETS, None)
    _add_distribution_flags(pretrain)
    _add_ranking_loss_flags(pretrain)
    _add_setting_flag(pretrain)
    pretrain.add_argument("--history-actions", "--history_actions", dest="history_actions",
                          action="store_true", default=None,
                          help="the user tower embeds each behaviour entry's action (shown, "
                               "clicked, ordered): for sequences of impressions, `ppm "
                               "preprocess --history impressions`")
    pretrain.add_argument("--tower-item-counts", "--tower_item_counts",
                          dest="tower_item_counts", action="store_true", default=None,
                          help="the user tower reads each behaviour item's as-of counts at "
                               "the request (impressions, clicks, orders before its day), "
                               "beside its vector; README: Behaviour items' counts")
    pretrain.add_argument("--request-group", "--request_group",
                          dest="pretrain_request_group", type=_request_group,
                          help="read up to N impressions of a request together, so the user "
                               "tower runs once per group (1: records one by one; 'auto', "
                               "the presets': groups of 8 where that at least halves the "
                               "tower's rows); README: Pre-training on grouped requests")
    pretrain.set_defaults(handler=_pretrain)

    _add_pass_through(commands, "precompute", _precompute,
                      "cache PPM's user-tower outputs into the examples (a Beam job)")

    train = commands.add_parser("train", help="train an ablation model on the recent window")
    _add_training_flags(train, MODEL_PRESETS, None)
    _add_distribution_flags(train)
    _add_ranking_loss_flags(train)
    _add_setting_flag(train)
    train.add_argument("--model", required=True, choices=[*MODELS, "all"],
                       help="an ablation row, or all of them")
    train.set_defaults(handler=_train)

    evaluate = commands.add_parser("evaluate", help="the paper's table from eval predictions")
    evaluate.add_argument("--work", required=True, help="work directory")
    evaluate.add_argument("--bootstrap-resamples", "--bootstrap_resamples", type=int,
                          default=DEFAULT_RESAMPLES, dest="bootstrap_resamples",
                          help="draws of the eval users behind every 95%% interval")
    evaluate.add_argument("--bootstrap-seed", "--bootstrap_seed", type=int, default=0,
                          dest="bootstrap_seed", help="seed of those draws")
    evaluate.set_defaults(handler=_evaluate)

    export = commands.add_parser("export", help="export a trained model for TF Serving")
    export.add_argument("--work", required=True, help="work directory")
    export.add_argument("--model", required=True, choices=list(EXPORTABLE),
                        help="the trained model to export")
    export.add_argument("--base-path", "--base_path", dest="base_path",
                        help="TF Serving base path (default saved_models/<model>)")
    export.add_argument("--min-auc", "--min_auc", dest="min_auc", type=float,
                        help="refuse to publish below this click AUC on a validation slice")
    export.set_defaults(handler=_export)

    _add_pass_through(commands, "serve", _serve,
                      "local TF-Serving-compatible server (TF Serving's flags)")

    ab = commands.add_parser(
        "ab", help="the online A/B test replayed through the served models (synthetic world)")
    ab.add_argument("--work", required=True, help="the preprocessed work dir of the world")
    ab.add_argument("--data", required=True, help="the synthetic world's raw data directory")
    ab.add_argument("--saved-models", "--saved_models", dest="saved_models",
                    default=SAVED_MODELS, help="the export folder (saved_models/<arm>/<v>)")
    ab.add_argument("--arms", default=",".join(AB_ARMS),
                    help="exported models by name, and the built-in arms oracle, popularity, "
                         "random (default: %(default)s)")
    ab.add_argument("--control", help="the arm the others are compared with (default: base "
                                      "when it is an arm, else the last arm)")
    ab.add_argument("--days", type=int, help="replay the first N eval days (default: all)")
    ab.add_argument("--pool", type=int, default=100, help="candidates ranked per request")
    ab.add_argument("--slots", type=int,
                    help="top items shown per request (default: the world's, 5)")
    ab.add_argument("--transport", choices=["grpc", "rest"], default="grpc",
                    help="how the arms' requests reach the server (default: %(default)s)")
    ab.add_argument("--clients", type=int, default=AB_CLIENTS,
                    help="requests in flight at once; latency includes their contention "
                         "(default: %(default)s; 1 for latency alone)")
    ab.add_argument("--seed", type=int, default=0, help="pools, ties, random arm, bootstrap")
    ab.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples")
    ab.add_argument("--out", help="where ab.json and the server's log go (default: WORK/ab)")
    ab.add_argument("--serving-dir", "--serving_dir", dest="serving_dir",
                    help="the production TF Serving configs (default: the repository's "
                         "serving/)")
    ab.set_defaults(handler=_ab)

    demo = commands.add_parser(
        "demo", help="the whole pipeline on the synthetic world, to the results table")
    demo.add_argument("--preset", choices=list(DEMO_PRESETS), default="demo",
                      help="tiny: about 2 minutes on 2 CPU cores; demo (default): about 12")
    demo.add_argument("--seed", type=int, default=0, help="random seed")
    demo.add_argument("--out", default=os.path.join("runs", "demo"), help="run directory")
    demo.add_argument("--data", help="use this raw data directory instead of generating one")
    demo.add_argument("--force", action="store_true", help="redo stages that are up to date")
    demo.set_defaults(handler=_demo)
    return parser


# Third-party warnings that are false, or that a user cannot act on, in this package, by the
# logger they come from. The CLI drops them; the library and the notebook still show them.
_FALSE_ALARMS = {
    "root": (  # Beam 2.77 logs these on the root logger
        # Beam's BigQuery client, imported with its I/O: no stage here uses BigQuery, and
        # with the [gcp] extra (for Dataflow) the warning does not occur.
        "apitools not found",
        # Once per RunInference batch: Beam sets `resource` to None when its torch-only model
        # manager fails to import, so it records no memory metrics.
        "Resource module is not available",
    ),
    "tensorflow": (
        # Export: the training tasks are not part of the serving signatures, and `ppm export`
        # rebuilds a model from its training.json, never from a Keras config.
        "Skipping full serialization of TF-Keras layer",
        "arguments contain non-serializable objects",
        # Keras builds new validation functions for every model that `ppm demo` fits in one
        # process, and TensorFlow counts their traces as retracing.
        "triggered tf.function retracing",
        # The local server loads a SavedModel into a session, as TF Serving does.
        "load (from tensorflow.python.saved_model.loader_impl) is deprecated",
    ),
}


class _DropMessages(logging.Filter):
    """Drops a logger's records whose message contains one of ``fragments``."""

    def __init__(self, fragments: tuple[str, ...]):
        super().__init__()
        self._fragments = fragments

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(fragment in message for fragment in self._fragments)


# Imported by the CLI before any command runs, because importing them writes to the terminal:
# TensorFlow's shared libraries log through absl before logging is initialised, straight to
# file descriptor 2 and whatever TF_CPP_MIN_LOG_LEVEL says ("All log messages before
# absl::InitializeLog() ...", oneDNN, "Could not find cuda drivers"; once per library, so
# twice); keras_core (keras-cv's Keras 2 backend) prints "Using TensorFlow backend".
_NOISY_IMPORTS = ("tensorflow", "keras_core")


def _import_quietly(modules: tuple[str, ...]) -> None:
    """Imports ``modules`` with descriptor 2 and ``sys.stdout`` pointed at a temporary file;
    what they wrote is replayed on stderr if an import fails."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved_stderr = os.dup(2)
    with tempfile.TemporaryFile("w+") as caught:
        os.dup2(caught.fileno(), 2)
        failed = True
        try:
            with contextlib.redirect_stdout(caught):
                for module in modules:
                    importlib.import_module(module)
            failed = False
        finally:
            sys.stderr.flush()
            caught.flush()
            os.dup2(saved_stderr, 2)
            os.close(saved_stderr)
            if failed:
                caught.seek(0)
                sys.stderr.write(caught.read())


def _quiet_third_party_start_up() -> None:
    """Only our lines on the terminal: TensorFlow's native logs off (Beam's worker processes
    inherit the variable; set TF_CPP_MIN_LOG_LEVEL=0 to see them), the false alarms above and
    tensorflow-hub's pkg_resources deprecation warning (from its own import) dropped."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for logger_name, fragments in _FALSE_ALARMS.items():
        logging.getLogger(None if logger_name == "root" else logger_name).addFilter(
            _DropMessages(fragments))
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated",
                            category=UserWarning, module="tensorflow_hub")


def _quiet_process_start() -> None:
    """The same quiet start for a process ``ppm demo`` spawns (its side process)."""
    _quiet_third_party_start_up()
    _import_quietly(_NOISY_IMPORTS)


def main(argv: list[str] | None = None) -> int:
    _quiet_third_party_start_up()
    parser = build_parser()
    # Beam jobs take their own flags plus any Beam pipeline option: those pass through.
    args, job_args = parser.parse_known_args(argv)
    if job_args and not getattr(args, "passes_flags_through", False):
        parser.error(f"unrecognized arguments: {' '.join(job_args)}")
    args.job_args = job_args
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    if getattr(args, "uses_tensorflow", True):
        _import_quietly(_NOISY_IMPORTS)  # ppm_tf/__init__ has selected tf-keras
    try:
        args.handler(args)
    except (ValueError, FileNotFoundError, FileExistsError, StageError) as error:
        print(f"ppm {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
