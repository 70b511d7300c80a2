"""The canonical TFRecord writer on a real Beam pipeline (FnApiRunner): the same files and
record order whatever order the records arrive in, a user's records together and by time."""
import random

import apache_beam as beam
import pytest
import tensorflow as tf

from ppm_tf.beam_runner import pipeline_options
from ppm_tf.preprocessing import shards
from ppm_tf.preprocessing.shards import (WriteTFRecordShards, group_fingerprint, shard_count,
                                         shard_path)


def _records(users: int = 30, per_user: int = 9) -> list[tuple[tuple, bytes]]:
    """(order key, bytes) pairs: (user, ts, item), the bytes naming them."""
    return [((f"u{user}", ts, f"i{item}"), f"u{user}|{ts:03d}|i{item}".encode())
            for user in range(users) for ts in range(per_user) for item in range(2)]


def _write(keyed_records, prefix: str, records_per_shard: int) -> list[str]:
    with beam.Pipeline(options=pipeline_options(["--runner=FnApiRunner"])) as pipeline:
        _ = (pipeline
             | beam.Create(keyed_records, reshuffle=True)
             | WriteTFRecordShards(prefix, records_per_shard))
    return sorted(tf.io.gfile.glob(prefix + "-*"))


def _read(path: str) -> list[bytes]:
    return [record.numpy() for record in tf.data.TFRecordDataset(path, compression_type="GZIP")]


def test_records_in_any_arrival_order_give_the_same_files_and_order(tmp_path):
    records = _records()
    shuffled = records[:]
    random.Random(7).shuffle(shuffled)
    first = _write(records, str(tmp_path / "a" / "part"), 200)
    second = _write(shuffled, str(tmp_path / "b" / "part"), 200)

    assert [path.rsplit("/", 1)[1] for path in first] == [
        path.rsplit("/", 1)[1] for path in second] == [
        f"part-{shard:05d}-of-00003.tfrecord.gz" for shard in range(3)]
    assert [_read(path) for path in first] == [_read(path) for path in second]
    written = [record for path in first for record in _read(path)]
    assert sorted(written) == sorted(value for _, value in records)  # each exactly once


def test_records_lost_between_counting_and_writing_fail_the_job(tmp_path, monkeypatch):
    write_shard = shards._write_shard

    def losing_one(element, prefix):  # as a runner that drops a record in the shuffle
        shard, grouped = element
        return write_shard((shard, {**grouped, "records": list(grouped["records"])[1:]}),
                           prefix)

    monkeypatch.setattr(shards, "_write_shard", losing_one)
    with pytest.raises(shards.RecordsLostError,
                       match="540 records came to be written and 539 were written"):
        _write(_records(), str(tmp_path / "part"), 1000)


def test_a_users_records_share_a_shard_and_follow_one_another_by_time(tmp_path):
    paths = _write(_records(), str(tmp_path / "part"), 200)
    seen_users = set()
    for path in paths:
        users = [record.decode().split("|")[:2] for record in _read(path)]
        runs = [user for index, (user, _) in enumerate(users)
                if index == 0 or users[index - 1][0] != user]
        assert len(runs) == len(set(runs)), "a user's records are split within a shard"
        assert not seen_users & set(runs), "a user's records are split across shards"
        seen_users |= set(runs)
        for user in runs:
            times = [ts for name, ts in users if name == user]
            assert times == sorted(times)
    assert len(seen_users) == 30


def test_no_record_still_writes_one_empty_shard_and_no_temporary_file(tmp_path):
    paths = _write([], str(tmp_path / "part"), 200)
    assert [path.rsplit("/", 1)[1] for path in paths] == ["part-00000-of-00001.tfrecord.gz"]
    assert _read(paths[0]) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == [
        "part-00000-of-00001.tfrecord.gz"]


def test_the_shard_fingerprint_is_stable_across_processes():
    # Python's hash() of a string is salted per process; the fingerprint must not be.
    # Pinned: a shard's users must be the same in every process and on every worker.
    assert group_fingerprint(("user-1", 5)) == group_fingerprint(("user-1",)) == \
        11145382709976293768


@pytest.mark.parametrize("records, expected", [(0, 1), (1, 1), (200, 1), (201, 2), (1000, 5)])
def test_a_split_gets_one_shard_per_records_per_shard(records, expected):
    assert shard_count(records, 200) == expected


def test_shard_names_follow_beams_template():
    assert shard_path("w/examples/train/part", 3, 12) == \
        "w/examples/train/part-00003-of-00012.tfrecord.gz"
