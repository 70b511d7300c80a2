"""``train_encoders`` on a small hand-written work directory: resume after an interruption
(within an encoder through BackupAndRestore, across encoders through train/run.json), the
exports and metrics.json; plus the pieces it is built from (data, holdout, run state)."""
import json
import os

import numpy as np
import pytest

import ppm_tf  # noqa: F401
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data.synthetic import images as synthetic_images
from ppm_tf.encoders import data, text_objective
from ppm_tf.encoders.image import EntityPredictionModel
from ppm_tf.encoders.image_training import fit_image_encoder
from ppm_tf.encoders.presets import FitConfig, preset
from ppm_tf.encoders.fitting import learning_rate_schedule
from ppm_tf.encoders.training import _RunState, format_metrics, train_encoders

# keras-cv's Backbone probes deprecated tf-keras properties whenever it is saved or listed.
pytestmark = pytest.mark.filterwarnings(
    r"ignore:`(layer|Model)\.(state_)?updates` will be removed:UserWarning")

COMBOS = [("mug", "red", "solid", "red coffee mug"), ("lamp", "blue", "striped", "blue desk lamp"),
          ("hat", "green", "dotted", "green dotted cap"), ("vase", "pink", "checked", "pink vase")]


def write_records(path, records, table):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for record in records:
            writer.write(features.encode_example(record, table))


def make_work(root, num_items=64, query_splits=("pretrain", "train", "eval")):
    """A preprocessed-looking work dir: items (every 8th without image), queries (one per
    item in each of ``query_splits``), vocab."""
    rng = np.random.default_rng(0)
    items, queries = [], []
    for number in range(num_items):
        category, colour, pattern, words = COMBOS[number % len(COMBOS)]
        item_id = f"i{number:03d}"
        has_image = number % 8 != 5
        image = (synthetic_images.encode_png(synthetic_images.render_image(
            category, colour, pattern, 32, rng)) if has_image else b"")
        items.append({features.ITEM_ID: item_id, features.TITLE: f"brand{number} {words}",
                      features.IMAGE: image, features.HAS_IMAGE: int(has_image),
                      features.CATEGORY: category, features.BRAND: f"brand{number}",
                      features.ENTITIES: [category, colour, pattern],
                      features.LAUNCH_TS: 0, features.ATTRS_JSON: "{}"})
        for split in query_splits:
            queries.append({features.QUERY: f"{words.split()[-1]} brand{number}",
                            features.ITEM_ID: item_id, features.TS: 0, features.SPLIT: split})
    write_records(os.path.join(root, "items", "part-00000-of-00001.tfrecord.gz"), items,
                  features.ITEM_FEATURES)
    write_records(os.path.join(root, "queries", "part-00000-of-00001.tfrecord.gz"), queries,
                  features.QUERY_FEATURES)
    os.makedirs(os.path.join(root, "vocab"))
    entities = sorted({entity for combo in COMBOS for entity in combo[:3]})
    with open(os.path.join(root, "vocab", "entity.txt"), "w") as handle:
        handle.write("".join(entity + "\n" for entity in entities))
    with open(os.path.join(root, "catalogue.json"), "w") as handle:  # all the encoders wait for
        json.dump({}, handle)
    return str(root)


@pytest.fixture
def work(tmp_path):
    return make_work(tmp_path / "work")


def test_heldout_items_are_a_stable_seeded_share():
    ids = tf.constant([f"i{n:05d}" for n in range(5000)])
    heldout = data.is_heldout_item(ids, 0.1, seed=0).numpy()
    assert 0.08 < heldout.mean() < 0.12
    np.testing.assert_array_equal(heldout, data.is_heldout_item(ids, 0.1, seed=0).numpy())
    assert (heldout != data.is_heldout_item(ids, 0.1, seed=1).numpy()).any()


def test_entity_examples_split_items_and_skip_those_without_image(work):
    entities = data.read_entity_vocabulary(work)
    train = list(data.entity_examples(work, entities, 32, heldout=False, holdout_fraction=0.25,
                                      seed=0))
    heldout = list(data.entity_examples(work, entities, 32, heldout=True, holdout_fraction=0.25,
                                        seed=0))
    assert len(train) + len(heldout) == 56  # 64 items, 8 without image
    pixels, labels = train[0]
    assert pixels.shape == (32, 32, 3) and labels.shape == (len(entities),)
    assert float(tf.reduce_sum(labels)) == 3.0


def test_query_pairs_join_the_clicked_title(work):
    from ppm_tf.encoders.tokenizer import TextTokenizer, learn_vocabulary, write_vocabulary

    vocab = os.path.join(work, "vocab.txt")
    write_vocabulary(learn_vocabulary(data.vocabulary_texts(work), 200), vocab)
    tokenizer = TextTokenizer(vocab, 16)
    item_ids, titles = data.catalogue_titles(work)
    assert len(item_ids) == 64 and titles[0] == b"brand0 red coffee mug"
    batch = next(iter(data.query_matching_pairs(work, tokenizer,
                                                data.title_table(item_ids, titles), 8,
                                                shuffle=False)))
    assert tokenizer.detokenize(batch["title_ids"][:1]).numpy()[0] == (
        b"[CLS] brand0 red coffee mug [SEP]")
    assert batch["item_id"].numpy()[0] == b"i000"


def test_query_arrays_hold_the_splits_asked_for_in_file_order(tmp_path):
    from ppm_tf.encoders.text_evaluation import split_queries, training_click_counts

    work = make_work(tmp_path / "work", num_items=1500)  # more than one read batch
    texts, item_ids = data.query_arrays(work, ("eval",))
    assert len(texts) == len(item_ids) == 1500
    assert item_ids[0] == b"i000" and texts[1499] == b"vase brand1499"  # file order
    records = list(data.queries(work, data.TRAIN_QUERY_SPLITS).as_numpy_iterator())
    texts, item_ids = data.query_arrays(work, data.TRAIN_QUERY_SPLITS)
    assert list(texts) == [record[features.QUERY] for record in records]
    assert list(item_ids) == [record[features.ITEM_ID] for record in records]
    # Queries on an item outside the catalogue are dropped; popularity counts the rest.
    index = {f"i{number:03d}".encode(): number - 1 for number in range(1, 1500)}
    eval_texts, rows = split_queries(work, ("eval",), index)
    assert len(eval_texts) == 1499 and eval_texts[0] == b"lamp brand1"
    np.testing.assert_array_equal(rows, np.arange(1499))
    counts = training_click_counts(work, index)
    np.testing.assert_array_equal(counts, np.full(1499, 2.0))  # pretrain + train


def test_learning_rate_schedule_spans_the_run_not_the_preset():
    fit = FitConfig(epochs=2, batch_size=8, learning_rate=1e-3, warmup_fraction=0.1)
    schedule = learning_rate_schedule(fit, steps_per_epoch=10, epochs=20)
    assert float(schedule(10)) == pytest.approx(5e-4, rel=0.05)  # half-way through warm-up
    assert float(schedule(20)) == pytest.approx(1e-3, rel=0.05)
    assert float(schedule(100)) > 4e-4  # mid-run, not decayed as if the run had 2 epochs
    assert float(schedule(200)) == pytest.approx(1e-5, rel=0.05)


def test_run_state_resumes_only_with_the_same_settings(tmp_path):
    state = _RunState(str(tmp_path), {"preset": "tiny", "seed": 0})
    state.mark_done("text")
    assert _RunState(str(tmp_path), {"preset": "tiny", "seed": 0}).done == ["text"]
    assert _RunState(str(tmp_path), {"preset": "tiny", "seed": 1}).done == []


class SimulatedCrash(Exception):
    pass


class InterruptImageTraining(tf.keras.callbacks.Callback):
    """Stands in for a crash: fails after the image encoder's first epoch."""

    def on_epoch_end(self, epoch, logs=None):
        if isinstance(self.model, EntityPredictionModel) and epoch == 0:
            raise SimulatedCrash("simulated interruption")


@pytest.mark.slow
def test_an_interrupted_run_resumes_where_it_stopped(work):
    with pytest.raises(SimulatedCrash):
        train_encoders(work, "tiny", seed=0, epochs=2, callbacks=[InterruptImageTraining()])
    text_model = os.path.join(work, "encoders", "text", "saved_model.pb")
    exported_at = os.path.getmtime(text_model)
    assert not os.path.exists(os.path.join(work, "encoders", "image"))
    run_file = os.path.join(work, "encoders", "train", "run.json")
    assert json.load(open(run_file))["done"] == ["text"]

    metrics = train_encoders(work, "tiny", seed=0, epochs=2)
    assert os.path.getmtime(text_model) == exported_at  # not retrained
    assert metrics["text"]["resumed_from_epoch"] == 0
    assert metrics["image"]["resumed_from_epoch"] == 1  # epoch 0 came from the backup
    assert not os.path.exists(run_file)
    assert not os.path.exists(os.path.join(work, "encoders", "train", "image_backup"))
    with open(os.path.join(work, "encoders", "metrics.json")) as handle:
        assert json.load(handle) == metrics
    image = metrics["image"]
    assert image["num_entities"] == 12 and image["model"]["items"] + image["train_items"] == 56
    assert 0.0 <= image["model"]["micro_f1"] <= 1.0
    assert metrics["text"]["model"]["queries"] == 64


def test_objective_choice_follows_the_data_and_the_starting_point():
    assert text_objective.choose("auto", 500, 128, False, 64)[0] == "query_matching"
    objective, reason = text_objective.choose("auto", 0, 128, False, 64)
    assert objective == "simcse" and "0 training queries < min_query_pairs 128" in reason
    # A pre-trained encoder stays frozen unless the preset fine-tunes it and queries suffice.
    assert text_objective.choose("auto", 500, 128, True, 64)[0] == "frozen"
    assert text_objective.choose("auto", 500, 128, True, 64, True)[0] == "query_matching"
    assert text_objective.choose("auto", 100, 128, True, 64, True)[0] == "frozen"
    assert text_objective.choose("simcse", 500, 128, True, 64) == ("simcse", "requested")
    with pytest.raises(ValueError, match="query matching needs at least 2 training queries"):
        text_objective.choose("query_matching", 1, 128, False, 64)
    with pytest.raises(ValueError, match="frozen text objective needs a pre-trained"):
        text_objective.choose("frozen", 500, 128, False, 64)
    with pytest.raises(ValueError, match="text objective must be one of"):
        text_objective.choose("mlm", 500, 128, False, 64)


def test_simcse_batches_pair_each_distinct_title_with_itself(work):
    from ppm_tf.encoders.tokenizer import TextTokenizer, learn_vocabulary, write_vocabulary

    vocab = os.path.join(work, "vocab.txt")
    write_vocabulary(learn_vocabulary(data.vocabulary_texts(work), 200), vocab)
    titles = np.array([b"red mug", b"", b"blue lamp", b"red mug", b"pink vase"], dtype=object)
    batches = list(data.simcse_batches(titles, TextTokenizer(vocab, 16), 2, seed=0))
    assert len(batches) == 1  # 3 distinct non-empty titles, the last batch dropped
    batch = batches[0]
    np.testing.assert_array_equal(batch["query_ids"], batch["title_ids"])
    assert set(batch["item_id"].numpy()) <= {b"red mug", b"blue lamp", b"pink vase"}
    assert len(set(batch["item_id"].numpy())) == 2


@pytest.mark.slow
def test_without_queries_the_text_encoder_trains_with_simcse(tmp_path):
    work = make_work(tmp_path / "work", query_splits=())
    metrics = train_encoders(work, "tiny", seed=0, epochs=1, encoders=("text",))
    text = metrics["text"]
    assert text["objective"] == "simcse" and text["train_pairs"] == 0
    assert text["train_titles"] == 64 and text["epochs"] == 1
    assert "model" not in text and "valid_queries" not in text  # no queries to rank
    neighbours = text["entity_neighbours"]
    assert neighbours["eval"]["model"]["items"] + neighbours["valid"]["model"]["items"] > 0
    description = json.load(open(os.path.join(work, "encoders", "text", "encoder.json")))
    assert description["objective"] == "simcse"
    table = format_metrics(metrics)
    assert "text objective: simcse (0 training queries < min_query_pairs 128" in table
    assert "entity overlap of the 10 nearest items" in table and "query -> item" not in table
    with pytest.raises(ValueError, match="query matching needs at least 2 training queries"):
        train_encoders(work, "tiny", seed=0, epochs=1, encoders=("text",),
                       text_objective="query_matching")


@pytest.mark.slow
def test_a_frozen_hugging_face_encoder_exports_the_checkpoint_vectors(tmp_path):
    from test_encoders_bert_checkpoint import (VOCAB, bert_arrays, checkpoint_encoder,
                                               write_hugging_face)
    from ppm_tf.encoders.export import load_encoder
    from ppm_tf.encoders.tokenizer import TextTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "red", "coffee", "mug", "blue",
             "desk", "lamp", "green", "dotted", "cap", "pink", "vase", "brand"]
    vocab = words + [f"##{digit}" for digit in range(10)]
    vocab += [f"unused{n}" for n in range(VOCAB - len(vocab))]
    write_hugging_face(tmp_path / "hf", bert_arrays(np.random.default_rng(3)), vocab)
    work = make_work(tmp_path / "work")  # 128 training queries: tiny keeps it frozen anyway
    metrics = train_encoders(work, "tiny", seed=0, bert_checkpoint=str(tmp_path / "hf"),
                             encoders=("text",))
    assert metrics["text"]["objective"] == "frozen" and "epochs" not in metrics["text"]
    assert metrics["text"]["model"]["queries"] == 64  # eval queries still ranked

    checkpoint, config, encoder, _ = checkpoint_encoder(tmp_path / "hf")
    tokenizer = TextTokenizer(checkpoint.vocab_path, config.max_tokens)
    titles = tf.constant(["brand3 blue desk lamp", "pink vase"])
    exported = load_encoder(os.path.join(work, "encoders", "text"))
    np.testing.assert_allclose(
        exported.signatures["serving_default"](titles=titles)[features.TEXT_VEC].numpy(),
        encoder(tokenizer(titles), training=False).numpy(), atol=1e-5)


def test_two_image_encoder_fits_of_one_seed_are_the_same(work):
    """keras-cv's augmentation takes seed 0 for no seed and then draws from TensorFlow's
    global generator, which the fit seeds: the item vectors, and everything trained on them,
    are the same on every run of the demo's seed 0."""
    def fitted():
        metrics = fit_image_encoder(work, preset("tiny"), seed=0, epochs=1)
        reader = tf.train.load_checkpoint(os.path.join(work, "encoders", "image", "variables",
                                                       "variables"))
        return metrics["model"], {name: reader.get_tensor(name)
                                  for name in reader.get_variable_to_shape_map()}

    first_metrics, first_variables = fitted()
    tf.random.uniform([5])  # the global stream moves on between runs, as in a longer process
    tf.random.get_global_generator().normal([5])
    second_metrics, second_variables = fitted()
    assert second_metrics == first_metrics
    assert second_variables.keys() == first_variables.keys() and first_variables
    for name, value in first_variables.items():
        np.testing.assert_array_equal(second_variables[name], value, name)
