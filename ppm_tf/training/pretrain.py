"""``ppm pretrain``: PPM on the long (pretrain) span, then the frozen user tower's export.

Inputs are ID-free: the behaviour items' and the candidate's ME vectors (looked up in the
frozen item-vector table), timestamps, the as-of counts of the user, the candidate and its
category over the long span, and the click/order labels.
"""
from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.atomic import atomic_directory
from ppm_tf.data.tfrecords import load_preprocess_metadata, read_split
from ppm_tf.distribute import is_chief, save_path
from ppm_tf.fitting import trainable_parameters
from ppm_tf.models.config import AUTO, AUTO_GROUP, ModelConfig, preset
from ppm_tf.models.history_counts import load_history_item_counts
from ppm_tf.models.item_table import ItemVectorTable, item_table_files
from ppm_tf.models.ppm import PPM
from ppm_tf.saved_models import save_signatures
from ppm_tf.training.ablations import fit_on_splits, resolve_preset
from ppm_tf.work_layout import PRETRAINED, WorkLayout, write_json


class UserTowerModule(tf.Module):
    """The frozen user tower with its item-vector table (and, with ``tower_item_counts``,
    its items' daily count table), as a servable function:
    ``(hist_item_ids [batch, L], hist_ts [batch, L], hist_actions [batch, L], ts [batch])`` ->
    ``{ppm_user_states [batch, L, d], ppm_user_mask [batch, L]}``."""

    def __init__(self, model: PPM, max_seq_len: int):
        super().__init__()
        self.entries = model.entries
        self.user_tower = model.user_tower
        self.user_states = tf.function(self._user_states, input_signature=[
            tf.TensorSpec([None, max_seq_len], tf.string, name=features.HIST_ITEM_IDS),
            tf.TensorSpec([None, max_seq_len], tf.int64, name=features.HIST_TS),
            tf.TensorSpec([None, max_seq_len], tf.int64, name=features.HIST_ACTIONS),
            tf.TensorSpec([None], tf.int64, name=features.TS)])

    def _user_states(self, hist_item_ids, hist_ts, hist_actions, ts):
        mask = tf.not_equal(hist_item_ids, features.PADDING_ID)
        states = self.user_tower((self.entries((hist_item_ids, ts)), hist_ts, hist_actions,
                                  ts, mask), training=False)
        return {features.PPM_USER_STATES: states,
                features.PPM_USER_MASK: tf.cast(mask, tf.int64)}


def pretrain_ppm(work: str, preset_name: str | None = None, seed: int = 0,
                 epochs: int | None = None, verbose: int = 1, *,
                 strategy: tf.distribute.Strategy | None = None,
                 overrides: dict | None = None) -> dict:
    """Trains PPM on the pretrain split; writes the head checkpoint and the user tower.
    ``preset_name`` defaults to the encoders' preset; ``strategy`` and ``overrides`` as in
    ``ablations.train_ablation``."""
    strategy = strategy or tf.distribute.get_strategy()
    layout = WorkLayout(work)
    layout.require_stages("preprocess", "embed-items")
    tf.keras.utils.set_random_seed(seed)
    preset_name = resolve_preset(work, preset_name)
    config = dataclasses.replace(preset(preset_name), **(overrides or {}))
    metadata = load_preprocess_metadata(work)
    max_seq_len = metadata["max_seq_len"]
    with strategy.scope():
        item_ids, vectors = item_table_files(work)
        item_table = ItemVectorTable(item_ids, vectors, name="item_vectors")
        history_counts = (load_history_item_counts(work, item_ids,
                                                   metadata["count_lookback_days"])
                          if config.tower_item_counts else None)
        model = PPM(item_table, config, max_seq_len, metadata["count_priors"], history_counts)
        model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    request_group, grouping = resolved_request_group(work, config, model)
    if verbose:
        print(f"pre-training reads {grouping['reads']}")
    result = fit_on_splits(model, work, read_split, ("pretrain",), config, seed,
                           epochs or config.pretrain_epochs, config.min_pretrain_steps,
                           config.pretrain_patience, layout.backup(PRETRAINED), verbose,
                           request_group=request_group)
    # Every worker saves (a collective op under several workers); only the chief's is kept.
    with save_path(layout.head_checkpoint, strategy) as path:
        tf.train.Checkpoint(head=model.head).write(path)
    with save_path(layout.user_tower_dir, strategy) as path:
        export_user_tower(model, max_seq_len, path)
    if not is_chief(strategy):
        return {"model": PRETRAINED, "preset": preset_name, "written": False}
    summary = {"model": PRETRAINED, "preset": preset_name, "config": config.to_dict(),
               "seed": seed,
               "train_seconds": result.train_seconds,
               "examples_per_second": result.examples_per_second,
               "train_examples": result.examples, "epochs": result.epochs,
               "best_epoch": result.best_epoch,
               "validation_click_auc": list(result.validation_curve),
               "validation_click_auc_at_start": result.validation_start,
               "request_group": request_group, "request_grouping": grouping,
               "final_loss": result.final_loss,
               "trainable_params": trainable_parameters(model),
               "user_tower_params": trainable_parameters(model.user_tower),
               "head_params": trainable_parameters(model.head),
               "tower_dim": config.tower_dim, "max_seq_len": max_seq_len,
               "item_dim": item_table.dim}
    write_json(layout.training_summary(PRETRAINED), summary)
    return summary


def choose_request_group(batch_size: float, grouped_tower_rows: float) -> int:
    """``AUTO_GROUP`` when reading requests in groups at least halves the tower's rows per
    batch, else 1: grouping changes what a batch mixes, so it is taken only where it pays
    (the demo world: 512 -> 103 rows; MovieLens, whose impressions each carry their own
    time: 505 -> 485, README "Pre-training on grouped requests")."""
    return AUTO_GROUP if grouped_tower_rows <= batch_size / 2 else 1


def resolved_request_group(work: str, config: ModelConfig, model: PPM,
                           sample_batches: int = 20) -> tuple[int, dict]:
    """The request group pre-training reads (the config's, or ``AUTO``'s choice from the
    tower rows ``model`` needs for ``sample_batches`` batches of the pretrain split read in
    groups) and how it was chosen."""
    if config.ranking_loss != "none":  # fit_on_splits then reads whole requests
        return 1, {"rule": "ranking loss", "reads": "whole requests (the ranking loss pairs "
                                                     "a request's impressions)"}
    if config.pretrain_request_group != AUTO:
        group = config.pretrain_request_group
        return group, {"rule": "given", "reads": _reads(group)}
    batches = list(read_split(work, "pretrain", config.batch_size, shuffle=True, seed=0,
                              features=features.USER_STATE_INPUTS, group_requests=True,
                              max_group=AUTO_GROUP).take(sample_batches))
    examples = float(np.mean([len(batch[features.TS]) for batch in batches]))
    rows = float(np.mean([len(model.distinct_histories(batch)[0]) for batch in batches]))
    group = choose_request_group(examples, rows)
    return group, {"rule": AUTO, "reads": _reads(group), "sample_batches": len(batches),
                   "examples_per_batch": examples, "tower_rows_grouped": rows}


def _reads(group: int) -> str:
    return ("records one by one" if group == 1
            else f"groups of up to {group} impressions of a request")


def export_user_tower(model: PPM, max_seq_len: int, target: str) -> None:
    module = UserTowerModule(model, max_seq_len)
    with atomic_directory(target) as temporary:
        save_signatures(module, temporary, {"serving_default": module.user_states})
