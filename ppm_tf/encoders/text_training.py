"""Training the text encoder with the objective ``text_objective`` chooses (query matching,
SimCSE, or none for a frozen pre-trained encoder), its held-out evaluation
(``text_evaluation``) and export.

Query matching and SimCSE are one model (``QueryMatchingModel``: in-batch InfoNCE through
``tfrs.tasks.Retrieval``) fed two kinds of batches: (query, clicked title) pairs, or a title
paired with itself, which the encoder sees through two independent dropout masks.
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Callable, Sequence

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.distribute import save_path
from ppm_tf.encoders import data, export, text_objective, tokenizer as tokenization
from ppm_tf.encoders.bert_checkpoint import BertCheckpoint, load_bert_checkpoint
from ppm_tf.encoders.fitting import adamw
from ppm_tf.encoders.presets import AUTO, QUERY_MATCHING, SIMCSE, EncoderPreset, FitConfig
from ppm_tf.encoders.query_matching import QUERY_IDS, TITLE_IDS, QueryMatchingModel
from ppm_tf.encoders.text import TextEncoder
from ppm_tf.encoders.text_evaluation import evaluate_text_encoder
from ppm_tf.fitting import fit as fit_model
from ppm_tf.work_layout import WorkLayout

logger = logging.getLogger(__name__)


def _vocabulary(work: str, config: EncoderPreset, bert: BertCheckpoint | None) -> str:
    """Path of the WordPiece vocabulary: the checkpoint's, or one learned from the data
    (reused when an interrupted run already learned it, so a resumed model keeps its ids).
    Written whole then renamed: several workers learn the same one at once."""
    if bert is not None:
        return bert.vocab_path
    path = WorkLayout(work).encoders_train("text_vocab.txt")
    if tf.io.gfile.exists(path) and tf.io.gfile.exists(_backup_dir(work)):
        return path
    started = time.perf_counter()
    tokens = tokenization.learn_vocabulary(data.vocabulary_texts(work), config.text.vocab_size)
    tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
    staging = f"{path}.{uuid.uuid4().hex}"
    tokenization.write_vocabulary(tokens, staging)
    tf.io.gfile.rename(staging, path, overwrite=True)
    logger.info("learned a WordPiece vocabulary of %d tokens in %.1f s", len(tokens),
                time.perf_counter() - started)
    return path


def _backup_dir(work: str) -> str:
    return WorkLayout(work).encoders_train("text_backup")


def _fit_contrastive(work: str, encoder: TextEncoder, config: EncoderPreset, fit: FitConfig,
                     batches: Callable[[int], tf.data.Dataset], examples: int,
                     epochs: int | None, callbacks: Sequence[tf.keras.callbacks.Callback],
                     strategy: tf.distribute.Strategy,
                     save_every_steps: int | None) -> dict[str, Any]:
    """Fits ``encoder`` with in-batch InfoNCE on ``batches(batch_size)`` (``examples`` before
    batching) under ``strategy``; returns the run's figures."""
    batch_size = min(fit.batch_size, examples)
    steps = examples // batch_size
    epochs = epochs or fit.epochs_for(steps)
    with strategy.scope():
        model = QueryMatchingModel(encoder, config.temperature, name="text_contrastive")
        model({QUERY_IDS: tf.ones([1, 2], tf.int64), TITLE_IDS: tf.ones([1, 2], tf.int64)})
        model.compile(optimizer=adamw(fit, steps, epochs))
    logger.info("text encoder: %d examples, batch %d, %d epochs, learning rate %g", examples,
                batch_size, epochs, fit.learning_rate)
    result = fit_model(
        model, batches(batch_size).apply(tf.data.experimental.assert_cardinality(steps)),
        epochs, _backup_dir(work), steps * batch_size, verbose="auto", callbacks=callbacks,
        save_every_steps=save_every_steps)
    return {"epochs": epochs, "batch_size": batch_size, "learning_rate": fit.learning_rate,
            "train_examples": result.examples,
            "resumed_from_epoch": result.first_epoch,
            "train_seconds": round(result.train_seconds, 1)}


def fit_text_encoder(work: str, config: EncoderPreset, seed: int,
                     bert_checkpoint: str | None = None, epochs: int | None = None,
                     callbacks: Sequence[tf.keras.callbacks.Callback] = (),
                     objective: str = AUTO,
                     strategy: tf.distribute.Strategy | None = None,
                     save_every_steps: int | None = None) -> dict[str, Any]:
    """Trains (or, frozen, only loads), evaluates and exports the text encoder; returns its
    metrics, which name the objective that ran and why. Fits run under ``strategy`` (default
    one process); ``save_every_steps``: also back up within epochs."""
    strategy = strategy or tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(seed)
    bert = BertCheckpoint.open(bert_checkpoint) if bert_checkpoint else None
    text_config = bert.text_config(config.text) if bert else config.text
    lower_case = bert.lower_case if bert else True
    tokenizer = tokenization.TextTokenizer(
        _vocabulary(work, config, bert), text_config.max_tokens, text_config.max_text_bytes,
        lower_case=lower_case)
    with strategy.scope():
        encoder = TextEncoder.from_config_preset(text_config, tokenizer.vocab_size,
                                                 name="text_encoder")
        if bert:
            loaded = load_bert_checkpoint(encoder, bert)
            logger.info("loaded %d BERT weights from %s (%s layout)", loaded, bert.directory,
                        bert.layout)

    item_ids, titles = data.catalogue_titles(work)
    table = data.title_table(item_ids, titles)
    num_pairs = data.count_query_matching_pairs(work, table)
    num_titles = len(data.distinct_titles(titles))
    chosen, reason = text_objective.choose(objective, num_pairs, config.min_query_pairs,
                                           bert is not None, num_titles,
                                           config.query_matching_from_pretrained)
    logger.info("text objective: %s (%s)", chosen, reason)
    run: dict[str, Any] = {"objective": chosen, "objective_reason": reason,
                           "train_pairs": num_pairs, "train_titles": num_titles}
    if chosen == QUERY_MATCHING:
        fit = config.query_matching.from_pretrained() if bert else config.query_matching
        run.update(_fit_contrastive(
            work, encoder, config, fit, lambda batch_size: data.query_matching_pairs(
                work, tokenizer, table, batch_size, seed=seed), num_pairs, epochs, callbacks,
            strategy, save_every_steps))
    elif chosen == SIMCSE:
        fit = config.simcse.from_pretrained() if bert else config.simcse
        run.update(_fit_contrastive(
            work, encoder, config, fit, lambda batch_size: data.simcse_batches(
                titles, tokenizer, batch_size, seed=seed), num_titles, epochs, callbacks,
            strategy, save_every_steps))

    metrics = {**evaluate_text_encoder(work, tokenizer, encoder, item_ids, titles,
                                       config.eval_batch_size, config.holdout_fraction, seed),
               **run}
    description = {
        "kind": export.TEXT, "preset": config.name, "seed": seed,
        "output_dim": text_config.vector_dim, "signature": {
            "inputs": {export.TITLES: "string [batch]"},
            "outputs": {features.TEXT_VEC: f"float32 [batch, {text_config.vector_dim}]"}},
        "vocab_size": tokenizer.vocab_size, "lower_case": lower_case,
        "max_tokens": text_config.max_tokens, "max_text_bytes": text_config.max_text_bytes,
        "input_policy": "invalid UTF-8 replaced by U+FFFD; cut to max_text_bytes bytes, then "
                        "to max_tokens - 2 WordPiece tokens; [CLS] ... [SEP]; empty text = "
                        "[CLS] [SEP]",
        "architecture": {key: getattr(text_config, key) for key in (
            "num_layers", "hidden_size", "num_heads", "intermediate_size", "hidden_act",
            "layer_norm_epsilon", "pooling")},
        "bert_checkpoint": bert_checkpoint,
        "bert_layout": bert.layout if bert else None,
        "objective": chosen, "temperature": config.temperature,
        "metrics": metrics}
    with save_path(WorkLayout(work).encoder_dir(export.TEXT), strategy) as path:
        export.export_encoder(export.TextEncoderExport(tokenizer, encoder), path, description)
    return metrics
