"""``train_encoders``: fine-tune both modal encoders, evaluate them, export them frozen.

    WORK/encoders/text/, WORK/encoders/image/   the frozen SavedModels (``export``)
    WORK/encoders/metrics.json                 held-out metrics of both tasks + baselines
    WORK/encoders/train/                       the learned vocabulary and resume state

Interruptions are resumed, at two levels: within an encoder, the fit loop
(``ppm_tf.fitting``) saves model, optimizer and epoch at every epoch end and a rerun continues
from the last finished epoch; across encoders, ``train/run.json`` records which encoders of
the unfinished run are already exported, and a rerun with the same settings skips them.
A run that finishes removes ``run.json``, so the next call trains afresh.
"""
from __future__ import annotations

import json
import logging
from typing import Any, Sequence

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf.distribute import is_chief
from ppm_tf.encoders import export, presets
from ppm_tf.encoders.presets import AUTO
from ppm_tf.encoders.image_training import fit_image_encoder
from ppm_tf.encoders.text_training import fit_text_encoder
from ppm_tf.work_layout import WorkLayout, write_json

logger = logging.getLogger(__name__)

ENCODERS = (export.TEXT, export.IMAGE)


class _RunState:
    """``train/run.json``: the settings of an unfinished run and the encoders it exported.
    Only the chief writes it (``writes``); every worker reads it."""

    def __init__(self, work: str, settings: dict[str, Any], writes: bool = True):
        self.path = WorkLayout(work).encoders_train("run.json")
        self.settings = settings
        self.writes = writes
        self.done: list[str] = []
        if tf.io.gfile.exists(self.path):
            with tf.io.gfile.GFile(self.path, "r") as handle:
                state = json.load(handle)
            if state.get("settings") == settings:
                self.done = list(state.get("done", []))
        self._write()

    def _write(self) -> None:
        if not self.writes:
            return
        tf.io.gfile.makedirs(self.path.rsplit("/", 1)[0])
        with tf.io.gfile.GFile(self.path, "w") as handle:
            json.dump({"settings": self.settings, "done": self.done}, handle, indent=2)

    def mark_done(self, kind: str) -> None:
        self.done.append(kind)
        self._write()

    def finish(self) -> None:
        if self.writes:
            tf.io.gfile.remove(self.path)


def train_encoders(work: str, preset: str = "demo", seed: int = 0,
                   bert_checkpoint: str | None = None, imagenet_weights: str | None = None, *,
                   encoders: Sequence[str] = ENCODERS, epochs: int | None = None,
                   callbacks: Sequence[tf.keras.callbacks.Callback] = (),
                   text_objective: str = AUTO,
                   strategy: tf.distribute.Strategy | None = None,
                   save_every_steps: int | None = None) -> dict[str, Any]:
    """Fits the text encoder (query matching, SimCSE, or frozen) and the image encoder
    (entity prediction) on the preprocessed ``work`` directory, exports both frozen, and
    writes metrics.json.

    Args:
        preset: ``presets.PRESETS`` name (``tiny``, ``demo``, ``paper``).
        bert_checkpoint: local BERT-family checkpoint directory to start the text encoder
            from, Hugging Face or Google layout (``bert_checkpoint.BertCheckpoint``); its
            vocabulary replaces the learned one.
        imagenet_weights: local ResNet weights file for the image backbone
            (``pretrained.load_resnet_weights``).
        encoders: which to train (default both); an encoder not trained keeps its export.
        epochs: overrides the preset's epochs of both tasks (e.g. 1 for a smoke run).
        callbacks: extra Keras callbacks for both fits (run after the backup callback).
        text_objective: ``auto``, ``query_matching``, ``simcse`` or ``frozen``
            (``text_objective.choose``).
        strategy: the ``tf.distribute`` strategy both fits run under (default: one
            process); with several workers only the chief keeps the exports and metrics.
        save_every_steps: also back up every so many steps (default: at epoch ends).

    Returns:
        metrics.json's content: ``{"preset", "seed", "text": {...}, "image": {...}}``.
    """
    config = presets.preset(preset)
    unknown = sorted(set(encoders) - set(ENCODERS))
    if unknown:
        raise ValueError(f"unknown encoder(s) {unknown}; expected some of {list(ENCODERS)}")
    settings = {"preset": preset, "seed": seed, "bert_checkpoint": bert_checkpoint,
                "imagenet_weights": imagenet_weights, "epochs": epochs,
                "encoders": list(encoders), "text_objective": text_objective}
    layout = WorkLayout(work)
    layout.require_stages("catalogue")
    strategy = strategy or tf.distribute.get_strategy()
    chief = is_chief(strategy)
    state = _RunState(work, settings, writes=chief)
    fitters = {
        export.TEXT: lambda: fit_text_encoder(work, config, seed, bert_checkpoint, epochs,
                                              callbacks, text_objective, strategy,
                                              save_every_steps),
        export.IMAGE: lambda: fit_image_encoder(work, config, seed, imagenet_weights, epochs,
                                                callbacks, strategy, save_every_steps),
    }
    for kind in ENCODERS:
        if kind not in encoders:
            continue
        if kind in state.done:
            logger.info("%s encoder already exported by this unfinished run; skipped", kind)
            continue
        fitters[kind]()
        state.mark_done(kind)
    metrics = {"preset": preset, "seed": seed}
    if not chief:
        return {**metrics, "written": False}
    for kind in ENCODERS:
        try:
            metrics[kind] = export.read_description(layout.encoder_dir(kind))["metrics"]
        except FileNotFoundError:
            pass
    write_json(layout.encoders_metrics, metrics)
    state.finish()
    return metrics


def format_metrics(metrics: dict[str, Any]) -> str:
    """The table ``ppm train-encoders`` prints."""
    lines = [f"modal encoders (preset {metrics.get('preset')}, seed {metrics.get('seed')})"]
    text = metrics.get(export.TEXT)
    if text:
        lines.append(f"  text objective: {text['objective']} ({text['objective_reason']})")
        for title, block in (("eval", text), ("valid", text.get("valid_queries"))):
            if block and "model" in block:
                lines.append(f"  query -> item over {block['num_items']:,} items, "
                             f"{block['model']['queries']:,} {title} queries")
                for name in ("model", "tfidf", "popularity", "random"):
                    if name in block:
                        row = block[name]
                        lines.append(f"    {name:<10} Recall@10 {row['recall_at_10']:.4f}   "
                                     f"MRR {row['mrr']:.4f}")
        for title, block in text["entity_neighbours"].items():
            lines.append(f"  entity overlap of the {block['model']['k']} nearest items, "
                         f"{block['model']['items']:,} {title} items")
            lines.append("    " + "   ".join(
                f"{name} {block[name]['entity_jaccard']:.4f}"
                for name in ("model", "tfidf", "random")))
    image = metrics.get(export.IMAGE)
    if image:
        lines.append(f"  entity prediction on {image['model']['items']:,} held-out items "
                     f"({image['num_entities']} entities)")
        for name in ("model", "prior"):
            row = image[name]
            lines.append(f"    {name:<10} micro-F1 {row['micro_f1']:.4f}  macro-F1 "
                         f"{row['macro_f1']:.4f}  micro-AUC {row['micro_auc']:.4f}  "
                         f"macro-AUC {row['macro_auc']:.4f}")
    return "\n".join(lines)
