"""``ppm train --model NAME``: the paper's ablation rows (``registry.ROWS``), trained and
scored on eval.

Each run writes its weights to WORK/models/<name>/weights, its eval-split scores to
WORK/predictions/<name>.npz and its resolved config and cost (time, throughput, parameters)
to WORK/models/<name>/training.json.
"""
from __future__ import annotations

import dataclasses
import io
import math
from typing import Callable

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data.tfrecords import load_preprocess_metadata, read_cached, read_split
from ppm_tf.distribute import is_chief, save_path
from ppm_tf.fitting import EarlyStoppingConfig, FitResult, fit, trainable_parameters
from ppm_tf.models.config import PRETRAINED_HEAD_FIELDS, ModelConfig, preset
from ppm_tf.models.count_rates import CountRates
from ppm_tf.models.idrec import IDRec
from ppm_tf.models.logistic_regression import LogisticRegression
from ppm_tf.models.ppm import PPMOnCachedStates
from ppm_tf.models.tasks import RankingModel
from ppm_tf.models.unified import UnifiedModel
from ppm_tf.training import registry
from ppm_tf.training.registry import ablation_row
from ppm_tf.work_layout import PRETRAINED, WorkLayout, read_json, write_json

ID_VOCABULARIES = (features.USER_ID, features.ITEM_ID, features.CATEGORY, features.BRAND,
                   features.CONTENT_VOCABULARY)
PREDICTION_KEYS = (features.REQUEST_ID, features.USER_ID, features.ITEM_ID, features.CLICK,
                   features.ORDER, features.IS_COLD_ITEM, features.ITEM_AGE_DAYS,
                   features.HIST_LEN)

_BUILDERS: dict[str, Callable[..., RankingModel]] = {
    registry.IDREC: lambda vocabularies, oov, priors, config, name: IDRec(
        vocabularies, oov, config, priors, name=name),
    registry.IDREC_WITH_ITEM_VECTOR: lambda vocabularies, oov, priors, config, name: IDRec(
        vocabularies, oov, config, priors, extra_feature=features.PPM_ITEM_VEC, name=name),
    registry.PLUG_IN_HEAD: lambda vocabularies, oov, priors, config, name: PPMOnCachedStates(
        config, priors, name=name),
    registry.UNIFIED: lambda vocabularies, oov, priors, config, name: UnifiedModel(
        vocabularies, oov, config, priors, name=name),
    registry.LOGISTIC_REGRESSION: lambda vocabularies, oov, priors, config, name:
        LogisticRegression(vocabularies, oov, config, priors, name=name),
    registry.COUNT_RATES: lambda vocabularies, oov, priors, config, name: CountRates(
        priors, config, name=name),
}


def build_model(name: str, work: str, config: ModelConfig) -> RankingModel:
    row = ablation_row(name)
    layout = WorkLayout(work)
    vocabularies = {vocabulary: layout.vocab(vocabulary) for vocabulary in ID_VOCABULARIES}
    metadata = load_preprocess_metadata(work)
    return _BUILDERS[row.model](vocabularies, metadata["oov_buckets"], metadata["count_priors"],
                                config, name)


def read_examples(name: str, work: str, splits, batch_size: int, **options) -> tf.data.Dataset:
    """The split(s) with the inputs ``name`` needs: cached tensors or plain examples."""
    reader = read_cached if ablation_row(name).cached_inputs else read_split
    return reader(work, splits, batch_size, **options)


def count_examples(work: str, splits) -> int:
    per_split = read_json(WorkLayout(work).stats_json, "ppm preprocess")["splits"]
    return sum(per_split[split]["examples"] for split in splits)


def row_config(work: str, name: str, preset_name: str, overrides: dict | None = None
               ) -> ModelConfig:
    """Row ``name``'s config: the preset with ``overrides``, and for a row whose head starts
    from pre-training, the head as pre-training made it (``PRETRAINED_HEAD_FIELDS``, read
    from its training.json). ValueError naming the field when an override contradicts it."""
    config = dataclasses.replace(preset(preset_name), **(overrides or {}))
    if not ablation_row(name).head_from_pretraining:
        return config
    pretrained = trained_config(read_json(WorkLayout(work).training_summary(PRETRAINED),
                                          "ppm pretrain"))
    head = {field: getattr(pretrained, field) for field in PRETRAINED_HEAD_FIELDS}
    for field, value in (overrides or {}).items():
        if field in head and value != head[field]:
            raise ValueError(f"{field}: the plug-in head was pre-trained with {head[field]!r}, "
                             f"and {name} fine-tunes that head; to use {value!r}, pre-train "
                             f"with it (ppm pretrain --set {field}=...)")
    return dataclasses.replace(config, **head)


def resolve_preset(work: str, preset_name: str | None) -> str:
    """The preset asked for, else the one the work dir's earlier stages recorded."""
    resolved = preset_name or WorkLayout(work).recorded_preset()
    if resolved is None:
        raise ValueError(f"{work} records no preset (no encoders or pre-training yet): "
                         "pass --preset")
    return resolved


def initialise_head_from_pretraining(model: RankingModel, work: str, sample_batch) -> None:
    """Copies the pre-trained plug-in head's weights into ``model.head``."""
    model(sample_batch)  # creates the variables the checkpoint restores into
    checkpoint = tf.train.Checkpoint(head=model.head)
    checkpoint.read(WorkLayout(work).head_checkpoint).assert_existing_objects_matched()


def pace_pretrained_head(model: RankingModel, config: ModelConfig) -> None:
    """The pre-trained head fine-tunes at ``head_learning_rate_scale`` times the learning
    rate, or stays frozen at 0 (chosen on the valid split: README, "URM's integration")."""
    if config.head_learning_rate_scale == 0.0:
        model.head.trainable = False
    elif config.head_learning_rate_scale < 1.0:
        model.train_slowly(model.head, tf.keras.optimizers.Adam(
            config.learning_rate * config.head_learning_rate_scale))


def prepared_model(work: str, name: str, config: ModelConfig) -> RankingModel:
    """Row ``name`` built, its head from pre-training (paced) where the row says so, and
    compiled: ready for ``fit_on_splits``. Call it in the strategy's scope."""
    row = ablation_row(name)
    model = build_model(name, work, config)
    if row.head_from_pretraining:
        initialise_head_from_pretraining(
            model, work, next(iter(read_examples(name, work, row.splits, 2,
                                                 deterministic=True))))
        pace_pretrained_head(model, config)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    return model


def fit_on_splits(model: RankingModel, work: str, reader, splits, config: ModelConfig,
                  seed: int, epochs: int, min_steps: int, patience: int, backup_dir: str,
                  verbose: int = 1, request_group: int = 1) -> FitResult:
    """Fits ``model`` on ``splits`` read by ``reader`` (``read_split`` or ``read_cached``): up
    to ``epochs`` epochs (more when ``min_steps`` needs them), early-stopped on the ``valid``
    split's click AUC after ``patience`` epochs without a better one, the best restored.
    Each epoch reads its own seeded order, deterministically, so a resumed run ends where an
    uninterrupted one ends. With a ranking loss, each request's impressions are read
    together, so they share a batch; with a ``request_group`` over 1, groups of up to that
    many of them (PPM pre-training: its tower runs once per group)."""
    examples = count_examples(work, splits)
    steps_per_epoch = math.ceil(examples / config.batch_size)
    epochs = max(epochs, math.ceil(min_steps / max(steps_per_epoch, 1)))

    whole_requests = config.ranking_loss != "none"

    def epoch_data(epoch: int):
        return reader(work, splits, config.batch_size, shuffle=True, deterministic=True,
                      seed=seed * 1000 + epoch, group_requests=whole_requests or request_group > 1,
                      max_group=None if whole_requests else request_group)

    validation = reader(work, "valid", config.batch_size, deterministic=True)
    return fit(model, epoch_data, epochs, backup_dir, examples, verbose,
               steps_per_epoch=steps_per_epoch, validation_data=validation,
               early_stopping=EarlyStoppingConfig(patience,
                                                  keep_start=model.starts_at_baseline),
               save_every_steps=config.save_every_steps)


def train_ablation(work: str, name: str, preset_name: str | None = None, seed: int = 0,
                   epochs: int | None = None, verbose: int = 1, *,
                   strategy: tf.distribute.Strategy | None = None,
                   overrides: dict | None = None) -> dict:
    """Trains row ``name`` under ``strategy`` (default: one process); ``overrides`` replace
    preset fields (e.g. ``{"save_every_steps": 100}``) and are recorded in the config. With
    several workers, only the chief writes the run's outputs."""
    strategy = strategy or tf.distribute.get_strategy()
    row = ablation_row(name)
    WorkLayout(work).require_stages(*row.required_stages)
    tf.keras.utils.set_random_seed(seed)
    preset_name = resolve_preset(work, preset_name)
    config = row_config(work, name, preset_name, overrides)
    reader = read_cached if row.cached_inputs else read_split
    with strategy.scope():
        model = prepared_model(work, name, config)
    if row.fine_tuned:
        result = fit_on_splits(model, work, reader, row.splits, config, seed,
                               epochs or config.train_epochs, config.min_train_steps,
                               config.patience, WorkLayout(work).backup(name), verbose)
    else:  # zero-shot or not learnt: scored as it starts, at no training cost
        result = FitResult(train_seconds=0.0, examples=0, epochs=0, final_loss=math.nan)
    extra = {"preset": preset_name, "seed": seed, "splits": list(row.splits),
             "replicas": strategy.num_replicas_in_sync}
    if not is_chief(strategy):
        with save_path(WorkLayout(work).weights(name), strategy) as scratch:
            tf.train.Checkpoint(model=model).write(scratch)  # a collective op: see save_path
        return {"model": name, **extra, "written": False}
    return save_trained_model(model, name, work, config, result, extra)


def save_trained_model(model: RankingModel, name: str, work: str, config: ModelConfig,
                       result: FitResult, extra: dict | None = None) -> dict:
    """What ``ppm evaluate`` and ``ppm export`` read of a trained model: its weights, its
    eval-split predictions, and training.json (the resolved config and the cost). Also for
    models fitted by hand, e.g. in a notebook."""
    layout = WorkLayout(work)
    tf.train.Checkpoint(model=model).write(layout.weights(name))
    write_predictions(model, name, work, config.batch_size)
    summary = {"model": name, **(extra or {}), "config": config.to_dict(),
               "train_seconds": result.train_seconds,
               "examples_per_second": result.examples_per_second,
               "train_examples": result.examples, "epochs": result.epochs,
               "resumed_from": {"epoch": result.first_epoch, "step": result.first_step},
               "steps_per_epoch": result.steps_per_epoch, "best_epoch": result.best_epoch,
               "validation_click_auc": list(result.validation_curve),
               "validation_click_auc_at_start": result.validation_start,
               "final_loss": result.final_loss if math.isfinite(result.final_loss) else None,
               "trainable_params": trainable_parameters(model)}
    write_json(layout.training_summary(name), summary)
    return summary


def load_training_summary(work: str, name: str) -> dict:
    """A trained model's training.json."""
    return read_json(WorkLayout(work).training_summary(name),
                     f"ppm train --work WORK --model {name}")


def trained_config(summary: dict) -> ModelConfig:
    """The config a model was trained with (runs before configs were stored: their preset)."""
    if "config" in summary:
        return ModelConfig.from_dict(summary["config"])
    return preset(summary["preset"])


def score_split(model: RankingModel, name: str, work: str, split: str,
                batch_size: int) -> dict[str, np.ndarray]:
    """The split's ``PREDICTION_KEYS`` (strings decoded) and the model's click and order
    probabilities, in the reader's one deterministic order."""
    columns: dict[str, list[np.ndarray]] = {key: [] for key in PREDICTION_KEYS}
    columns.update(click_prob=[], order_prob=[])
    # One graph for every batch: run eagerly, scoring took as long as a fit.
    score = tf.function(model.predict_probabilities, reduce_retracing=True)
    for batch in read_examples(name, work, split, batch_size, deterministic=True):
        for key in PREDICTION_KEYS:
            columns[key].append(batch[key].numpy())
        for key, values in score(batch).items():
            columns[key].append(values.numpy())
    arrays = {key: np.concatenate(parts) for key, parts in columns.items()}
    for key, values in arrays.items():
        if values.dtype == object:  # TF strings come back as bytes
            arrays[key] = np.char.decode(values.astype(np.bytes_), "utf-8")
    return arrays


def write_predictions(model: RankingModel, name: str, work: str, batch_size: int) -> None:
    """Scores the eval split and stores the scores beside the ids, labels and slices."""
    arrays = score_split(model, name, work, "eval", batch_size)
    path = WorkLayout(work).predictions(name)
    tf.io.gfile.makedirs(path.rpartition("/")[0])
    buffer = io.BytesIO()  # numpy's zip writer seeks, which GFile does not allow
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())
