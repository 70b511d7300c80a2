"""``python -m beam_jobs.preprocess --history impressions`` end to end on the tiny synthetic
world: every example's behaviour sequence is the user's last impressions (clicked or not,
each with its action type) strictly before the request and from other requests, checked by
brute force over the raw log; preprocess.json records the choice."""
import collections
import glob
import json

import pytest
import tensorflow as tf

from beam_jobs.preprocess import run
from ppm_tf import features
from ppm_tf.data import raw_files
from ppm_tf.data.synthetic import generate_world, preset
from ppm_tf.work_layout import WorkLayout

pytestmark = pytest.mark.slow

MAX_SEQ_LEN = 6


@pytest.fixture(scope="module")
def impressions_run(tmp_path_factory):
    raw = tmp_path_factory.mktemp("world") / "tiny"
    generate_world(preset("tiny"), seed=1, out=str(raw), preset_name="tiny")
    work = tmp_path_factory.mktemp("impressions") / "work"
    stats = run(["--data", str(raw), "--out", str(work), "--max_seq_len", str(MAX_SEQ_LEN),
                 "--history", "impressions", "--runner=FnApiRunner"])
    return raw, work, stats


def _reference(events: list[dict]) -> dict[tuple[str, str], list[tuple[int, str, int]]]:
    """(request_id, item_id) -> [(ts, item_id, action)]: every earlier impression of the user
    from another request, newest first (ties: the larger key first, as the job sorts)."""
    by_user = collections.defaultdict(list)
    for event in events:
        by_user[event["user_id"]].append(event)
    histories = {}
    for event in events:
        earlier = sorted(((other["ts"], other["request_id"], other["item_id"],
                           features.action_type(other["click"], other["order"]))
                          for other in by_user[event["user_id"]]
                          if other["ts"] < event["ts"]
                          and other["request_id"] != event["request_id"]), reverse=True)
        histories[event["request_id"], event["item_id"]] = [
            (ts, item_id, action) for ts, _, item_id, action in earlier[:MAX_SEQ_LEN]]
    return histories


def test_sequences_hold_every_earlier_impression_with_its_action(impressions_run):
    raw, work, stats = impressions_run
    events = list(raw_files.read_jsonl(raw_files.RawLayout(str(raw)).events_pattern))
    histories = _reference(events)
    layout = WorkLayout(str(work))
    actions = collections.Counter()
    examples = 0
    for split in features.SPLITS:
        files = sorted(glob.glob(layout.examples_pattern(split)))
        for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
            example = features.decode_example(record.numpy(), features.EXAMPLE_FEATURES)
            length = example[features.HIST_LEN]
            entries = list(zip(example[features.HIST_TS][:length],
                               example[features.HIST_ITEM_IDS][:length],
                               example[features.HIST_ACTIONS][:length]))
            assert entries == histories[example[features.REQUEST_ID], example[features.ITEM_ID]]
            assert example[features.HIST_ACTIONS][length:] == [0] * (MAX_SEQ_LEN - length)
            actions.update(action for *_, action in entries)
            examples += 1
    assert examples == len(events) == sum(split["examples"] for split in stats["splits"].values())
    # The tiny world's click rate is low: most entries are impressions passed over.
    assert actions[features.ACTION_SHOWN] > actions[features.ACTION_CLICKED] > 0
    with open(layout.preprocess_json, encoding="utf-8") as handle:
        metadata = json.load(handle)
    assert metadata["history"] == metadata["settings"]["history"] == "impressions"


def test_an_unknown_history_kind_is_refused_naming_the_flag(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run(["--data", str(tmp_path), "--out", str(tmp_path / "work"), "--history", "views",
             "--runner=FnApiRunner"])
    assert "--history: invalid choice: 'views'" in capsys.readouterr().err
