"""``ppm export``: a trained model -> a new numeric version under a TF Serving base path.

The version is written into a hidden sibling folder, validated, and only then renamed into
place, so a server polling the base path never sees a half-written or unvalidated version:

1. build the serving module (``serving_module.py``) from the trained weights and the tables
   (the catalogue's attributes, the count tables of the last ``ppm preprocess``, the item
   vectors);
2. save it with its signatures and a warm-up file (``assets.extra/tf_serving_warmup_requests``,
   one request per signature: ``warmup.py``);
3. validate it in a fresh Python process that imports only TensorFlow: every op in the graph
   must be a core op (stock TF Serving has no tensorflow-text), and its scores of the first
   eval batch must match the in-memory model's;
4. refuse to publish when the click AUC on a validation slice is below ``min_auc`` (like TFX's
   blessing); otherwise rename the folder into place.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.atomic import atomic_directory
from ppm_tf.data.count_tables import read_count_table
from ppm_tf.data.tfrecords import (load_cached_metadata, load_preprocess_metadata, read_items,
                                  serialized_examples)
from ppm_tf.errors import StageError
from ppm_tf.export.serving_module import CountTable, ItemAttributeTable, ServingModule
from ppm_tf.export.warmup import warmup_requests, write_warmup_requests
from ppm_tf.metrics import roc_auc
from ppm_tf.models.item_table import load_item_table
from ppm_tf.saved_models import save_signatures
from ppm_tf.training.ablations import (build_model, load_training_summary, read_examples,
                                       trained_config)
from ppm_tf.training.registry import EXPORTABLE, ablation_row
from ppm_tf.work_layout import WorkLayout

VALIDATION_EXAMPLES = 20_000
_FRESH_PROCESS_CHECK = os.path.join(os.path.dirname(__file__), "fresh_process_check.py")


class ExportRefused(StageError):
    """The candidate version failed validation; nothing was published."""


def load_trained_model(work: str, name: str):
    """Rebuilds ``name`` with the config it was trained with and restores its weights."""
    model = build_model(name, work, trained_config(load_training_summary(work, name)))
    model(next(iter(read_examples(name, work, "eval", 2))))  # creates the variables
    tf.train.Checkpoint(model=model).read(
        WorkLayout(work).weights(name)).assert_existing_objects_matched().expect_partial()
    return model


def _catalogue_attributes(work: str) -> tuple[list[str], list[str], list[str], list[str]]:
    """(item ids, categories, brands, joined content tokens) of the catalogue."""
    ids, categories, brands, contents = [], [], [], []
    names = (features.ITEM_ID, features.CATEGORY, features.BRAND, features.ENTITIES,
             features.ATTRS_JSON)
    for batch in read_items(work, 4096, deterministic=True, features=names):
        for item_id, category, brand, entities, attrs in zip(
                *(batch[name].numpy() for name in names[:3]), batch[features.ENTITIES].to_list(),
                batch[features.ATTRS_JSON].numpy()):
            ids.append(item_id.decode("utf-8"))
            categories.append(category.decode("utf-8"))
            brands.append(brand.decode("utf-8"))
            contents.append(features.join_content(features.content_tokens(
                [entity.decode("utf-8") for entity in entities], json.loads(attrs))))
    return ids, categories, brands, contents


def build_serving_module(work: str, name: str) -> ServingModule:
    if not ablation_row(name).exportable:
        raise ValueError(f"cannot export {name!r}; exportable models: {EXPORTABLE}")
    layout = WorkLayout(work)
    model = load_trained_model(work, name)
    attributes = ItemAttributeTable(*_catalogue_attributes(work))
    count_tables = {table: CountTable(*read_count_table(work, table))
                    for table in (features.ITEM_ID, features.CATEGORY)}
    max_seq_len = load_preprocess_metadata(work)["max_seq_len"]
    if not ablation_row(name).cached_inputs:
        return ServingModule(model, attributes, count_tables, None, max_seq_len=max_seq_len)
    tower_dim = load_cached_metadata(work)["tower_dim"]
    user_tower = tf.saved_model.load(layout.user_tower_dir)
    return ServingModule(model, attributes, count_tables, load_item_table(work), user_tower,
                         max_seq_len=max_seq_len, tower_dim=tower_dim)


def _next_version(base_path: str) -> int:
    existing = [int(name.rstrip("/")) for name in tf.io.gfile.listdir(base_path)
                if name.rstrip("/").isdigit()] if tf.io.gfile.exists(base_path) else []
    return max(existing, default=0) + 1


def validate_and_publish(module: ServingModule, work: str, name: str, base_path: str,
                         min_auc: float | None = None) -> dict:
    version = _next_version(base_path)
    target = f"{base_path.rstrip('/')}/{version}"
    serialized = serialized_examples(work, "eval", VALIDATION_EXAMPLES,
                                     cached=ablation_row(name).cached_inputs)
    if not serialized:
        raise ExportRefused("the eval split is empty: nothing to validate the export on")
    in_memory = module.signatures()["predict_examples"]
    with atomic_directory(target) as temporary:
        save_signatures(module, temporary, module.signatures())
        write_warmup_requests(temporary, name, warmup_requests(module, serialized))
        first_batch = serialized[:256]
        expected = in_memory(examples=tf.constant(first_batch))["click_prob"].numpy()
        _check_in_fresh_process(temporary, first_batch, expected)
        scores = in_memory(examples=tf.constant(serialized))["click_prob"].numpy()
        labels = tf.io.parse_example(tf.constant(serialized), {
            features.CLICK: tf.io.FixedLenFeature([], tf.int64)})[features.CLICK].numpy()
        auc = roc_auc(labels, scores)
        if min_auc is not None and not auc >= min_auc:
            raise ExportRefused(f"click AUC {auc:.4f} on {len(serialized):,} validation "
                                f"examples is below --min-auc {min_auc}; not published")
    return {"model": name, "version": version, "path": target,
            "validation_click_auc": auc, "validation_examples": len(serialized)}


def _check_in_fresh_process(saved_model_dir: str, serialized: list[bytes],
                            expected: np.ndarray) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        examples_path = os.path.join(scratch, "examples.tfrecord")
        expected_path = os.path.join(scratch, "expected.npy")
        with tf.io.TFRecordWriter(examples_path) as writer:
            for record in serialized:
                writer.write(record)
        np.save(expected_path, expected)
        result = subprocess.run(
            # -P: the script's folder (ppm_tf/export, with a requests.py) stays off sys.path.
            [sys.executable, "-P", _FRESH_PROCESS_CHECK, saved_model_dir, examples_path,
             expected_path], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise ExportRefused(f"fresh-process validation failed:\n{result.stderr[-3000:]}")


def export_model(work: str, name: str, base_path: str, min_auc: float | None = None) -> dict:
    """Checks that ``name`` was trained (and what it reads exists), then builds, validates and
    publishes a new version under ``base_path``."""
    WorkLayout(work).require_stages(*ablation_row(name).required_stages, "train", model=name)
    return validate_and_publish(build_serving_module(work, name), work, name, base_path, min_auc)
