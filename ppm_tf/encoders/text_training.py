"""Fine-tuning the text encoder with query matching, its held-out evaluation and export.

Evaluation: every held-out (``eval`` split) query is scored against the whole catalogue's
titles; Recall@10 and MRR of the clicked item, next to three baselines on exactly the same
queries and catalogue (``evaluation``): TF-IDF, random ranking, and popularity (items ranked by
how often they were clicked in the training queries, the same list for every query).
"""
from __future__ import annotations

import logging
import time
import uuid
from typing import Any, Sequence

import numpy as np

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow resolves its Keras)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.distribute import save_path
from ppm_tf.encoders import data, evaluation, export, tokenizer as tokenization
from ppm_tf.encoders.presets import EncoderPreset
from ppm_tf.encoders.pretrained import BertCheckpoint, load_bert_checkpoint
from ppm_tf.encoders.query_matching import QUERY_IDS, TITLE_IDS, QueryMatchingModel
from ppm_tf.encoders.text import TextEncoder
from ppm_tf.encoders.fitting import adamw
from ppm_tf.fitting import fit as fit_model
from ppm_tf.work_layout import WorkLayout

logger = logging.getLogger(__name__)
RECALL_K = 10


def embed_texts(tokenizer: tokenization.TextTokenizer, encoder: TextEncoder,
                texts: Sequence[bytes], batch_size: int) -> np.ndarray:
    """``[len(texts), output_dim]`` float32 vectors, in order."""
    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)], reduce_retracing=True)
    def encode(batch):
        return encoder(tokenizer(batch), training=False)

    vectors = [encode(tf.constant(texts[start:start + batch_size], tf.string)).numpy()
               for start in range(0, len(texts), batch_size)]
    return np.concatenate(vectors) if vectors else np.zeros((0, encoder.output_dim), np.float32)


def heldout_queries(work: str, item_index: dict[bytes, int]) -> tuple[list[bytes], np.ndarray]:
    """Held-out queries whose clicked item is in the catalogue, and that item's row."""
    texts, targets = [], []
    for record in data.queries(work, data.EVAL_QUERY_SPLITS).as_numpy_iterator():
        row = item_index.get(record[features.ITEM_ID])
        if row is not None:
            texts.append(record[features.QUERY])
            targets.append(row)
    return texts, np.asarray(targets, np.int64)


def training_click_counts(work: str, item_index: dict[bytes, int]) -> np.ndarray:
    """``[num_items]`` clicks per item in the training queries (the popularity baseline)."""
    counts = np.zeros(len(item_index), np.float64)
    for record in data.queries(work, data.TRAIN_QUERY_SPLITS).as_numpy_iterator():
        row = item_index.get(record[features.ITEM_ID])
        if row is not None:
            counts[row] += 1
    return counts


def evaluate_query_matching(tokenizer, encoder, titles: np.ndarray, queries: list[bytes],
                            targets: np.ndarray, batch_size: int,
                            popularity: np.ndarray | None = None) -> dict[str, Any]:
    """Recall@10 and MRR on ``queries`` of the model and the baselines."""
    item_vectors = embed_texts(tokenizer, encoder, list(titles), batch_size)
    query_vectors = embed_texts(tokenizer, encoder, queries, batch_size)
    model = evaluation.RankingAccumulator(RECALL_K)
    popular = evaluation.RankingAccumulator(RECALL_K)
    for start in range(0, len(queries), batch_size):
        chunk = targets[start:start + batch_size]
        model.add(query_vectors[start:start + batch_size] @ item_vectors.T, chunk)
        if popularity is not None:
            popular.add(np.broadcast_to(popularity, (len(chunk), len(popularity))), chunk)
    metrics = {"model": model.result(),
               "tfidf": evaluation.tfidf_ranking(list(titles), queries, targets, RECALL_K),
               "random": evaluation.random_ranking(len(titles), RECALL_K),
               "num_items": len(titles)}
    if popularity is not None:
        metrics["popularity"] = popular.result()
    return metrics


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


def fit_text_encoder(work: str, config: EncoderPreset, seed: int,
                     bert_checkpoint: str | None = None, epochs: int | None = None,
                     callbacks: Sequence[tf.keras.callbacks.Callback] = (),
                     strategy: tf.distribute.Strategy | None = None,
                     save_every_steps: int | None = None) -> dict[str, Any]:
    """Trains (under ``strategy``, default one process), evaluates and exports the text
    encoder; returns its metrics. ``save_every_steps``: also back up within epochs."""
    strategy = strategy or tf.distribute.get_strategy()
    tf.keras.utils.set_random_seed(seed)
    bert = BertCheckpoint.open(bert_checkpoint) if bert_checkpoint else None
    text_config = bert.text_config(config.text) if bert else config.text
    lower_case = bert.lower_case if bert else True
    tokenizer = tokenization.TextTokenizer(
        _vocabulary(work, config, bert), text_config.max_tokens, text_config.max_text_bytes,
        lower_case=lower_case)

    item_ids, titles = data.catalogue_titles(work)
    table = data.title_table(item_ids, titles)
    fit = config.query_matching
    num_pairs = data.count_query_matching_pairs(work, table)
    batch_size = min(fit.batch_size, num_pairs)
    if batch_size < 2:
        raise ValueError(f"query matching needs at least 2 training queries (pretrain/train "
                         f"splits), found {num_pairs} in {work}")
    steps = num_pairs // batch_size
    epochs = epochs or fit.epochs_for(steps)
    pairs = data.query_matching_pairs(work, tokenizer, table, batch_size, seed=seed).apply(
        tf.data.experimental.assert_cardinality(steps))  # lets the progress bar show a total
    with strategy.scope():
        encoder = TextEncoder.from_config_preset(text_config, tokenizer.vocab_size,
                                                 name="text_encoder")
        model = QueryMatchingModel(encoder, config.temperature, name="query_matching")
        model({QUERY_IDS: tf.ones([1, 2], tf.int64), TITLE_IDS: tf.ones([1, 2], tf.int64)})
        if bert:
            loaded = load_bert_checkpoint(encoder, bert.checkpoint_prefix)
            logger.info("loaded %d BERT weights from %s", loaded, bert.checkpoint_prefix)
        model.compile(optimizer=adamw(fit, steps, epochs))
    logger.info("query matching: %d pairs, batch %d, %d epochs", num_pairs, batch_size, epochs)
    result = fit_model(model, pairs, epochs, _backup_dir(work), verbose="auto",
                       callbacks=callbacks, save_every_steps=save_every_steps)

    item_index = {item_id: row for row, item_id in enumerate(item_ids)}
    queries, targets = heldout_queries(work, item_index)
    metrics = evaluate_query_matching(tokenizer, encoder, titles, queries, targets,
                                      config.eval_batch_size,
                                      training_click_counts(work, item_index))
    metrics.update({"train_pairs": num_pairs, "epochs": epochs,
                    "resumed_from_epoch": result.first_epoch,
                    "train_seconds": round(result.train_seconds, 1)})
    description = {
        "kind": export.TEXT, "preset": config.name, "seed": seed,
        "output_dim": text_config.output_dim, "signature": {
            "inputs": {export.TITLES: "string [batch]"},
            "outputs": {features.TEXT_VEC: f"float32 [batch, {text_config.output_dim}]"}},
        "vocab_size": tokenizer.vocab_size, "lower_case": lower_case,
        "max_tokens": text_config.max_tokens, "max_text_bytes": text_config.max_text_bytes,
        "input_policy": "invalid UTF-8 replaced by U+FFFD; cut to max_text_bytes bytes, then "
                        "to max_tokens - 2 WordPiece tokens; [CLS] ... [SEP]; empty text = "
                        "[CLS] [SEP]",
        "architecture": {key: getattr(text_config, key) for key in (
            "num_layers", "hidden_size", "num_heads", "intermediate_size")},
        "bert_checkpoint": bert_checkpoint, "temperature": config.temperature,
        "metrics": metrics}
    with save_path(WorkLayout(work).encoder_dir(export.TEXT), strategy) as path:
        export.export_encoder(export.TextEncoderExport(tokenizer, encoder), path, description)
    return metrics
