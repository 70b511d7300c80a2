"""Where each stage reads and writes inside a work directory (``--work WORK``).

One place for the paths, so a stage never guesses where an earlier one wrote. Paths are
joined with "/" so the same layout works on ``gs://`` through Beam's and TF's filesystems.

    WORK/examples/<split>/part-*.tfrecord.gz   impressions (features.EXAMPLE_FEATURES)
    WORK/items/part-*.tfrecord.gz              valid catalogue (features.ITEM_FEATURES)
    WORK/queries/part-*.tfrecord.gz            valid search log (features.QUERY_FEATURES)
    WORK/vocab/<name>.txt                      vocabularies, most frequent first
    WORK/count_tables/<name>-*.tsv             as-of counts per item_id / category at the
                                               log's end: the tables an export serves;
                                               item_days: each item's totals per day
    WORK/dead_letter/<table>-*.jsonl           rejected records with their problems
    WORK/oracle/eval-*.jsonl                   synthetic only: true probabilities, eval split
    WORK/encoders/{text,image}/                frozen modal encoders (SavedModels)
    WORK/encoders/metrics.json                 both encoders' held-out metrics
    WORK/encoders/train/                       the encoders' learned vocabulary, resume state
    WORK/item_vectors/part-*.tfrecord.gz       per item: text, image and ME vectors
    WORK/item_vectors/metadata.json            their sizes and the encoders that made them
    WORK/ppm_user_tower/                       the frozen PPM user tower (SavedModel)
    WORK/cached/<split>/part-*.tfrecord.gz     train/eval examples + cached PPM tensors
    WORK/cached/metadata.json                  their sizes
    WORK/models/<name>/weights                 a trained model's weights (tf.train.Checkpoint)
    WORK/models/<name>/training.json           its resolved config, cost and validation curve
    WORK/models/<name>/backup/                 resume state while it trains
    WORK/models/ppm_pretrained/plug_in_head    the pre-trained plug-in head (checkpoint)
    WORK/predictions/<name>.npz                eval-split predictions per model
    WORK/eval/                                 metrics.json, report.md, plots
    WORK/ab/                                   the replayed A/B test: ab.json, the server's log
    WORK/catalogue.json                        the catalogue job finished: its settings, bounds
    WORK/catalogue_stats.json                  the catalogue job's counts (merged into stats.json)
    WORK/preprocess.json                       the run's settings: max_seq_len, split bounds
    WORK/stats.json                            counts: per split, dead letters, vocab sizes
"""
from __future__ import annotations

import dataclasses
import json
from typing import Any

TFRECORD_SUFFIX = ".tfrecord.gz"
TEXT_ENCODER, IMAGE_ENCODER = "text", "image"  # WORK/encoders/<kind>/
ENCODER_JSON = "encoder.json"  # an encoder export's description, written last
PRETRAINED = "ppm_pretrained"  # the model folder of PPM pre-trained on the long span
AB_RESULTS = "ab.json"  # the replayed A/B test's results, in WORK/ab/ or `ppm ab --out`
SAVED_MODELS = "saved_models"  # the export folder: one TF Serving base path per model


def require(path: str, made_by: str) -> None:
    """Fails when an artifact is missing, in one line naming it and the command that makes it
    (``made_by``, e.g. "ppm embed-items --work runs/demo/work")."""
    import tensorflow as tf  # here, so that reading paths needs no TensorFlow

    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: run `{made_by}` first")


def read_json(path: str, made_by: str) -> dict[str, Any]:
    """A stage's JSON artifact; missing, it is a clear error naming the command that makes it."""
    import tensorflow as tf

    require(path, made_by)
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def read_json_if_present(path: str) -> dict[str, Any] | None:
    """An optional artifact (the oracle's, a row not trained): None when it is absent."""
    import tensorflow as tf

    if not tf.io.gfile.exists(path):
        return None
    with tf.io.gfile.GFile(path) as handle:
        return json.load(handle)


def write_json(path: str, content: dict[str, Any]) -> None:
    import tensorflow as tf

    tf.io.gfile.makedirs(path.rpartition("/")[0])
    with tf.io.gfile.GFile(path, "w") as handle:
        handle.write(json.dumps(content, indent=2, sort_keys=True) + "\n")


@dataclasses.dataclass(frozen=True)
class WorkLayout:
    root: str

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    # --- stages: what each one writes last, and the command that runs it -------------------
    def finished_markers(self, stage: str, model: str | None = None) -> tuple[str, ...]:
        """The files a stage writes last: all present means it finished on this work dir."""
        markers = {
            "catalogue": (self.catalogue_json,),  # the part of preprocess the encoders read
            "preprocess": (self.preprocess_json,),
            "train-encoders": (self.encoder_description(TEXT_ENCODER),
                               self.encoder_description(IMAGE_ENCODER)),
            "embed-items": (self.item_vectors_metadata,),
            "pretrain": (self.training_summary(PRETRAINED),),
            "precompute": (self.cached_metadata,),
        }
        if stage == "train":
            if model is None:
                raise ValueError("the train stage's output is per model: name the model")
            return (self.training_summary(model),)
        if stage not in markers:
            raise ValueError(f"unknown stage {stage!r}; stages: {[*markers, 'train']}")
        return markers[stage]

    def command(self, stage: str, model: str | None = None) -> str:
        """The command that runs ``stage`` on this work dir."""
        if stage in ("catalogue", "preprocess"):
            return f"ppm preprocess --data RAW_DATA_DIR --out {self.root}"
        return f"ppm {stage} --work {self.root}" + (f" --model {model}" if model else "")

    def require_stages(self, *stages: str, model: str | None = None) -> None:
        """Fails before a stage does any work unless the stages it reads from have finished,
        earliest first: one line naming the missing file and the command that makes it.
        ``model`` names the model of a ``train`` stage."""
        for stage in stages:
            for path in self.finished_markers(stage, model):
                require(path, self.command(stage, model if stage == "train" else None))

    def examples_prefix(self, split: str) -> str:
        return self.path("examples", split, "part")

    def examples_pattern(self, split: str) -> str:
        return self.examples_prefix(split) + "-*" + TFRECORD_SUFFIX

    @property
    def items_prefix(self) -> str:
        return self.path("items", "part")

    @property
    def items_pattern(self) -> str:
        return self.items_prefix + "-*" + TFRECORD_SUFFIX

    @property
    def queries_prefix(self) -> str:
        return self.path("queries", "part")

    @property
    def queries_pattern(self) -> str:
        return self.queries_prefix + "-*" + TFRECORD_SUFFIX

    def vocab(self, name: str) -> str:
        return self.path("vocab", f"{name}.txt")

    def count_table_prefix(self, name: str) -> str:
        return self.path("count_tables", name)

    def count_table_pattern(self, name: str) -> str:
        return self.count_table_prefix(name) + "-*.tsv"

    def dead_letter_prefix(self, table: str) -> str:
        return self.path("dead_letter", table)

    @property
    def dead_letter_pattern(self) -> str:
        return self.path("dead_letter", "*.jsonl")

    @property
    def oracle_eval_prefix(self) -> str:
        return self.path("oracle", "eval")

    @property
    def oracle_eval_pattern(self) -> str:
        return self.oracle_eval_prefix + "-*.jsonl"

    @property
    def preprocess_json(self) -> str:
        return self.path("preprocess.json")

    @property
    def catalogue_json(self) -> str:
        return self.path("catalogue.json")

    @property
    def catalogue_stats_json(self) -> str:
        return self.path("catalogue_stats.json")

    @property
    def preprocess_outputs(self) -> tuple[str, ...]:
        """Everything ``ppm preprocess`` writes (folders end in "/"): a new run clears them."""
        folders = ("examples", "items", "queries", "vocab", "count_tables", "dead_letter",
                   "oracle")
        return (*(self.path(folder) + "/" for folder in folders), self.catalogue_stats_json,
                self.catalogue_json, self.stats_json, self.preprocess_json)

    @property
    def stats_json(self) -> str:
        return self.path("stats.json")

    @property
    def encoders_dir(self) -> str:
        return self.path("encoders")

    def encoder_dir(self, kind: str) -> str:
        """The frozen export of the ``text`` or ``image`` encoder."""
        return self.path("encoders", kind)

    def encoder_description(self, kind: str) -> str:
        return self.path("encoders", kind, ENCODER_JSON)

    @property
    def encoders_metrics(self) -> str:
        return self.path("encoders", "metrics.json")

    def encoders_train(self, *parts: str) -> str:
        """Scratch space of ``ppm train-encoders``: vocabulary, backups, run state."""
        return self.path("encoders", "train", *parts)

    @property
    def item_vectors_prefix(self) -> str:
        return self.path("item_vectors", "part")

    @property
    def item_vectors_pattern(self) -> str:
        return self.item_vectors_prefix + "-*" + TFRECORD_SUFFIX

    @property
    def item_vectors_metadata(self) -> str:
        return self.path("item_vectors", "metadata.json")

    @property
    def item_table_dir(self) -> str:
        """The item vectors as the models' table loads them (``models.item_table``)."""
        return self.path("item_vectors", "table")

    def cached_prefix(self, split: str) -> str:
        return self.path("cached", split, "part")

    def cached_pattern(self, split: str) -> str:
        return self.cached_prefix(split) + "-*" + TFRECORD_SUFFIX

    @property
    def cached_metadata(self) -> str:
        return self.path("cached", "metadata.json")

    @property
    def user_tower_dir(self) -> str:
        return self.path("ppm_user_tower")

    def model_dir(self, name: str) -> str:
        return self.path("models", name)

    def training_summary(self, name: str) -> str:
        return self.path("models", name, "training.json")

    def weights(self, name: str) -> str:
        return self.path("models", name, "weights")

    def backup(self, name: str) -> str:
        return self.path("models", name, "backup")

    @property
    def head_checkpoint(self) -> str:
        return self.path("models", PRETRAINED, "plug_in_head")

    def recorded_preset(self) -> str | None:
        """The preset the work dir's latest training stage ran with (pre-training, else the
        encoders): what later stages use unless told otherwise."""
        for path in (self.training_summary(PRETRAINED), self.encoders_metrics):
            recorded = read_json_if_present(path)
            if recorded is not None:
                return recorded["preset"]
        return None

    def predictions(self, name: str) -> str:
        return self.path("predictions", f"{name}.npz")

    @property
    def eval_dir(self) -> str:
        return self.path("eval")

    @property
    def eval_metrics(self) -> str:
        return self.path("eval", "metrics.json")

    @property
    def ab_dir(self) -> str:
        return self.path("ab")

    @property
    def ab_results(self) -> str:
        return self.path("ab", AB_RESULTS)


@dataclasses.dataclass(frozen=True)
class RunLayout:
    """A ``ppm demo --out OUT`` run folder:

        OUT/data/             the raw data (generated, unless ``--data`` names another)
        OUT/work/             the work dir (``WorkLayout``)
        OUT/saved_models/     the exports, one TF Serving base path per model
        OUT/saved_models/<name>/.exported   what the last export of <name> published
        OUT/metrics.json      the run's summary: the evaluation, serving, the A/B replay, times
        OUT/report.html       the report (``python -m ppm_tf.demo.report OUT`` rewrites it)
    """
    root: str

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    @property
    def data(self) -> str:
        return self.path("data")

    @property
    def work(self) -> WorkLayout:
        return WorkLayout(self.path("work"))

    @property
    def saved_models(self) -> str:
        return self.path(SAVED_MODELS)

    def base_path(self, model: str) -> str:
        return self.path(SAVED_MODELS, model)

    def export_marker(self, model: str) -> str:
        """Written after each export: the demo's up-to-date check of that stage."""
        return self.path(SAVED_MODELS, model, ".exported")

    @property
    def metrics_json(self) -> str:
        return self.path("metrics.json")

    @property
    def report_html(self) -> str:
        return self.path("report.html")
