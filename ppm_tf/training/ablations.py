"""``ppm train --model NAME``: the paper's ablation rows, trained and scored on eval.

- ``base``: IDRec on the recent window (the paper's Base);
- ``qm_ep``: IDRec + the candidate's frozen ME vector as an extra feature;
- ``ppm``: PPM alone (the pre-trained head on cached user states), fine-tuned on the window;
- ``urm``: IDRec + PPM's plug-in head, end to end on the window (the paper's URM);
- ``base_long``: IDRec on the long span (pretrain + train): the iteration-efficiency baseline.

Each run writes its weights to WORK/models/<name>/, its eval-split scores to
WORK/predictions/<name>.npz and its cost (time, throughput, parameters) to training.json.
"""
from __future__ import annotations

import io
import json

import numpy as np
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data.tfrecords import load_preprocess_metadata, read_cached, read_split
from ppm_tf.models.config import ModelConfig, preset
from ppm_tf.models.idrec import IDRec
from ppm_tf.models.ppm import PPMOnCachedStates
from ppm_tf.models.tasks import RankingModel
from ppm_tf.models.unified import UnifiedModel
from ppm_tf.training.fitting import FitResult, fit, trainable_parameters
from ppm_tf.training.pretrain import head_checkpoint_path
from ppm_tf.work_layout import WorkLayout

MODELS = ("base", "qm_ep", "ppm", "urm", "base_long")
CACHED_INPUT_MODELS = ("qm_ep", "ppm", "urm")
HEAD_FROM_PRETRAINING = ("ppm", "urm")
TRAINING_SPLITS = {"base_long": ("pretrain", "train")}
ID_VOCABULARIES = (features.USER_ID, features.ITEM_ID, features.CATEGORY, features.BRAND)
PREDICTION_KEYS = (features.REQUEST_ID, features.USER_ID, features.ITEM_ID, features.CLICK,
                   features.ORDER, features.IS_COLD_ITEM, features.ITEM_AGE_DAYS,
                   features.HIST_LEN)


def build_model(name: str, work: str, config: ModelConfig) -> RankingModel:
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; expected one of {MODELS}")
    layout = WorkLayout(work)
    vocabularies = {vocabulary: layout.vocab(vocabulary) for vocabulary in ID_VOCABULARIES}
    oov_buckets = load_preprocess_metadata(work)["oov_buckets"]
    if name == "ppm":
        return PPMOnCachedStates(config, name=name)
    if name == "urm":
        return UnifiedModel(vocabularies, oov_buckets, config, name=name)
    extra = features.PPM_ITEM_VEC if name == "qm_ep" else None
    return IDRec(vocabularies, oov_buckets, config, extra_feature=extra, name=name)


def read_examples(name: str, work: str, splits, batch_size: int, **options) -> tf.data.Dataset:
    """The split(s) with the inputs ``name`` needs: cached tensors or plain examples."""
    reader = read_cached if name in CACHED_INPUT_MODELS else read_split
    return reader(work, splits, batch_size, **options)


def _count_examples(work: str, splits) -> int:
    with tf.io.gfile.GFile(WorkLayout(work).stats_json) as handle:
        per_split = json.load(handle)["splits"]
    return sum(per_split[split]["examples"] for split in splits)


def initialise_head_from_pretraining(model: RankingModel, work: str, sample_batch) -> None:
    """Copies the pre-trained plug-in head's weights into ``model.head``."""
    model(sample_batch)  # creates the variables the checkpoint restores into
    checkpoint = tf.train.Checkpoint(head=model.head)
    checkpoint.read(head_checkpoint_path(work)).assert_existing_objects_matched()


def train_ablation(work: str, name: str, preset_name: str = "demo", seed: int = 0,
                   epochs: int | None = None, verbose: int = 1) -> dict:
    tf.keras.utils.set_random_seed(seed)
    config = preset(preset_name)
    layout = WorkLayout(work)
    splits = TRAINING_SPLITS.get(name, ("train",))
    model = build_model(name, work, config)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))

    def epoch_data(epoch: int):
        return read_examples(name, work, splits, config.batch_size, shuffle=True,
                             seed=seed * 1000 + epoch)

    if name in HEAD_FROM_PRETRAINING:
        initialise_head_from_pretraining(model, work, next(iter(epoch_data(0))))
    result = fit(model, epoch_data, epochs or config.train_epochs,
                 layout.model_dir(name) + "/backup", _count_examples(work, splits), verbose)
    return save_trained_model(model, name, work, preset_name, result,
                              {"seed": seed, "splits": list(splits)})


def save_trained_model(model: RankingModel, name: str, work: str, preset_name: str,
                       result: FitResult, extra: dict | None = None) -> dict:
    """What ``ppm evaluate`` and ``ppm export`` read of a trained model: its weights, its
    eval-split predictions, and training.json (preset and cost). Also for models fitted by
    hand, e.g. in a notebook."""
    layout = WorkLayout(work)
    tf.train.Checkpoint(model=model).write(layout.model_dir(name) + "/weights")
    write_predictions(model, name, work, preset(preset_name).batch_size)
    summary = {"model": name, "preset": preset_name, **(extra or {}),
               "train_seconds": result.train_seconds,
               "examples_per_second": result.examples_per_second,
               "train_examples": result.examples, "epochs": result.epochs,
               "final_loss": result.final_loss, "trainable_params": trainable_parameters(model)}
    with tf.io.gfile.GFile(layout.model_dir(name) + "/training.json", "w") as handle:
        json.dump(summary, handle, indent=2)
    return summary


def write_predictions(model: RankingModel, name: str, work: str, batch_size: int) -> None:
    """Scores the eval split and stores the scores beside the ids, labels and slices."""
    columns: dict[str, list[np.ndarray]] = {key: [] for key in PREDICTION_KEYS}
    columns.update(click_prob=[], order_prob=[])
    for batch in read_examples(name, work, "eval", batch_size, deterministic=True):
        for key in PREDICTION_KEYS:
            columns[key].append(batch[key].numpy())
        for key, values in model.predict_probabilities(batch).items():
            columns[key].append(values.numpy())
    path = WorkLayout(work).predictions(name)
    tf.io.gfile.makedirs(path.rpartition("/")[0])
    buffer = io.BytesIO()  # numpy's zip writer seeks, which GFile does not allow
    arrays = {key: np.concatenate(parts) for key, parts in columns.items()}
    for key, values in arrays.items():
        if values.dtype == object:  # TF strings come back as bytes
            arrays[key] = np.char.decode(values.astype(np.bytes_), "utf-8")
    np.savez(buffer, **arrays)
    with tf.io.gfile.GFile(path, "wb") as handle:
        handle.write(buffer.getvalue())
