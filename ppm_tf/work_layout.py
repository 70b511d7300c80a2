"""Where each stage reads and writes inside a work directory (``--work WORK``).

One place for the paths, so a stage never guesses where an earlier one wrote. Paths are
joined with "/" so the same layout works on ``gs://`` through Beam's and TF's filesystems.

    WORK/examples/<split>/part-*.tfrecord.gz   impressions (features.EXAMPLE_FEATURES)
    WORK/items/part-*.tfrecord.gz              valid catalogue (features.ITEM_FEATURES)
    WORK/queries/part-*.tfrecord.gz            valid search log (features.QUERY_FEATURES)
    WORK/vocab/<name>.txt                      vocabularies, most frequent first
    WORK/dead_letter/<table>-*.jsonl           rejected records with their problems
    WORK/oracle/eval-*.jsonl                   synthetic only: true probabilities, eval split
    WORK/encoders/{text,image}/                frozen modal encoders (SavedModels), metrics.json
    WORK/item_vectors/part-*.tfrecord.gz       per item: text, image and ME vectors
    WORK/item_vectors/metadata.json            their sizes and the encoders that made them
    WORK/ppm_user_tower/                       the frozen PPM user tower (SavedModel)
    WORK/cached/<split>/part-*.tfrecord.gz     train/eval examples + cached PPM tensors
    WORK/cached/metadata.json                  their sizes
    WORK/models/<name>/                        trained weights (checkpoints) per model
    WORK/predictions/<name>.npz                eval-split predictions per model
    WORK/eval/                                 metrics.json, report.md, plots
    WORK/preprocess.json                       the run's settings: max_seq_len, split bounds
    WORK/stats.json                            counts: per split, dead letters, vocab sizes
"""
from __future__ import annotations

import dataclasses

TFRECORD_SUFFIX = ".tfrecord.gz"


@dataclasses.dataclass(frozen=True)
class WorkLayout:
    root: str

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

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

    def dead_letter_prefix(self, table: str) -> str:
        return self.path("dead_letter", table)

    @property
    def dead_letter_pattern(self) -> str:
        return self.path("dead_letter", "*.jsonl")

    @property
    def oracle_eval_prefix(self) -> str:
        return self.path("oracle", "eval")

    @property
    def preprocess_json(self) -> str:
        return self.path("preprocess.json")

    @property
    def stats_json(self) -> str:
        return self.path("stats.json")

    @property
    def encoders_dir(self) -> str:
        return self.path("encoders")

    @property
    def item_vectors_prefix(self) -> str:
        return self.path("item_vectors", "part")

    @property
    def item_vectors_pattern(self) -> str:
        return self.item_vectors_prefix + "-*" + TFRECORD_SUFFIX

    @property
    def item_vectors_metadata(self) -> str:
        return self.path("item_vectors", "metadata.json")

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

    def predictions(self, name: str) -> str:
        return self.path("predictions", f"{name}.npz")

    @property
    def eval_dir(self) -> str:
        return self.path("eval")
