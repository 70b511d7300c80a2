"""The package's TFRecord readers: hand-written shards (fast) and a real preprocessed
tiny world (slow)."""
import collections
import itertools
import json

import numpy as np
import pytest

import ppm_tf  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

from ppm_tf import features
from ppm_tf.data import tfrecords
from ppm_tf.work_layout import WorkLayout

MAX_SEQ_LEN = 4


def example_record(index: int, history: int) -> dict:
    return {
        "request_id": f"r{index}", "user_id": f"u{index % 3}", "item_id": f"i{index}",
        "category": "lamp", "brand": "" if index % 2 else "kelta", "ts": 1_742_600_000 + index,
        "hist_item_ids": [f"h{index}-{k}" for k in range(history)],
        "hist_categories": ["sofa"] * history, "item_content": "brass\x1fcolour=red",
        "hist_content": ["brass"] * history,
        "hist_ts": [1_742_500_000 - k for k in range(history)],
        "hist_actions": [features.ACTION_CLICKED] * history, "hist_len": history,
        "click": index % 2, "order": int(index % 4 == 0), "is_cold_item": int(index > 3),
        "item_age_days": index + 0.25, "split": "train",
        "user_counts": [index, 1, 0, index, 1, 0], "item_counts": [2 * index, index, 0, 1, 1, 0],
        "category_counts": [7, 3, 1, 0, 0, 0],
    }


def write_shards(prefix: str, records: list[dict], table, max_seq_len: int = 0,
                 shards: int = 2) -> None:
    for shard in range(shards):
        path = f"{prefix}-{shard:05d}-of-{shards:05d}.tfrecord.gz"
        tf.io.gfile.makedirs(path.rsplit("/", 1)[0])
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for record in records[shard::shards]:
                writer.write(features.encode_example(record, table, max_seq_len))


@pytest.fixture
def small_work(tmp_path):
    """A work dir with 7 train examples in 2 GZIP shards, 3 items and 2 queries."""
    layout = WorkLayout(str(tmp_path))
    records = [example_record(index, history=index % (MAX_SEQ_LEN + 1)) for index in range(7)]
    write_shards(layout.examples_prefix("train"), records, features.EXAMPLE_FEATURES, MAX_SEQ_LEN)
    items = [{"item_id": f"i{index}", "title": f"lamp {index}", "image": b"\x89PNG\xff" * index,
              "has_image": int(index > 0), "category": "lamp", "brand": "kelta",
              "entities": ["brass"] * index, "launch_ts": 1_700_000_000, "attrs_json": "{}"}
             for index in range(3)]
    write_shards(layout.items_prefix, items, features.ITEM_FEATURES)
    queries = [{"query": "brass lamp", "item_id": "i1", "ts": 1_742_000_000, "split": "pretrain"},
               {"query": "lamp", "item_id": "i2", "ts": 1_742_900_000, "split": "eval"}]
    write_shards(layout.queries_prefix, queries, features.QUERY_FEATURES)
    (tmp_path / "catalogue.json").write_text("{}")  # the catalogue job's marker
    (tmp_path / "preprocess.json").write_text(json.dumps({"max_seq_len": MAX_SEQ_LEN}))
    return tmp_path, records, items, queries


def unbatched(dataset: tf.data.Dataset) -> list[dict]:
    """Batches of dense tensors -> one plain-Python dict per record, in reading order."""
    rows = []
    for batch in dataset:
        columns = {name: value.numpy().tolist() for name, value in batch.items()}
        rows += [dict(zip(columns, values)) for values in zip(*columns.values())]
    return rows


def as_parsed(record: dict) -> dict:
    """A record as ``read_split`` returns it: bytes strings, sequences padded."""
    parsed = {}
    for feature in features.EXAMPLE_FEATURES:
        value = record[feature.name]
        if feature.dtype == features.STRING:
            value = [v.encode() for v in value] if isinstance(value, list) else value.encode()
        if feature.shape == features.SEQUENCE:
            value = value + [feature.default] * (MAX_SEQ_LEN - len(value))
        parsed[feature.name] = value
    return parsed


# Fast: shards written here, no Beam.

def test_read_split_round_trips_every_value_with_padding(small_work):
    work, records, _, _ = small_work
    rows = unbatched(tfrecords.read_split(str(work), "train", batch_size=3, deterministic=True))
    assert len(rows) == len(records)
    by_request = {row["request_id"]: row for row in rows}
    for record in records:
        assert by_request[record["request_id"].encode()] == as_parsed(record)
    padded = by_request[b"r1"]
    assert padded["hist_item_ids"] == [b"h1-0", b"", b"", b""]
    assert padded["hist_ts"] == [1_742_500_000, 0, 0, 0]


def test_batches_have_the_documented_shapes_and_a_smaller_last_batch(small_work):
    work = str(small_work[0])
    batches = list(tfrecords.read_split(work, "train", batch_size=3, deterministic=True))
    assert [int(batch["click"].shape[0]) for batch in batches] == [3, 3, 1]
    assert batches[0]["hist_ts"].shape == [3, MAX_SEQ_LEN]
    dropped = list(tfrecords.read_split(work, "train", batch_size=3, drop_remainder=True))
    assert [int(batch["click"].shape[0]) for batch in dropped] == [3, 3]


def test_repeat_reads_the_split_again(small_work):
    work = str(small_work[0])
    dataset = tfrecords.read_split(work, "train", batch_size=7, repeat=True, deterministic=True)
    first, second = [batch["request_id"].numpy().tolist() for batch in dataset.take(2)]
    assert first == second and len(first) == 7


@pytest.fixture
def scattered_requests(tmp_path):
    """40 train records of 7 requests, each request's records spread over both shards."""
    layout = WorkLayout(str(tmp_path))
    records = []
    for index in range(40):
        record = example_record(index, history=1)
        record["request_id"] = f"r{index % 7}"
        records.append(record)
    write_shards(layout.examples_prefix("train"), records, features.EXAMPLE_FEATURES, MAX_SEQ_LEN)
    (tmp_path / "preprocess.json").write_text(json.dumps({"max_seq_len": MAX_SEQ_LEN}))
    return str(tmp_path)


def grouped_keys(work: str, batch_size: int = 6, **options) -> list[tuple[bytes, bytes]]:
    return record_keys(tfrecords.read_split(work, "train", batch_size, deterministic=True,
                                            group_requests=True, **options))


def runs(request_ids) -> int:
    return sum(1 for index, request in enumerate(request_ids)
               if index == 0 or request != request_ids[index - 1])


@pytest.mark.parametrize("options", [{}, {"shuffle": True, "seed": 5}])
def test_grouped_requests_are_contiguous_and_every_record_is_read_once(scattered_requests,
                                                                        options):
    plain = record_keys(tfrecords.read_split(scattered_requests, "train", 6,
                                             deterministic=True))
    assert runs([request for request, _ in plain]) > 7  # scattered as written
    grouped = grouped_keys(scattered_requests, **options)
    assert collections.Counter(grouped) == collections.Counter(plain)
    assert len(grouped) == 40
    assert runs([request for request, _ in grouped]) == 7


def run_lengths(request_ids) -> list[int]:
    return [len(list(run)) for _, run in itertools.groupby(request_ids)]


def test_a_request_comes_in_groups_of_at_most_max_group_records(scattered_requests):
    plain = record_keys(tfrecords.read_split(scattered_requests, "train", 6))
    in_order = grouped_keys(scattered_requests, max_group=2)
    assert collections.Counter(in_order) == collections.Counter(plain)
    # r0..r4 hold 6 records, r5 and r6 hold 5: 3 groups each, in first-record order, so no
    # two groups of one request meet.
    assert run_lengths([request for request, _ in in_order]) == [2] * 19 + [1] * 2
    shuffled = grouped_keys(scattered_requests, shuffle=True, seed=5, max_group=2)
    assert collections.Counter(shuffled) == collections.Counter(plain)
    assert shuffled != in_order
    assert grouped_keys(scattered_requests, max_group=100) == grouped_keys(scattered_requests)
    with pytest.raises(ValueError, match="max_group"):
        grouped_keys(scattered_requests, max_group=0)


def test_grouping_is_deterministic_given_the_seed(scattered_requests):
    assert (grouped_keys(scattered_requests, shuffle=True, seed=5)
            == grouped_keys(scattered_requests, shuffle=True, seed=5))
    orders = {tuple(request for request, _ in grouped_keys(scattered_requests, shuffle=True,
                                                           seed=seed)) for seed in range(4)}
    assert len(orders) > 1  # the seed picks the order of whole requests


def test_grouping_holds_one_window_of_records_at_a_time(scattered_requests):
    grouped = grouped_keys(scattered_requests, shuffle=True, seed=2, shuffle_buffer=8)
    assert collections.Counter(grouped) == collections.Counter(
        record_keys(tfrecords.read_split(scattered_requests, "train", 6)))
    for start in range(0, 40, 8):  # each window's records come out as one block, grouped
        window = [request for request, _ in grouped[start:start + 8]]
        assert runs(window) == len(set(window))


def test_grouping_reshuffles_each_repetition(scattered_requests):
    dataset = tfrecords.read_split(scattered_requests, "train", 40, shuffle=True, seed=1,
                                   repeat=True, deterministic=True, group_requests=True)
    first, second = [batch["request_id"].numpy().tolist() for batch in dataset.take(2)]
    assert sorted(first) == sorted(second) and runs(first) == runs(second) == 7
    assert first != second


def test_read_items_gives_ragged_entities_and_image_bytes(small_work):
    work, _, items, _ = small_work
    batch = next(iter(tfrecords.read_items(str(work), batch_size=8, deterministic=True)))
    assert isinstance(batch["entities"], tf.RaggedTensor)
    by_id = {item_id: index for index, item_id in enumerate(batch["item_id"].numpy().tolist())}
    for item in items:
        row = by_id[item["item_id"].encode()]
        assert batch["entities"][row].numpy().tolist() == [e.encode() for e in item["entities"]]
        assert batch["image"][row].numpy() == item["image"]
        assert batch["has_image"][row].numpy() == item["has_image"]


def test_read_queries_round_trips(small_work):
    work, _, _, queries = small_work
    rows = unbatched(tfrecords.read_queries(str(work), batch_size=8))
    expected = [{"query": q["query"].encode(), "item_id": q["item_id"].encode(), "ts": q["ts"],
                 "split": q["split"].encode()} for q in queries]
    assert sorted(rows, key=lambda row: row["ts"]) == expected


def test_a_feature_subset_parses_only_those_features(small_work):
    dataset = tfrecords.read_split(str(small_work[0]), "train", 4,
                                   features=("item_id", "hist_item_ids", "click"))
    assert set(next(iter(dataset))) == {"item_id", "hist_item_ids", "click"}


def test_an_unknown_feature_name_is_named_with_the_valid_ones(small_work):
    with pytest.raises(ValueError, match=r"unknown feature\(s\) \['clicks'\].*'click'"):
        tfrecords.read_split(str(small_work[0]), "train", 4, features=("item_id", "clicks"))
    with pytest.raises(TypeError, match="sequence of names"):
        tfrecords.read_split(str(small_work[0]), "train", 4, features="click")


def test_a_bad_split_names_the_valid_splits(small_work):
    with pytest.raises(ValueError, match=r"unknown split 'test'.*'pretrain', 'train', 'valid', 'eval'"):
        tfrecords.read_split(str(small_work[0]), "test", 4)


def test_a_missing_work_dir_says_to_preprocess_first(tmp_path):
    with pytest.raises(FileNotFoundError, match="preprocess.json not found.*ppm preprocess"):
        tfrecords.read_split(str(tmp_path / "nowhere"), "train", 4)
    with pytest.raises(FileNotFoundError, match="catalogue.json not found.*ppm preprocess"):
        tfrecords.read_items(str(tmp_path / "nowhere"), 4)


def test_a_split_without_shards_says_to_preprocess_first(small_work):
    with pytest.raises(FileNotFoundError,
                       match=r"no TFRecord shard matches .*eval.*ppm preprocess"):
        tfrecords.read_split(str(small_work[0]), "eval", 4)


def test_a_record_missing_a_feature_fails_naming_it(tmp_path):
    record = example_record(0, history=1)
    table = tuple(f for f in features.EXAMPLE_FEATURES if f.name != features.HIST_TS)
    write_shards(WorkLayout(str(tmp_path)).examples_prefix("train"), [record], table,
                 MAX_SEQ_LEN, shards=1)
    (tmp_path / "preprocess.json").write_text(json.dumps({"max_seq_len": MAX_SEQ_LEN}))
    with pytest.raises(tf.errors.InvalidArgumentError, match="Feature: hist_ts"):
        next(iter(tfrecords.read_split(str(tmp_path), "train", 4)))


def test_load_preprocess_metadata_reads_the_json(small_work):
    assert tfrecords.load_preprocess_metadata(str(small_work[0])) == {"max_seq_len": MAX_SEQ_LEN}


def test_serialized_examples_are_the_first_records_in_shard_order(small_work):
    work, records, _, _ = small_work
    serialized = tfrecords.serialized_examples(str(work), "train", 5)
    spec = features.parse_spec(features.EXAMPLE_FEATURES, MAX_SEQ_LEN)
    request_ids = tf.io.parse_example(tf.constant(serialized), spec)["request_id"].numpy()
    # Shard 0 holds records 0, 2, 4, 6; shard 1 holds 1, 3, 5.
    assert request_ids.tolist() == [b"r0", b"r2", b"r4", b"r6", b"r1"]
    assert tfrecords.serialized_examples(str(work), "eval", 5) == []  # no shard: nothing
    with pytest.raises(ValueError, match="unknown split 'test'"):
        tfrecords.serialized_examples(str(work), "test", 5)


# Slow: a real preprocessed tiny world.

@pytest.fixture(scope="module")
def tiny_work(tmp_path_factory):
    from beam_jobs.preprocess import run
    from ppm_tf.data.synthetic import generate_world, preset

    root = tmp_path_factory.mktemp("tiny")
    raw, work = str(root / "raw"), str(root / "work")
    generate_world(preset("tiny"), seed=0, out=raw)
    run(["--data", raw, "--out", work, "--runner", "DirectRunner"])
    stats = json.loads((root / "work" / "stats.json").read_text())
    return work, stats


def record_keys(dataset: tf.data.Dataset) -> list[tuple[bytes, bytes]]:
    keys = []
    for batch in dataset:
        keys += zip(batch["request_id"].numpy().tolist(), batch["item_id"].numpy().tolist())
    return keys


@pytest.mark.slow
@pytest.mark.parametrize("split", features.SPLITS)
def test_every_example_of_each_split_is_read_once(tiny_work, split):
    work, stats = tiny_work
    dataset = tfrecords.read_split(work, split, batch_size=512,
                                   features=("request_id", "item_id", "split"))
    keys = record_keys(dataset)
    assert len(keys) == stats["splits"][split]["examples"]
    assert len(set(keys)) == len(keys)
    splits = np.concatenate([batch["split"].numpy() for batch in dataset])
    assert set(splits.tolist()) == {split.encode()}


@pytest.mark.slow
def test_shapes_dtypes_and_padding_follow_the_feature_table(tiny_work):
    work, _ = tiny_work
    max_seq_len = tfrecords.load_preprocess_metadata(work)["max_seq_len"]
    batch = next(iter(tfrecords.read_split(work, "train", batch_size=64, drop_remainder=True)))
    dtypes = {features.STRING: tf.string, features.INT64: tf.int64,
              features.FLOAT32: tf.float32}
    for feature in features.EXAMPLE_FEATURES:
        expected = {features.SEQUENCE: [64, max_seq_len],
                    features.COUNTS: [64, features.COUNT_SIZE]}.get(feature.shape, [64])
        assert batch[feature.name].shape == expected, feature.name
        assert batch[feature.name].dtype == dtypes[feature.dtype], feature.name
    hist_len = batch["hist_len"].numpy()
    real = np.arange(max_seq_len)[None, :] < hist_len[:, None]
    assert ((batch["hist_item_ids"].numpy() != b"") == real).all()
    assert ((batch["hist_ts"].numpy() != 0) == real).all()


@pytest.mark.slow
def test_deterministic_reads_repeat_the_same_order(tiny_work):
    work, _ = tiny_work
    read = lambda **kwargs: record_keys(tfrecords.read_split(  # noqa: E731
        work, "pretrain", batch_size=256, deterministic=True,
        features=("request_id", "item_id"), **kwargs))
    assert read() == read()
    assert read(shuffle=True, seed=3) == read(shuffle=True, seed=3)


@pytest.mark.slow
def test_a_seeded_shuffle_reorders_but_keeps_every_example(tiny_work):
    work, _ = tiny_work
    subset = ("request_id", "item_id")
    ordered = record_keys(tfrecords.read_split(work, "train", 256, deterministic=True,
                                               features=subset))
    shuffled = record_keys(tfrecords.read_split(work, "train", 256, shuffle=True, seed=1,
                                                features=subset))
    assert shuffled != ordered
    assert collections.Counter(shuffled) == collections.Counter(ordered)


@pytest.mark.slow
def test_items_count_and_their_images_decode(tiny_work):
    work, stats = tiny_work
    count = with_image = 0
    for batch in tfrecords.read_items(work, batch_size=64):
        assert isinstance(batch["entities"], tf.RaggedTensor)
        count += int(batch["item_id"].shape[0])
        for image, has_image in zip(batch["image"], batch["has_image"].numpy()):
            if has_image:
                pixels = tf.io.decode_png(image, channels=3)
                assert pixels.shape[0] > 0 and pixels.shape[1] > 0
                with_image += 1
            else:
                assert image.numpy() == b""
    assert count == stats["valid"]["items"]
    assert with_image > 0


@pytest.mark.slow
def test_queries_count(tiny_work):
    work, stats = tiny_work
    count = sum(int(batch["query"].shape[0])
                for batch in tfrecords.read_queries(work, batch_size=512))
    assert count == stats["valid"]["queries"]
