"""The preprocessing job end to end, as ``python -m beam_jobs.preprocess`` runs it, on the tiny
synthetic world: clean input, input full of bad records, empty input, no world.json, hostile
input (that run with ``--history impressions``: sequences of every impression, each with its
action type).

One module-scoped run per scenario. Runner: Beam's in-memory FnApiRunner (``--runner
DirectRunner`` would first try to download the Prism runner).
"""
import collections
import contextlib
import glob
import io
import json
import os
import random
import re
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from beam_jobs.preprocess import run
from ppm_tf import features
from ppm_tf.data import raw_files
from ppm_tf.data.count_tables import read_count_table
from ppm_tf.data.synthetic import generate_world, preset
from ppm_tf.models.history_counts import load_history_item_counts
from ppm_tf.beam_runner import pipeline_options
from ppm_tf.preprocessing.pipeline import (PreprocessSettings, bounds_before_events,
                                           finish_preprocess, start_preprocess, window_days)
from ppm_tf.preprocessing.splits import SplitBounds
from ppm_tf.preprocessing.validate import dead_letter_key
from ppm_tf.preprocessing.vocabulary import CATALOGUE_VOCABULARIES, VOCABULARIES
from ppm_tf.work_layout import WorkLayout

pytestmark = pytest.mark.slow

RUNNER = "--runner=FnApiRunner"
MAX_SEQ_LEN = 8
DAY = raw_files.SECONDS_PER_DAY


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("world") / "tiny"
    generate_world(preset("tiny"), seed=0, out=str(out), preset_name="tiny")
    return out


def _copy(world: Path, tmp_path_factory, name: str) -> Path:
    raw = tmp_path_factory.mktemp(name) / "raw"
    shutil.copytree(world, raw)
    return raw


def _preprocess(raw: Path, work: Path, *flags: str) -> dict:
    return run(["--data", str(raw), "--out", str(work), "--max_seq_len", str(MAX_SEQ_LEN),
                *flags, RUNNER])


def _files(root: Path) -> set[str]:
    return {str(path.relative_to(root)) for path in root.rglob("*") if path.is_file()}


def _records(root: Path) -> dict[str, list[bytes]]:
    """Every TFRecord file under ``root`` -> its records, in file order."""
    return {str(path.relative_to(root)): [record.numpy() for record in tf.data.TFRecordDataset(
                str(path), compression_type="GZIP")]
            for path in sorted(root.rglob("*.tfrecord.gz"))}


def _raw_events(raw: Path) -> list[dict]:
    return list(raw_files.read_jsonl(raw_files.RawLayout(str(raw)).events_pattern))


def _read_examples(work: Path, split: str) -> list[dict]:
    files = sorted(glob.glob(WorkLayout(str(work)).examples_pattern(split)))
    assert files, f"no {split} shards"
    return [features.decode_example(record.numpy(), features.EXAMPLE_FEATURES)
            for record in tf.data.TFRecordDataset(files, compression_type="GZIP")]


def _read_jsonl(pattern: str) -> list[dict]:
    rows = []
    for path in sorted(glob.glob(pattern)):
        with open(path, encoding="utf-8") as handle:
            rows.extend(json.loads(line) for line in handle if line.strip())
    return rows


def _counts_by_time(events: list[dict], bounds: dict) -> dict[str, int]:
    split_of = SplitBounds(**bounds).split_of
    counts = collections.Counter(split_of(event["ts"]) for event in events)
    return {split: counts[split] for split in features.SPLITS}


def _reference_histories(events: list[dict], history: str
                         ) -> dict[tuple[str, str], list[tuple[int, str, int]]]:
    """(request_id, item_id) -> [(ts, item_id, action)] by brute force over each user's raw
    clicks (or, for ``history="impressions"``, all their events)."""
    entries = collections.defaultdict(list)
    for event in events:
        if event["click"] or history == "impressions":
            entries[event["user_id"]].append(event)
    histories = {}
    for event in events:
        earlier = sorted(((entry["ts"], entry["request_id"], entry["item_id"],
                           features.action_type(entry["click"], entry["order"]))
                          for entry in entries[event["user_id"]]
                          if entry["ts"] < event["ts"]
                          and entry["request_id"] != event["request_id"]), reverse=True)
        histories[event["request_id"], event["item_id"]] = [
            (ts, item_id, action) for ts, _, item_id, action in earlier[:MAX_SEQ_LEN]]
    return histories


def _check_examples(work: Path, events: list[dict], stats: dict,
                    history: str = "clicks") -> dict[str, list[dict]]:
    """Shared checks: counts per split by time, exact leak-free histories with their actions,
    padding."""
    examples = {split: _read_examples(work, split) for split in features.SPLITS}
    assert {split: len(rows) for split, rows in examples.items()} == \
        _counts_by_time(events, stats["split_bounds"]) == \
        {split: counts["examples"] for split, counts in stats["splits"].items()}
    histories = _reference_histories(events, history)
    for split, rows in examples.items():
        for example in rows:
            assert example["split"] == split
            length = example["hist_len"]
            assert 0 <= length <= MAX_SEQ_LEN
            assert all(ts < example["ts"] for ts in example["hist_ts"][:length])
            assert example["hist_ts"][length:] == [0] * (MAX_SEQ_LEN - length)
            assert example["hist_item_ids"][length:] == [""] * (MAX_SEQ_LEN - length)
            assert example["hist_actions"][length:] == [0] * (MAX_SEQ_LEN - length)
            assert list(zip(example["hist_ts"][:length], example["hist_item_ids"][:length],
                            example["hist_actions"][:length])) \
                == histories[example["request_id"], example["item_id"]]
    return examples


def _check_oracle(work: Path, eval_examples: list[dict]) -> None:
    oracle = _read_jsonl(WorkLayout(str(work)).path("oracle", "eval-*.jsonl"))
    keys = [(row["request_id"], row["item_id"]) for row in oracle]
    assert len(keys) == len(set(keys)) == len(eval_examples)
    assert set(keys) == {(example["request_id"], example["item_id"]) for example in eval_examples}


# --- clean input -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def clean_run(world, tmp_path_factory):
    """Runs twice over the same WORK; stale shards planted between the runs must vanish."""
    work = tmp_path_factory.mktemp("clean") / "work"
    first_stats = _preprocess(world, work)
    first_files = _files(work)
    first_records = _records(work)
    train_shard = next(work.glob("examples/train/part-*"))
    stale = ["examples/train/part-00003-of-00004.tfrecord.gz",
             "items/part-00007-of-00008.tfrecord.gz", "dead_letter/events-00001-of-00002.jsonl",
             "oracle/eval-00001-of-00002.jsonl", "vocab/old_name.txt"]
    for path in stale:
        shutil.copyfile(train_shard, work / path)
    stats = _preprocess(world, work)
    return work, stats, first_stats, first_files, first_records


def test_clean_run_writes_every_output(clean_run):
    work, stats, *_ = clean_run
    layout = WorkLayout(str(work))
    for name in VOCABULARIES:
        with open(layout.vocab(name), encoding="utf-8") as handle:
            assert len(handle.read().splitlines()) == stats["vocabulary_sizes"][name] > 0, name
    assert glob.glob(layout.items_pattern) and glob.glob(layout.queries_pattern)
    with open(layout.preprocess_json, encoding="utf-8") as handle:
        metadata = json.load(handle)
    assert metadata["split_bounds"] == stats["split_bounds"]
    assert metadata["max_seq_len"] == MAX_SEQ_LEN
    assert metadata["settings"]["max_seq_len"] == MAX_SEQ_LEN


def test_clean_run_keeps_every_event_in_its_time_split(clean_run, world):
    work, stats, *_ = clean_run
    events = _raw_events(world)
    world_json = raw_files.read_world(str(world))
    assert stats["split_bounds"] == SplitBounds.from_world(world_json, valid_days=1).as_dict()
    assert stats["dead_letter"] == {} and stats["dead_letter_total"] == 0
    assert stats["valid"] == {"items": world_json["sizes"]["items"],
                              "queries": world_json["sizes"]["queries"]}
    examples = _check_examples(work, events, stats)
    assert sum(map(len, examples.values())) == len(events) == world_json["sizes"]["impressions"]
    _check_oracle(work, examples["eval"])


def _brute_force_counts(rows: list[dict], log: list[dict], as_of, lookback_days: int):
    """For each example in ``rows``: [impressions, clicks, orders] of the ``log`` events before
    ``as_of(example)``, over the whole log and the last ``lookback_days`` (numpy, no shortcut:
    every pair is compared)."""
    ts = np.array([event["ts"] for event in log])
    requests = np.array([event["request_id"] for event in log])
    outcomes = np.array([[1, event["click"], event["order"]] for event in log]).reshape(-1, 3)
    ends = np.array([as_of(row) for row in rows])
    own = np.array([row["request_id"] for row in rows])[:, None] == requests[None, :]
    before = (ts[None, :] < ends[:, None]) & ~own
    recent = before & (ts[None, :] >= ends[:, None] - lookback_days * DAY)
    return np.concatenate([before @ outcomes, recent @ outcomes], axis=1).astype(float)


def test_clean_run_counts_match_brute_force_over_the_raw_log(clean_run, world):
    work, stats, *_ = clean_run
    events = _raw_events(world)
    categories = {item["item_id"]: item["category"]
                  for item in raw_files.read_jsonl(raw_files.RawLayout(str(world)).items)}
    for event in events:
        event["category"] = categories[event["item_id"]]
    lookback = stats["settings"]["count_lookback_days"]
    examples = [row for split in features.SPLITS for row in _read_examples(work, split)]
    request_start = {}
    for event in events:
        request_start[event["request_id"]] = min(request_start.get(event["request_id"],
                                                                   event["ts"]), event["ts"])
    day_start = lambda row: row["ts"] - row["ts"] % DAY
    for feature, key, as_of in (
            (features.USER_COUNTS, "user_id", lambda row: request_start[row["request_id"]]),
            (features.ITEM_COUNTS, "item_id", day_start),
            (features.CATEGORY_COUNTS, "category", day_start)):
        grouped = collections.defaultdict(list)
        for event in events:
            grouped[event[key]].append(event)
        for value in {row[key] for row in examples}:
            rows = [row for row in examples if row[key] == value]
            np.testing.assert_array_equal(
                np.array([row[feature] for row in rows]),
                _brute_force_counts(rows, grouped[value], as_of, lookback), err_msg=feature)
    # The tables an export serves: every event before the log's end.
    end = stats["split_bounds"]["end_ts"]
    for key in ("item_id", "category"):
        table = dict(zip(*read_count_table(str(work), key)))
        grouped = collections.defaultdict(list)
        for event in events:
            grouped[event[key]].append(event)
        assert set(table) == set(grouped)
        for value, log in grouped.items():
            expected = _brute_force_counts([{"request_id": None}], log, lambda _: end, lookback)
            np.testing.assert_array_equal(table[value], expected[0], err_msg=f"{key} {value}")
    # Each item's daily totals give, through the tower's lookup, every example's item counts
    # as of its request (and the served table's at the log's end).
    item_ids = sorted({event["item_id"] for event in events})
    lookup = load_history_item_counts(str(work), item_ids, lookback)
    rows = tf.constant([[item_ids.index(row["item_id"]) + 1] for row in examples])
    np.testing.assert_array_equal(
        lookup((rows, tf.constant([row["ts"] for row in examples], tf.int64)))[:, 0].numpy(),
        np.array([row[features.ITEM_COUNTS] for row in examples]))
    served = dict(zip(*read_count_table(str(work), "item_id")))
    at_end = lookup((tf.range(1, len(item_ids) + 1, dtype=tf.int64),
                     tf.fill([len(item_ids)], tf.constant(end, tf.int64))))
    np.testing.assert_array_equal(at_end.numpy(), [served[item] for item in item_ids])


def test_clean_run_examples_parse_with_the_shared_spec(clean_run):
    work, stats, *_ = clean_run
    files = sorted(glob.glob(WorkLayout(str(work)).examples_pattern("eval")))
    spec = features.parse_spec(features.EXAMPLE_FEATURES, MAX_SEQ_LEN)
    dataset = (tf.data.TFRecordDataset(files, compression_type="GZIP").batch(4096)
               .map(lambda batch: tf.io.parse_example(batch, spec)))
    batches = list(dataset)
    assert sum(int(batch["ts"].shape[0]) for batch in batches) == \
        stats["splits"]["eval"]["examples"]
    assert batches[0]["hist_item_ids"].shape[1] == MAX_SEQ_LEN
    assert batches[0]["item_age_days"].dtype == tf.float32


def test_rerun_over_the_same_work_leaves_no_stale_shards(clean_run):
    work, stats, first_stats, first_files, _ = clean_run
    assert _files(work) == first_files
    assert stats == first_stats


def test_a_rerun_writes_the_same_records_in_the_same_order(clean_run):
    """Training batches come from the record order: two runs over the same logs must give
    the same files, each with the same records in the same order."""
    work, _, _, _, first_records = clean_run
    records = _records(work)
    assert records == first_records
    assert any(path.startswith("examples/train/") and shard for path, shard in records.items())


def test_the_catalogue_job_alone_gives_the_encoders_their_inputs_before_any_example(
        clean_run, world, tmp_path_factory):
    """``ppm demo`` trains the encoders on the catalogue job's outputs while the events job
    runs: everything they read is there first, nothing of the events is, and the two jobs
    together write what one run of ``ppm preprocess`` writes."""
    _, clean_stats, _, clean_files, _ = clean_run
    work = tmp_path_factory.mktemp("two_steps") / "work"
    layout = WorkLayout(str(work))
    settings = PreprocessSettings(data=str(world), work=str(work), max_seq_len=MAX_SEQ_LEN)
    options = pipeline_options([RUNNER])
    assert bounds_before_events(settings) is not None  # world.json suggests the splits
    start_preprocess(settings, options)
    layout.require_stages("catalogue")
    assert glob.glob(layout.items_pattern) and glob.glob(layout.queries_pattern)
    for name in CATALOGUE_VOCABULARIES:
        assert os.path.exists(layout.vocab(name)), name
    assert {path.name.split("-")[0] for path in (work / "dead_letter").iterdir()} == \
        {"items", "queries"}
    assert not (work / "examples").exists() and not os.path.exists(layout.vocab("user_id"))
    with pytest.raises(FileNotFoundError, match="run `ppm preprocess"):
        layout.require_stages("preprocess")
    stats = finish_preprocess(settings, options)
    assert stats["settings"]["work"] == str(work)
    assert {**stats, "settings": None} == {**clean_stats, "settings": None}
    assert _files(work) == clean_files


# --- bad input -------------------------------------------------------------------------------

def _event(request_id, user_id, item_id, ts, click=0, order=0):
    return {"request_id": request_id, "user_id": user_id, "item_id": item_id, "ts": ts,
            "click": click, "order": order}


def _line(record) -> bytes:
    return json.dumps(record, sort_keys=True).encode("utf-8")


@pytest.fixture(scope="module")
def bad_run(world, tmp_path_factory):
    """The tiny world with bad records of every kind injected; returns what was injected."""
    raw = _copy(world, tmp_path_factory, "bad")
    layout = raw_files.RawLayout(str(raw))
    horizon = raw_files.read_world(str(raw))["horizon"]
    items = list(raw_files.read_jsonl(layout.items))
    users = list(raw_files.read_jsonl(layout.users))
    queries = list(raw_files.read_jsonl(layout.queries))
    events = _raw_events(raw)
    queried = {query["item_id"] for query in queries}
    shown = {event["item_id"] for event in events}
    # The item whose image becomes garbage, one listed twice, one with a too-early event.
    broken, doubled, early = sorted(shown & queried)[:3]
    launch_ts = {item["item_id"]: item["launch_ts"] for item in items}
    user = users[0]["user_id"]
    mid = horizon["start_ts"] + 10 * DAY
    with open(layout.image(f"{broken}.png"), "wb") as handle:
        handle.write(b"\x89PNG but not really")

    injected = {  # dead-letter key -> injected records (raw lines for unparsable ones)
        "events.<record>.invalid_json": [b'{"request_id": "bad-json", "user_id":',
                                         b'\xff\xfe{"request_id": "bad-bytes"}'],
        "events.click.missing": [{k: v for k, v in _event("bad-missing", user, early, mid)
                                  .items() if k != "click"}],
        "events.ts.wrong_type": [_event("bad-type", user, early, str(mid))],
        "events.item_id.unknown_id": [_event("bad-item", user, "no-such-item", mid)],
        "events.user_id.unknown_id": [_event("bad-user", "no-such-user", early, mid)],
        # After the export time (caught on reading), and at the exclusive end (by the join).
        "events.ts.future": [_event("bad-future-read", user, early, horizon["end_ts"] + 3600),
                             _event("bad-future-end", user, early, horizon["end_ts"])],
        "events.ts.before_launch": [_event("bad-launch", user, early, launch_ts[early] - 60)],
    }
    duplicated = [event for event in events if event["item_id"] != broken][100:103]
    injected_lines = [record if isinstance(record, bytes) else _line(record)
                      for records in injected.values() for record in records]

    # Out of order: lines shuffled within every shard, the last day moved into the first
    # shard, duplicates and bad lines spread among them.
    shards = sorted(glob.glob(layout.events_pattern))
    lines = {path: Path(path).read_bytes().splitlines() for path in shards}
    lines[shards[0]] += lines.pop(shards[-1]) + injected_lines
    lines[shards[1]] += [_line(event) for event in duplicated]
    Path(shards[-1]).unlink()
    rng = random.Random(0)
    for path, shard_lines in lines.items():
        rng.shuffle(shard_lines)
        Path(path).write_bytes(b"".join(line + b"\n" for line in shard_lines))

    doubled_item = next(item for item in items if item["item_id"] == doubled)
    with open(layout.items, "ab") as handle:
        handle.write(_line(doubled_item) + b"\n")
    with open(layout.users, "ab") as handle:
        handle.write(_line(users[1]) + b"\n")

    work = tmp_path_factory.mktemp("bad") / "work"
    stats = _preprocess(raw, work)
    return {"work": work, "stats": stats, "injected": injected, "duplicated": duplicated,
            "broken": broken, "doubled_item": doubled_item, "doubled_user": users[1],
            "events": events, "queries": queries, "items": items}


def _dead_letters(work: Path) -> dict[str, list[dict]]:
    by_key = collections.defaultdict(list)
    for entry in _read_jsonl(WorkLayout(str(work)).dead_letter_pattern):
        by_key[dead_letter_key(entry)].append(entry)
    return by_key


def test_bad_input_counts_every_dead_letter_exactly(bad_run):
    stats, broken = bad_run["stats"], bad_run["broken"]
    broken_events = sum(event["item_id"] == broken for event in bad_run["events"])
    broken_queries = sum(query["item_id"] == broken for query in bad_run["queries"])
    assert broken_events and broken_queries
    expected = {key: len(records) for key, records in bad_run["injected"].items()}
    expected.update({
        "events.request_id.duplicate_event": 3,
        # Cascade: the item with the undecodable image is rejected on reading, so the joins
        # find no such item and reject its events and queries as unknown ids.
        "items.image.undecodable_image": 1,
        "events.item_id.unknown_id": expected["events.item_id.unknown_id"] + broken_events,
        "queries.item_id.unknown_id": broken_queries,
        "items.item_id.duplicate_id": 1,
        "users.user_id.duplicate_id": 1,
    })
    assert stats["dead_letter"] == dict(sorted(expected.items()))
    assert stats["dead_letter_total"] == sum(expected.values())
    written = {key: len(entries) for key, entries in _dead_letters(bad_run["work"]).items()}
    assert written == expected
    assert stats["valid"] == {"items": len(bad_run["items"]) - 1,
                              "queries": len(bad_run["queries"]) - broken_queries}


def test_bad_input_every_injected_record_is_dead_lettered_with_its_code(bad_run):
    dead = _dead_letters(bad_run["work"])
    for key, records in bad_run["injected"].items():
        entries = dead[key]
        for record in records:
            if isinstance(record, bytes):
                line = record.decode("utf-8", errors="replace")
                assert any(entry.get("line") == line for entry in entries), (key, line)
            else:
                assert record in [entry.get("record") for entry in entries], (key, record)
    duplicates = [entry["record"] for entry in dead["events.request_id.duplicate_event"]]
    assert sorted(duplicates, key=json.dumps) == sorted(bad_run["duplicated"], key=json.dumps)
    broken = bad_run["broken"]
    assert [entry["record"]["item_id"] for entry in dead["items.image.undecodable_image"]] \
        == [broken]
    assert all(entry["record"]["item_id"] == broken
               for entry in dead["queries.item_id.unknown_id"])
    doubled_item = dead["items.item_id.duplicate_id"][0]["record"]
    assert doubled_item["item_id"] == bad_run["doubled_item"]["item_id"]
    assert doubled_item["image"].endswith(" bytes>")  # size, not the bytes
    assert [entry["record"] for entry in dead["users.user_id.duplicate_id"]] \
        == [bad_run["doubled_user"]]


def test_bad_input_keeps_every_good_event_once_and_leak_free(bad_run):
    work, stats = bad_run["work"], bad_run["stats"]
    good = [event for event in bad_run["events"] if event["item_id"] != bad_run["broken"]]
    examples = _check_examples(work, good, stats)
    assert sum(map(len, examples.values())) == len(good)
    assert not any(example["request_id"].startswith("bad-")
                   for rows in examples.values() for example in rows)
    _check_oracle(work, examples["eval"])


# --- empty input, no world.json --------------------------------------------------------------

def test_empty_events_file_is_a_clear_error(world, tmp_path_factory):
    raw = _copy(world, tmp_path_factory, "empty")
    shutil.rmtree(raw / "events")
    (raw / "events").mkdir()
    (raw / "events" / "part-00000.jsonl").write_bytes(b"")
    with pytest.raises(ValueError, match="events input is empty"):
        _preprocess(raw, raw.parent / "work")


def test_missing_events_files_is_a_clear_error(world, tmp_path_factory):
    raw = _copy(world, tmp_path_factory, "no_events")
    shutil.rmtree(raw / "events")
    with pytest.raises(FileNotFoundError, match="no events file matches"):
        _preprocess(raw, raw.parent / "work")


@pytest.fixture(scope="module")
def no_world_run(world, tmp_path_factory):
    raw = _copy(world, tmp_path_factory, "no_world")
    (raw / raw_files.WORLD_JSON).unlink()
    work = raw.parent / "work"
    return raw, work, _preprocess(raw, work, "--train_days", "5", "--eval_days", "3")


def test_without_world_json_bounds_come_from_the_last_event_day(no_world_run):
    raw, work, stats = no_world_run
    events = _raw_events(raw)
    end = (max(event["ts"] for event in events) // DAY + 1) * DAY
    assert stats["split_bounds"] == {"train_start_ts": end - 8 * DAY,
                                     "valid_start_ts": end - 4 * DAY,
                                     "eval_start_ts": end - 3 * DAY, "end_ts": end}
    assert stats["dead_letter_total"] == 0
    assert stats["settings"]["train_days"] == 5 and stats["settings"]["eval_days"] == 3
    examples = _check_examples(work, events, stats)
    _check_oracle(work, examples["eval"])
    with open(WorkLayout(str(work)).preprocess_json, encoding="utf-8") as handle:
        assert json.load(handle)["split_bounds"] == stats["split_bounds"]


def test_all_events_invalid_without_world_json_fails_after_writing_dead_letters(
        world, tmp_path_factory):
    raw = _copy(world, tmp_path_factory, "all_bad")
    (raw / raw_files.WORLD_JSON).unlink()
    shutil.rmtree(raw / "events")
    (raw / "events").mkdir()
    (raw / "events" / "part-00000.jsonl").write_bytes(b'{"request_id": \n[]\n')
    work = raw.parent / "work"
    with pytest.raises(ValueError, match=r"no valid examples .*'events.<record>.invalid_json': 2"):
        _preprocess(raw, work)
    assert len(_dead_letters(work)["events.<record>.invalid_json"]) == 2


def test_window_days_take_each_flag_else_world_json_else_the_default():
    world = {"suggested_splits": raw_files.split_spans(0, [0, 40, 55, 60])}
    settings = PreprocessSettings(data="raw", work="work")
    assert window_days(settings, world) == (15, 5)
    assert window_days(PreprocessSettings("raw", "work", eval_days=3), world) == (15, 3)
    assert window_days(PreprocessSettings("raw", "work", train_days=9), world) == (9, 5)
    assert window_days(settings, None) == (7, 7)


# --- hostile input (issue 13) -------------------------------------------------------------------

@contextlib.contextmanager
def _fifo_released_if_opened(fifo: Path):
    """While the job runs, a reader blocked opening ``fifo`` is released within a second (it
    then reads nothing), so a job that opens it fails the test instead of hanging it."""
    stop = threading.Event()

    def release():
        while not stop.wait(1):
            try:
                os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:  # nobody has it open for reading: nothing to release
                pass

    watchdog = threading.Thread(target=release, daemon=True)
    watchdog.start()
    try:
        yield
    finally:
        stop.set()
        watchdog.join()


def _png_of(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color=colour).save(buffer, format="PNG")
    return buffer.getvalue()


MAX_IMAGE_PIXELS = 5_000  # the tiny world's images are far smaller; "wide.png" is not


@pytest.fixture(scope="module")
def hostile_run(world, tmp_path_factory):
    """The tiny world plus what an attacker or a careless producer writes: image paths out of
    the data set, a FIFO, a 1 GB file, a huge image, lone surrogates, line breaks in tokens,
    a conflicting copy of an item, a 20 MB line. Returns the run and what was injected."""
    raw = _copy(world, tmp_path_factory, "hostile")
    layout = raw_files.RawLayout(str(raw))
    items = list(raw_files.read_jsonl(layout.items))
    events, queries = _raw_events(raw), list(raw_files.read_jsonl(layout.queries))
    outside = raw.parent / "outside"
    outside.mkdir()
    secret_png = _png_of((6, 5), (1, 2, 3))  # unlike any catalogue image
    (outside / "x.png").write_bytes(secret_png)
    images = raw / raw_files.IMAGES_DIR
    (images / "escape.png").symlink_to(outside / "x.png")
    os.mkfifo(images / "fifo.png")
    with open(images / "huge.png", "wb") as handle:
        handle.truncate(1 << 30)  # 1 GB, sparse
    (images / "wide.png").write_bytes(_png_of((100, 100), (9, 9, 9)))

    template = {key: value for key, value in items[1].items() if key != "item_id"}
    hostile = {  # dead-letter key -> item fields that differ from the template
        "items.image.image_outside_root": [
            {"image": "/etc/passwd"}, {"image": "../../../../../../../../../etc/passwd"},
            {"image": "../outside/x.png"}, {"image": str(outside / "x.png")},
            {"image": "images/escape.png"}],
        "items.image.image_url": [{"image": "https://example.com/x.png"},
                                  {"image": f"file://{outside}/x.png"}],
        "items.image.image_not_regular_file": [{"image": "images/fifo.png"},
                                               {"image": "images"}],
        "items.image.image_file_too_large": [{"image": "images/huge.png"}],
        "items.image.image_too_large": [{"image": "images/wide.png"}],
        # Twice, so min_count=2 would have let it into the category vocabulary.
        "items.category.control_character": [{"category": "evil\ncat"}] * 2,
        "items.entities.control_character": [{"entities": ["mug", "evil\u2028entity"]}],
        "items.title.invalid_unicode": [{"title": "bad \ud800 title"}],
    }
    item_lines = [json.dumps({**template, **changes, "item_id": f"hostile-{key}-{number}"})
                  .encode() for key, records in hostile.items()
                  for number, changes in enumerate(records)]
    # A second copy of an item that has events, made to sort first: both copies go.
    victim = items[2]
    rival = {**victim, "attrs": {"aaa": "sorts first"}}
    item_lines.append(json.dumps(rival).encode())
    with open(layout.items, "ab") as handle:
        handle.write(b"".join(line + b"\n" for line in item_lines))

    huge_line = json.dumps({**events[0], "request_id": "huge", "pad": "x" * (20 << 20)}).encode()
    surrogate_event = json.dumps({**events[0], "request_id": "surrogate",
                                  "user_id": "u\udc00"}).encode()
    with open(sorted(glob.glob(layout.events_pattern))[3], "ab") as handle:
        handle.write(huge_line + b"\n" + surrogate_event + b"\n")

    work = tmp_path_factory.mktemp("hostile") / "work"
    with _fifo_released_if_opened(images / "fifo.png"):
        stats = _preprocess(raw, work, "--max_image_pixels", str(MAX_IMAGE_PIXELS),
                            "--history", "impressions")
    victim_events = [event for event in events if event["item_id"] == victim["item_id"]]
    victim_queries = [query for query in queries if query["item_id"] == victim["item_id"]]
    assert victim_events and victim_queries
    expected = {key: len(records) for key, records in hostile.items()}
    expected.update({"items.item_id.conflicting_duplicate": 2,
                     "events.item_id.unknown_id": len(victim_events),
                     "queries.item_id.unknown_id": len(victim_queries),
                     "events.<record>.record_too_large": 1,
                     "events.user_id.invalid_unicode": 1})
    return {"work": work, "stats": stats, "expected": expected, "items": items,
            "events": events, "victim": victim, "rival": rival, "secret_png": secret_png,
            "huge_line": huge_line, "surrogate_event": surrogate_event}


def test_hostile_input_is_dead_lettered_with_a_code_per_hazard(hostile_run):
    stats, expected = hostile_run["stats"], hostile_run["expected"]
    assert stats["dead_letter"] == dict(sorted(expected.items()))
    assert stats["dead_letter_total"] == sum(expected.values())
    written = {key: len(entries) for key, entries in _dead_letters(hostile_run["work"]).items()}
    assert written == expected


def test_images_outside_the_data_set_are_never_read_into_the_catalogue(hostile_run):
    work, secret_png = hostile_run["work"], hostile_run["secret_png"]
    catalogue = [features.decode_example(record.numpy(), features.ITEM_FEATURES)
                 for record in tf.data.TFRecordDataset(
                     sorted(glob.glob(WorkLayout(str(work)).items_pattern)),
                     compression_type="GZIP")]
    assert len(catalogue) == hostile_run["stats"]["valid"]["items"] == \
        len(hostile_run["items"]) - 1  # the item with a conflicting copy
    assert not any(item["item_id"].startswith("hostile-") for item in catalogue)
    assert all(item["image"] != secret_png for item in catalogue)
    for entry in _dead_letters(work)["items.image.image_outside_root"]:
        assert "outside" in entry["problems"][0]["reason"]


def test_conflicting_copies_of_an_item_are_both_rejected(hostile_run):
    """Whichever sorts first: neither the original nor the rival copy is kept."""
    victim, rival = hostile_run["victim"], hostile_run["rival"]
    rejected = [entry["record"] for entry in
                _dead_letters(hostile_run["work"])["items.item_id.conflicting_duplicate"]]
    assert [record["item_id"] for record in rejected] == [victim["item_id"]] * 2
    assert sorted(json.dumps(record["attrs"]) for record in rejected) == \
        sorted(json.dumps(record["attrs"]) for record in (victim, rival))


def test_tokens_with_line_breaks_never_reach_a_vocabulary_file(hostile_run):
    layout, stats = WorkLayout(str(hostile_run["work"])), hostile_run["stats"]
    for name in VOCABULARIES:
        with open(layout.vocab(name), "rb") as handle:
            content = handle.read()
        assert content.count(b"\n") == len(content.splitlines()) == \
            stats["vocabulary_sizes"][name], name
        assert b"evil" not in content, name


def test_a_lone_surrogate_and_a_20_mb_line_are_dead_letters_not_a_crash(hostile_run):
    dead = _dead_letters(hostile_run["work"])
    [surrogate] = dead["events.user_id.invalid_unicode"]
    assert surrogate["line"] == hostile_run["surrogate_event"].decode()
    [huge] = dead["events.<record>.record_too_large"]
    assert huge["line"] == hostile_run["huge_line"][:256].decode()
    assert f"record of {len(hostile_run['huge_line']):,} bytes" in huge["problems"][0]["reason"]


def test_hostile_input_keeps_every_good_event_once_and_leak_free(hostile_run):
    """This run's sequences hold every earlier impression (``--history impressions``)."""
    victim = hostile_run["victim"]["item_id"]
    good = [event for event in hostile_run["events"] if event["item_id"] != victim]
    examples = _check_examples(hostile_run["work"], good, hostile_run["stats"], "impressions")
    assert sum(map(len, examples.values())) == len(good)
    actions = collections.Counter(action for rows in examples.values() for example in rows
                                  for action in example["hist_actions"])
    # The tiny world's click rate is low: most entries are impressions passed over.
    assert actions[features.ACTION_SHOWN] > actions[features.ACTION_CLICKED] > 0
    metadata = json.loads((hostile_run["work"] / "preprocess.json").read_text())
    assert metadata["history"] == metadata["settings"]["history"] == "impressions"


def test_an_unknown_history_kind_is_refused_naming_the_flag(world, capsys):
    with pytest.raises(SystemExit):
        _preprocess(world, world.parent / "work", "--history", "views")
    assert "--history: invalid choice: 'views'" in capsys.readouterr().err


def test_a_folder_named_like_an_events_shard_is_an_error_naming_it(world, tmp_path_factory):
    raw = _copy(world, tmp_path_factory, "shard_folder")
    folder = raw / "events" / "part-x.jsonl"
    folder.mkdir()
    (folder / "part-00000.jsonl").write_bytes((raw / "events" / "part-00000.jsonl").read_bytes())
    with pytest.raises(ValueError, match=f"{re.escape(str(folder))} matches the events files "
                                         ".* but is a directory; rename or remove it"):
        _preprocess(raw, raw.parent / "work")
    assert not (raw.parent / "work").exists()
