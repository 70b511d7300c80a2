"""The precompute job: PPM's user tower once per request's history, the states joined back
to every impression, item vectors by side input, bad records dead-lettered."""
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from ppm_tf import features
from ppm_tf.beam_runner import pipeline_options
from ppm_tf.caching.user_states import PrecomputeSettings, run_precompute
from ppm_tf.data.tfrecords import load_cached_metadata, read_cached, read_split
from ppm_tf.models.item_table import load_item_table
from ppm_tf.work_layout import PRETRAINED, WorkLayout

pytestmark = pytest.mark.slow
CACHED_NAMES = [feature.name for feature in features.CACHED_FEATURES]


def by_impression(batches, names) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    rows = {}
    for batch in batches:
        keys = zip(batch[features.REQUEST_ID].numpy(), batch[features.ITEM_ID].numpy())
        for index, key in enumerate(keys):
            rows[key] = {name: batch[name][index].numpy() for name in names}
    return rows


def test_request_level_cache_equals_the_tower_run_on_every_impression(tiny_demo_run):
    """The per-impression path (the tower on each impression's own inputs, the item table on
    its item) gives exactly what the job cached, while the job ran the tower once per
    request."""
    work = str(tiny_demo_run[0] / "work")
    tower = tf.saved_model.load(WorkLayout(work).user_tower_dir).signatures["serving_default"]
    table = load_item_table(work)
    expected = {}
    for batch in read_split(work, "eval", 256, deterministic=True):
        outputs = tower(hist_item_ids=batch[features.HIST_ITEM_IDS],
                        hist_ts=batch[features.HIST_TS],
                        hist_actions=batch[features.HIST_ACTIONS], ts=batch[features.TS])
        batch = {**batch, **outputs, features.PPM_ITEM_VEC: table(batch[features.ITEM_ID])}
        expected.update(by_impression([batch], CACHED_NAMES))
    cached = by_impression(read_cached(work, "eval", 256, deterministic=True),
                           CACHED_NAMES)
    assert cached.keys() == expected.keys()
    for key, row in expected.items():
        for name, value in row.items():
            np.testing.assert_allclose(cached[key][name], value, rtol=1e-5, atol=1e-6,
                                       err_msg=f"{name} of {key}")

    counts = load_cached_metadata(work)["counts"]["eval"]
    requests = {request for request, _ in expected}
    assert counts["read"] == counts["written"] == len(expected)
    assert counts["tower_inputs"] == len(requests) < len(expected)  # one call per request
    assert counts["dead_lettered"] == 0


def test_cached_records_come_in_the_examples_order(tiny_demo_run):
    """Precompute writes each split as preprocessing did (``features.EXAMPLE_ORDER``), so URM
    trains on the batches ``base`` trains on, and on the same ones on every run."""
    work = str(tiny_demo_run[0] / "work")

    def order(batches):
        return [key for batch in batches for key in zip(batch[features.REQUEST_ID].numpy(),
                                                         batch[features.ITEM_ID].numpy())]

    for split in ("train", "eval"):
        names = [features.REQUEST_ID, features.ITEM_ID]
        examples = order(read_split(work, split, 256, deterministic=True, features=names))
        assert order(read_cached(work, split, 256, deterministic=True, features=names)) == \
            examples and examples, split


def poisoned_copy(work: Path, target: Path) -> int:
    """The inputs precompute reads, plus a shard with an undecodable record and one whose
    history is longer than the tower takes; returns the max_seq_len."""
    for part in ("examples", "item_vectors", "ppm_user_tower", f"models/{PRETRAINED}"):
        shutil.copytree(work / part, target / part)
    shutil.copy(work / "preprocess.json", target / "preprocess.json")
    max_seq_len = json.loads((work / "preprocess.json").read_text())["max_seq_len"]
    good = next(iter(tf.data.TFRecordDataset(
        sorted(str(path) for path in (work / "examples" / "eval").glob("part-*")),
        compression_type="GZIP"))).numpy()
    record = features.decode_example(good, features.EXAMPLE_FEATURES)
    record[features.REQUEST_ID] = "poisoned-request"
    record[features.HIST_ITEM_IDS] = record[features.HIST_ITEM_IDS] + ["extra"]
    record[features.HIST_TS] = record[features.HIST_TS] + [0]
    record[features.HIST_ACTIONS] = record[features.HIST_ACTIONS] + [features.ACTION_CLICKED]
    too_long = features.encode_example(record, features.EXAMPLE_FEATURES, max_seq_len + 1)
    shard = target / "examples" / "eval" / "part-poisoned.tfrecord.gz"
    with tf.io.TFRecordWriter(str(shard), options="GZIP") as writer:
        writer.write(b"not a tf.train.Example")
        writer.write(too_long)
    return max_seq_len


def test_poisoned_records_are_dead_lettered_with_their_reason_and_the_rest_written(
        tiny_demo_run, tmp_path):
    source = tiny_demo_run[0] / "work"
    work = tmp_path / "work"
    poisoned_copy(source, work)
    metadata = run_precompute(PrecomputeSettings(work=str(work)), pipeline_options([]))

    counts = metadata["counts"]["eval"]
    reference = load_cached_metadata(str(source))["counts"]["eval"]
    assert counts["read"] == reference["read"] + 2
    assert counts["dead_lettered"] == 2
    assert counts["written"] == reference["written"]
    letters = [json.loads(line) for path in sorted((work / "cached" / "dead_letter").glob(
        "eval*.jsonl")) for line in path.read_text().splitlines()]
    assert len(letters) == 2
    [undecodable] = [letter for letter in letters if features.REQUEST_ID not in letter]
    assert "Error parsing message" in undecodable["reason"]
    [rejected] = [letter for letter in letters if features.REQUEST_ID in letter]
    assert rejected[features.REQUEST_ID] == "poisoned-request"
    assert "InvalidArgumentError" in rejected["reason"] and "shape" in rejected["reason"]
    written = sum(1 for _ in tf.data.TFRecordDataset(
        [str(path) for path in (work / "cached" / "eval").glob("part-*")],
        compression_type="GZIP"))
    assert written == reference["written"]
