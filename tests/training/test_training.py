"""Training reliability: NaN losses stop the run without writing a model, an interrupted run
resumes to the same weights as an uninterrupted one, and a missing cached feature is named.
Work directories are written here by hand (cached TFRecords, vocabularies, metadata)."""
import dataclasses
import json
import shutil

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data.tfrecords import read_cached
from ppm_tf.models.config import preset
from ppm_tf.models.count_rates import CountRates
from ppm_tf.models.item_table import ItemVectorTable
from ppm_tf.models.ppm import PPM
from ppm_tf.models.tasks import ClickOrderTask, RankingModel
from ppm_tf.models.unified import UnifiedModel
from ppm_tf.fitting import (VALIDATION_METRIC, EarlyStoppingConfig, ResumableEarlyStopping,
                            TrainingDiverged, fit)
from ppm_tf.training import ablations, pretrain
from ppm_tf.work_layout import PRETRAINED, WorkLayout

CONFIG = preset("tiny")
MAX_SEQ_LEN, ITEM_DIM, OOV_BUCKETS = 4, 6, 2
ITEMS = [f"i{index}" for index in range(8)]
VOCABULARIES = {features.USER_ID: [f"u{index}" for index in range(5)],
                features.ITEM_ID: ITEMS, features.CATEGORY: ["lamp", "sofa"],
                features.BRAND: ["kelta", "norra"], features.CONTENT_VOCABULARY: ["red", "oak"]}
TS = 1_742_600_000
PRIORS = {"click_rate": 0.3, "order_rate": 0.15}
SPLIT_SIZES = {"train": 48, "valid": 16, "eval": 20}


def cached_record(index: int, split: str, rng: np.random.Generator) -> dict:
    """One impression with the tensors precompute adds; deterministic given ``rng``."""
    history = index % (MAX_SEQ_LEN + 1)
    item = ITEMS[index % len(ITEMS)]
    return {
        features.REQUEST_ID: f"{split}-r{index // 2}", features.USER_ID: f"u{index % 5}",
        features.ITEM_ID: item, features.CATEGORY: ["lamp", "sofa"][index % 2],
        features.BRAND: ["kelta", "", "norra"][index % 3], features.TS: TS + index,
        features.HIST_ITEM_IDS: [ITEMS[(index + k) % len(ITEMS)] for k in range(history)],
        features.HIST_CATEGORIES: ["sofa"] * history,
        features.ITEM_CONTENT: ["red\x1foak", "oak", ""][index % 3],
        features.HIST_CONTENT: ["red"] * history,
        features.HIST_TS: [TS - 600 * (k + 1) for k in range(history)],
        features.HIST_ACTIONS: [features.ACTION_CLICKED] * history,
        features.HIST_LEN: history, features.CLICK: int(index % 3 == 0),
        features.ORDER: int(index % 6 == 0), features.IS_COLD_ITEM: int(index % 4 == 0),
        features.ITEM_AGE_DAYS: float(index % 40), features.SPLIT: split,
        **{name: [float(index % (offset + 3)), float(index % 2), 0.0, 1.0, 0.0, 0.0]
           for offset, name in enumerate(features.COUNT_FEATURES)},
        features.PPM_USER_STATES: rng.normal(size=MAX_SEQ_LEN * CONFIG.tower_dim).tolist(),
        features.PPM_USER_MASK: [1] * history + [0] * (MAX_SEQ_LEN - history),
        features.PPM_ITEM_VEC: rng.normal(size=ITEM_DIM).tolist(),
    }


def write_cached_work(root, *, drop: str | None = None, nan_item_vec: bool = False) -> str:
    """A work dir as precompute leaves it (cached train/eval shards, vocabularies, metadata),
    optionally without one cached feature or with NaN item vectors."""
    layout = WorkLayout(str(root))
    table = tuple(feature for feature in features.CACHED_EXAMPLE_FEATURES if feature.name != drop)
    rng = np.random.default_rng(0)
    for split, size in SPLIT_SIZES.items():
        records = [cached_record(index, split, rng) for index in range(size)]
        if nan_item_vec:
            for record in records:
                record[features.PPM_ITEM_VEC][0] = float("nan")
        path = layout.cached_prefix(split) + "-00000-of-00001.tfrecord.gz"
        tf.io.gfile.makedirs(path.rpartition("/")[0])
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for record in records:
                writer.write(features.encode_example(record, table, MAX_SEQ_LEN))
    for name, tokens in VOCABULARIES.items():
        tf.io.gfile.makedirs(layout.path("vocab"))
        with tf.io.gfile.GFile(layout.vocab(name), "w") as handle:
            handle.write("\n".join(tokens) + "\n")
    (root / "preprocess.json").write_text(json.dumps({"max_seq_len": MAX_SEQ_LEN,
                                                      "oov_buckets": OOV_BUCKETS,
                                                      "count_priors": PRIORS}))
    (root / "stats.json").write_text(json.dumps(
        {"splits": {split: {"examples": size} for split, size in SPLIT_SIZES.items()}}))
    (root / "cached" / "metadata.json").write_text(json.dumps(
        {"max_seq_len": MAX_SEQ_LEN, "tower_dim": CONFIG.tower_dim, "item_dim": ITEM_DIM}))
    return str(root)


def write_pretrained_head(work: str, config=CONFIG) -> None:
    """The plug-in head checkpoint and the training.json with its config that ``ppm
    pretrain`` leaves, from an untrained PPM."""
    model = PPM(ItemVectorTable(ITEMS, np.random.default_rng(1).normal(
        size=(len(ITEMS), ITEM_DIM)).astype(np.float32)), config, MAX_SEQ_LEN, PRIORS)
    batch = deterministic_batches()[0]
    model({name: tf.constant(batch[name]) for name in (
        features.ITEM_ID, *features.USER_STATE_INPUTS, *features.COUNT_FEATURES)})
    layout = WorkLayout(work)
    tf.train.Checkpoint(head=model.head).write(layout.head_checkpoint)
    with open(layout.training_summary(PRETRAINED), "w") as handle:
        json.dump({"model": PRETRAINED, "preset": "tiny", "config": config.to_dict()}, handle)


def files_under(path) -> list[str]:
    return sorted(str(child.relative_to(path)) for child in path.rglob("*") if child.is_file())


# NaN losses.

class LinearOnItemVector(RankingModel):
    """Logits linear in ``ppm_item_vec``: a NaN there makes the loss NaN."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.click = tf.keras.layers.Dense(1)
        self.order = tf.keras.layers.Dense(1)

    def call(self, batch_features, training=None):
        vectors = batch_features[features.PPM_ITEM_VEC]
        return {"click": tf.squeeze(self.click(vectors), -1),
                "order": tf.squeeze(self.order(vectors), -1)}


def test_a_nan_loss_stops_training_with_a_clear_message_and_keeps_no_backup(tmp_path):
    tf.keras.utils.set_random_seed(0)
    batches = deterministic_batches()
    batches[2][features.PPM_ITEM_VEC][0, 0] = np.nan
    model = LinearOnItemVector()
    model.compile(optimizer=tf.keras.optimizers.Adam(1e-3))
    backup = tmp_path / "backup"
    with pytest.raises(TrainingDiverged, match=r"training loss became nan after 1 epoch\(s\); "
                                               r"no model was written"):
        fit(model, dataset_of(batches), 3, str(backup), examples_per_epoch=64, verbose=0)
    # Nothing a later run would resume from.
    assert not backup.exists() or files_under(backup) == []


def test_nan_features_stop_train_ablation_and_nothing_is_written(tmp_path):
    """Through IDRec the loss can stay finite (the fused Dense+ReLU kernel turns NaN into 0
    going forward) while the gradients make the weights NaN: the run must still stop."""
    work = write_cached_work(tmp_path, nan_item_vec=True)
    with pytest.raises(TrainingDiverged, match="no model was written"):
        ablations.train_ablation(work, "qm_ep", "tiny", verbose=0)
    assert not (tmp_path / "predictions").exists()
    model_dir = tmp_path / "models" / "qm_ep"
    # No weights, no training.json, no backup.
    assert not model_dir.exists() or files_under(model_dir) == []


# Resume after an interruption.

RESUME_CONFIG = dataclasses.replace(preset("tiny"), dropout=0.0)
BATCHES_PER_EPOCH, BATCH_SIZE = 4, 16


def deterministic_batches() -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(4)
    records = [cached_record(index, "train", rng)
               for index in range(BATCHES_PER_EPOCH * BATCH_SIZE)]
    names = [feature.name for feature in features.CACHED_EXAMPLE_FEATURES]
    batches = []
    for start in range(0, len(records), BATCH_SIZE):
        chunk = records[start:start + BATCH_SIZE]
        batch = {}
        for name in names:
            values = [record[name] for record in chunk]
            if name in (features.HIST_ITEM_IDS, features.HIST_CATEGORIES, features.HIST_CONTENT):
                values = [value + [""] * (MAX_SEQ_LEN - len(value)) for value in values]
            elif name in (features.HIST_TS, features.HIST_ACTIONS):
                values = [value + [0] * (MAX_SEQ_LEN - len(value)) for value in values]
            batch[name] = np.array(values)
        batch[features.PPM_USER_STATES] = batch[features.PPM_USER_STATES].reshape(
            len(chunk), MAX_SEQ_LEN, CONFIG.tower_dim).astype(np.float32)
        batch[features.PPM_ITEM_VEC] = batch[features.PPM_ITEM_VEC].astype(np.float32)
        batches.append(batch)
    return batches


class SimulatedCrash(Exception):
    pass


class Batches:
    """A generator factory: the same batches each epoch; optionally crashes in the middle of
    epoch ``crash_in_epoch`` (1-based), as a killed worker would."""

    def __init__(self, batches, crash_in_epoch: int | None = None):
        self.batches = batches
        self.crash_in_epoch = crash_in_epoch
        self.epochs_started = 0

    def __call__(self):
        self.epochs_started += 1
        for index, batch in enumerate(self.batches):
            if self.epochs_started == self.crash_in_epoch and index == len(self.batches) // 2:
                raise SimulatedCrash(f"simulated crash in epoch {self.epochs_started}")
            yield batch


def dataset_of(batches, crash_in_epoch: int | None = None) -> tf.data.Dataset:
    """The batches as a dataset of known length. (With an unknown length, tf-keras adds one
    to the optimizer's step count in the first epoch of every ``fit`` call, so a resumed run's
    Adam bias correction is one step ahead of an uninterrupted run's.)"""
    signature = {name: tf.TensorSpec((None, *values.shape[1:]),
                                     tf.string if values.dtype.kind in "US" else
                                     tf.as_dtype(values.dtype))
                 for name, values in batches[0].items()}
    dataset = tf.data.Dataset.from_generator(Batches(batches, crash_in_epoch),
                                             output_signature=signature)
    return dataset.apply(tf.data.experimental.assert_cardinality(len(batches)))


def compiled_urm(tmp_path, config=RESUME_CONFIG) -> UnifiedModel:
    vocab_dir = tmp_path / "vocab"
    vocab_dir.mkdir(exist_ok=True)
    vocabularies = {}
    for name, tokens in VOCABULARIES.items():
        (vocab_dir / f"{name}.txt").write_text("\n".join(tokens) + "\n")
        vocabularies[name] = str(vocab_dir / f"{name}.txt")
    model = UnifiedModel(vocabularies, OOV_BUCKETS, config, PRIORS, name="urm")
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    return model


def assert_same_weights(model, other):
    assert len(model.trainable_variables) == len(other.trainable_variables)
    for mine, theirs in zip(model.trainable_variables, other.trainable_variables):
        np.testing.assert_allclose(mine.numpy(), theirs.numpy(), rtol=1e-4, atol=1e-5,
                                   err_msg=mine.name)


@pytest.mark.slow  # three fits of URM: whole, interrupted, resumed
@pytest.mark.parametrize("save_every_steps", [None, 1])
def test_an_interrupted_fit_resumes_to_the_weights_of_an_uninterrupted_one(
        tmp_path, save_every_steps):
    """Crashed in the middle of epoch 2, a rerun resumes from the last backup (the end of
    epoch 1, or the last step with step-level backups) and ends with the same weights and
    the whole run's cost."""
    epochs, examples = 3, BATCHES_PER_EPOCH * BATCH_SIZE
    batches = deterministic_batches()

    tf.keras.utils.set_random_seed(0)
    uninterrupted = compiled_urm(tmp_path)
    complete = fit(uninterrupted, dataset_of(batches), epochs, str(tmp_path / "backup_a"),
                   examples, verbose=0, save_every_steps=save_every_steps)
    assert complete.epochs == epochs and complete.examples == epochs * examples

    backup = tmp_path / "backup_b"
    tf.keras.utils.set_random_seed(0)
    with pytest.raises(tf.errors.OpError, match="simulated crash in epoch 2"):
        fit(compiled_urm(tmp_path), dataset_of(batches, crash_in_epoch=2), epochs, str(backup),
            examples, verbose=0, save_every_steps=save_every_steps)
    assert files_under(backup), "epoch 1 left no backup to resume from"

    # A new process would build a new model, initialised differently: the backup decides.
    tf.keras.utils.set_random_seed(123)
    resumed_model = compiled_urm(tmp_path)
    resumed = fit(resumed_model, dataset_of(batches), epochs, str(backup), examples, verbose=0,
                  save_every_steps=save_every_steps)
    assert resumed.first_epoch == 1
    assert resumed.epochs == epochs  # the whole run's cost, not only the resumed part
    assert resumed.examples == epochs * examples
    assert_same_weights(resumed_model, uninterrupted)
    assert int(resumed_model.optimizer.iterations) == epochs * BATCHES_PER_EPOCH
    assert not backup.exists() or files_under(backup) == []  # finished: backup cleared


def test_each_epoch_runs_once_and_the_progress_bar_counts_all_epochs(tmp_path, capsys):
    model = compiled_urm(tmp_path)
    result = fit(model, dataset_of(deterministic_batches()), 3, str(tmp_path / "backup"),
                 BATCHES_PER_EPOCH * BATCH_SIZE, verbose=2)
    assert result.epochs == 3 and int(model.optimizer.iterations) == 3 * BATCHES_PER_EPOCH
    printed = capsys.readouterr().out
    assert all(f"Epoch {epoch}/3" in printed for epoch in (1, 2, 3)), printed


# Early stopping on the valid split.

def test_early_stopping_restores_the_best_epoch_and_records_the_curve(tmp_path):
    batches = deterministic_batches()
    tf.keras.utils.set_random_seed(0)
    model = compiled_urm(tmp_path, dataclasses.replace(RESUME_CONFIG, learning_rate=0.05))
    weights_after = []

    class Snapshot(tf.keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            weights_after.append([v.numpy().copy() for v in self.model.trainable_variables])

    result = fit(model, dataset_of(batches), 8, str(tmp_path / "backup"), 64, verbose=0,
                 validation_data=dataset_of(batches[:2]),
                 early_stopping=EarlyStoppingConfig(patience=1), callbacks=[Snapshot()])
    curve = result.validation_curve
    assert len(curve) == result.epochs == len(weights_after)
    assert curve[result.best_epoch - 1] == max(curve)
    if result.epochs < 8:  # stopped: the epoch after the best did not beat it
        assert result.epochs == result.best_epoch + 1
    for mine, best in zip(model.trainable_variables, weights_after[result.best_epoch - 1]):
        np.testing.assert_array_equal(mine.numpy(), best)


def test_early_stopping_state_survives_a_crash(tmp_path):
    """What a resumed run's early stopping knows: best value, patience count, best weights."""
    model = compiled_urm(tmp_path)
    model(deterministic_batches()[0])
    config = EarlyStoppingConfig(patience=3)
    before = ResumableEarlyStopping(str(tmp_path / "backup"), config)
    before.set_model(model)
    before.on_train_begin()
    before.on_epoch_end(0, {VALIDATION_METRIC: 0.6})
    best = [weight.copy() for weight in model.get_weights()]
    before.on_epoch_end(1, {VALIDATION_METRIC: 0.7})
    best = [weight.copy() for weight in model.get_weights()]
    model.set_weights([weight + 1 for weight in best])  # epoch 2 moves the weights on
    before.on_epoch_end(2, {VALIDATION_METRIC: 0.65})

    after = ResumableEarlyStopping(str(tmp_path / "backup"), config)  # a new process
    after.set_model(model)
    after.on_train_begin()
    assert (after.best, after.best_epoch, after.wait) == (pytest.approx(0.7), 1, 1)
    after.on_epoch_end(2, {VALIDATION_METRIC: 0.0})  # redone after the crash: not counted
    assert after.wait == 1
    after.on_train_end()
    for mine, theirs in zip(model.get_weights(), best):
        np.testing.assert_array_equal(mine, theirs)


def test_a_run_that_keeps_its_start_scores_it_first_and_restores_it_when_no_epoch_beats_it(
        tmp_path):
    batches = deterministic_batches()
    model = compiled_urm(tmp_path)  # starts at the pre-trained head's logits
    assert model.starts_at_baseline
    model(batches[0])
    start = [weight.copy() for weight in model.get_weights()]
    config = EarlyStoppingConfig(patience=1, keep_start=True)
    stopper = ResumableEarlyStopping(str(tmp_path / "backup"), config,
                                     score_start=dataset_of(batches[:2]))
    stopper.set_model(model)
    stopper.on_train_begin()
    scored = model.evaluate(dataset_of(batches[:2]), verbose=0, return_dict=True)["click_auc"]
    assert stopper.start == pytest.approx(scored) and stopper.best_epoch == -1
    model.set_weights([weight + 1 for weight in start])  # epoch 1 moves the weights on
    stopper.on_epoch_end(0, {VALIDATION_METRIC: stopper.start - 0.1})

    resumed = ResumableEarlyStopping(str(tmp_path / "backup"), config)  # a new process
    resumed.set_model(model)
    resumed.on_train_begin()
    assert (resumed.start, resumed.best_epoch) == (pytest.approx(scored), -1)
    resumed.on_epoch_end(1, {VALIDATION_METRIC: resumed.start - 0.05})
    resumed.on_train_end()
    for mine, theirs in zip(model.get_weights(), start):
        np.testing.assert_array_equal(mine, theirs)


def test_fit_records_the_start_it_kept_or_beat(tmp_path):
    batches = deterministic_batches()
    tf.keras.utils.set_random_seed(0)
    model = compiled_urm(tmp_path)  # starts at the pre-trained head's logits
    result = fit(model, dataset_of(batches), 3, str(tmp_path / "backup"), 64, verbose=0,
                 validation_data=dataset_of(batches[:2]),
                 early_stopping=EarlyStoppingConfig(patience=1, keep_start=True))
    candidates = (result.validation_start, *result.validation_curve)
    assert result.validation_start is not None
    assert candidates[result.best_epoch] == max(candidates)


# Missing cached features.

@pytest.mark.parametrize("model_name, missing", [
    ("urm", features.PPM_ITEM_VEC),
    ("ppm", features.PPM_USER_MASK),
    ("urm", features.PPM_USER_STATES),
])
def test_a_missing_cached_feature_is_a_clear_error_naming_it(tmp_path, model_name, missing):
    work = write_cached_work(tmp_path, drop=missing)
    write_pretrained_head(work)
    with pytest.raises(tf.errors.InvalidArgumentError, match=f"Feature: {missing} "):
        ablations.train_ablation(work, model_name, "tiny", verbose=0)
    assert not tf.io.gfile.exists(WorkLayout(work).predictions(model_name))
    assert not tf.io.gfile.exists(WorkLayout(work).model_dir(model_name) + "/training.json")


def test_cached_models_without_precompute_say_to_run_it(tmp_path):
    work = write_cached_work(tmp_path)
    (tmp_path / "cached" / "metadata.json").unlink()
    with pytest.raises(FileNotFoundError, match="ppm pretrain"):
        ablations.train_ablation(work, "urm", "tiny", verbose=0)
    write_pretrained_head(work)
    with pytest.raises(FileNotFoundError, match="ppm precompute"):
        ablations.train_ablation(work, "urm", "tiny", verbose=0)


def test_rows_on_the_pretrained_head_take_its_form_from_pretraining(tmp_path):
    work = write_cached_work(tmp_path)
    write_pretrained_head(work)  # the preset's head: with the count offset
    summary = ablations.train_ablation(work, "ppm_zero_shot", "tiny", verbose=0)
    assert summary["config"]["head_count_offset"] is True
    # An untrained head with the count offset scores what the counts score.
    predictions = np.load(WorkLayout(work).predictions("ppm_zero_shot"))
    counts = ablations.score_split(CountRates(PRIORS), "ppm_zero_shot", work, "eval", 64)
    np.testing.assert_allclose(predictions["click_prob"], counts["click_prob"], rtol=1e-5)

    write_pretrained_head(work, dataclasses.replace(CONFIG, head_count_offset=False))
    for name in ("ppm_zero_shot", "ppm", "urm"):
        assert ablations.row_config(work, name, "tiny").head_count_offset is False
    assert ablations.row_config(work, "base", "tiny").head_count_offset is True  # no head
    with pytest.raises(ValueError, match="head_count_offset: the plug-in head was pre-trained "
                                         "with False, and urm fine-tunes that head"):
        ablations.train_ablation(work, "urm", "tiny", verbose=0,
                                 overrides={"head_count_offset": True})


def test_a_run_stored_before_the_heads_count_offset_existed_is_rebuilt_without_it(tmp_path):
    work = write_cached_work(tmp_path)
    write_pretrained_head(work, dataclasses.replace(CONFIG, head_count_offset=False))
    summary_path = WorkLayout(work).training_summary(PRETRAINED)
    with open(summary_path) as handle:
        summary = json.load(handle)
    del summary["config"]["head_count_offset"]
    with open(summary_path, "w") as handle:
        json.dump(summary, handle)
    assert ablations.trained_config(summary).head_count_offset is False
    assert ablations.row_config(work, "urm", "tiny").head_count_offset is False


def test_an_unknown_model_name_lists_the_ablations(tmp_path):
    with pytest.raises(ValueError, match="unknown model 'dcn'.*'urm'"):
        ablations.build_model("dcn", str(tmp_path), CONFIG)


# What a finished run leaves for `ppm evaluate`.

def test_train_ablation_writes_weights_predictions_and_its_cost(tmp_path):
    work = write_cached_work(tmp_path)
    write_pretrained_head(work)
    summary = ablations.train_ablation(work, "urm", "tiny", verbose=0)
    layout = WorkLayout(work)
    assert summary["trainable_params"] > 0 and summary["train_seconds"] > 0
    assert summary["train_examples"] == SPLIT_SIZES["train"] * CONFIG.train_epochs
    with open(layout.model_dir("urm") + "/training.json") as handle:
        assert json.load(handle) == summary
    assert tf.io.gfile.glob(layout.model_dir("urm") + "/weights*")
    predictions = np.load(layout.predictions("urm"))
    assert set(predictions.files) == {*ablations.PREDICTION_KEYS, "click_prob", "order_prob"}
    assert all(predictions[key].shape == (SPLIT_SIZES["eval"],) for key in predictions.files)
    assert predictions[features.USER_ID].dtype.kind == "U"  # decoded strings, not bytes
    assert np.all((predictions["click_prob"] > 0) & (predictions["click_prob"] < 1))
    assert sorted(predictions[features.REQUEST_ID].tolist()) == sorted(
        f"eval-r{index // 2}" for index in range(SPLIT_SIZES["eval"]))


# In-request ranking loss (README, "In-request ranking loss").

def test_urm_trains_with_a_listwise_loss_on_requests_read_together(tmp_path):
    work = write_cached_work(tmp_path)
    write_pretrained_head(work)
    summary = ablations.train_ablation(work, "urm", "tiny", verbose=0,
                                       overrides={"ranking_loss": "listwise"})
    assert summary["config"]["ranking_loss"] == "listwise"
    assert np.isfinite(summary["final_loss"])
    assert summary["train_examples"] == SPLIT_SIZES["train"] * CONFIG.train_epochs
    assert all(0.0 < auc < 1.0 for auc in summary["validation_click_auc"])


@pytest.mark.parametrize("ranking_loss, request_group, expected", [
    ("none", 1, {"group_requests": False, "max_group": 1}),
    ("none", 4, {"group_requests": True, "max_group": 4}),
    ("listwise", 4, {"group_requests": True, "max_group": None}),  # pairs need whole requests
])
def test_fit_reads_requests_together_as_the_loss_and_the_request_group_ask(
        tmp_path, ranking_loss, request_group, expected):
    work = write_cached_work(tmp_path)
    config = dataclasses.replace(CONFIG, ranking_loss=ranking_loss)
    training_reads = []

    def reader(work, splits, batch_size, **options):
        if options.get("shuffle"):
            training_reads.append({name: options[name] for name in expected})
        return read_cached(work, splits, batch_size, **options)

    model = ablations.prepared_model(work, "base", config)
    ablations.fit_on_splits(model, work, reader, ("train",), config, 0, 1, 0, config.patience,
                            str(tmp_path / "backup"), verbose=0, request_group=request_group)
    assert training_reads == [expected]


def test_ppm_pretraining_trains_with_a_pairwise_loss(tmp_path):
    tf.keras.utils.set_random_seed(0)
    config = dataclasses.replace(CONFIG, ranking_loss="pairwise", ranking_loss_weight=2.0)
    model = PPM(ItemVectorTable(ITEMS, np.random.default_rng(1).normal(
        size=(len(ITEMS), ITEM_DIM)).astype(np.float32)), config, MAX_SEQ_LEN, PRIORS)
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate))
    batches = deterministic_batches()
    pointwise = ClickOrderTask(config.order_loss_weight)
    first = {name: tf.constant(values) for name, values in batches[0].items()}
    logits = model(first)
    # The batch's loss includes the pairs (cached_record's requests pair a click with a
    # non-click), over the BCE alone.
    assert float(model.task(first, logits)) > float(pointwise(first, logits))
    result = fit(model, dataset_of(batches), 2, str(tmp_path / "backup"), 64, verbose=0,
                 validation_data=dataset_of(batches[:2]))
    assert np.isfinite(result.final_loss)
    assert len(result.validation_curve) == 2
    assert all(0.0 < auc < 1.0 for auc in result.validation_curve)


def test_pretraining_stops_on_its_own_patience_and_the_rows_on_theirs(tiny_demo_run, tmp_path,
                                                                      monkeypatch):
    """Pre-training's validation curve can dip for an epoch and rise after it (the demo
    world's: 0.6590, 0.6591, 0.6656), so its patience is its own setting."""
    work = str(tmp_path / "work")
    shutil.copytree(tiny_demo_run[0] / "work", work)
    patiences = []
    fit_on_splits = ablations.fit_on_splits

    def recording(*args, **kwargs):
        patiences.append(args[8])  # fit_on_splits(..., min_steps, patience, backup_dir, ...)
        return fit_on_splits(*args, **kwargs)

    monkeypatch.setattr(pretrain, "fit_on_splits", recording)
    monkeypatch.setattr(ablations, "fit_on_splits", recording)
    overrides = {"patience": 1, "pretrain_patience": 3}
    pretrain.pretrain_ppm(work, "tiny", verbose=0, overrides=overrides)
    ablations.train_ablation(work, "base", "tiny", verbose=0, overrides=overrides)
    assert patiences == [3, 1]
