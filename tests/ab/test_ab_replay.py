"""The world replay: the logged requests come back with the world's own probabilities, and the
pools add items drawn the way the world draws them (new items included)."""
from collections import defaultdict

import numpy as np
import pytest

from ppm_tf.ab.replay import eval_days, replay_eval_days
from ppm_tf.data import raw_files
from ppm_tf.data.synthetic import generate_world, preset
from ppm_tf.data.synthetic.world import catalog_and_population

POOL = 40


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("ab_world") / "raw"
    generate_world(preset("tiny"), seed=3, out=str(out), preset_name="tiny")
    return str(out)


@pytest.fixture(scope="module")
def replayed(world_dir):
    return replay_eval_days(raw_files.read_world(world_dir), days=None, pool_size=POOL, seed=0)


def _logged(world_dir, first_day):
    layout = raw_files.RawLayout(world_dir)
    oracle = {(row["request_id"], row["item_id"]): (row["p_click"], row["p_order"])
              for row in raw_files.read_jsonl(layout.oracle_pattern)
              if int(row["request_id"][1:4]) >= first_day}
    requests = defaultdict(list)
    for event in raw_files.read_jsonl(layout.events_pattern):
        if int(event["request_id"][1:4]) >= first_day:
            requests[event["request_id"]].append(event)
    return oracle, requests


def test_every_eval_request_comes_back_with_the_logged_truth(world_dir, replayed):
    world = raw_files.read_world(world_dir)
    oracle, requests = _logged(world_dir, eval_days(world)[0])
    assert sorted(replayed.request_ids.tolist()) == sorted(requests)
    per_request = world["config"]["impressions_per_request"]
    for row, request_id in enumerate(replayed.request_ids.tolist()):
        events = requests[request_id]
        assert replayed.user_ids[row] == events[0]["user_id"]
        logged = replayed.pool_item_ids[row, :per_request].tolist()
        assert sorted(logged) == sorted(event["item_id"] for event in events)
        assert replayed.logged[row].sum() == per_request and replayed.logged[row, :per_request].all()
        truth = np.array([oracle[(request_id, item)] for item in logged])
        # The oracle files hold 6 decimals; the replay asks the world's own code again.
        np.testing.assert_allclose(replayed.p_click[row, :per_request], truth[:, 0], atol=1e-6)
        np.testing.assert_allclose(replayed.p_order[row, :per_request], truth[:, 1], atol=1e-6)


def test_pools_are_launched_distinct_items_with_new_ones_competing(world_dir, replayed):
    world = raw_files.read_world(world_dir)
    catalog, _ = catalog_and_population(world)
    launch_day = dict(zip(catalog.item_ids, catalog.launch_day.tolist()))
    assert replayed.pool_item_ids.shape == (len(replayed), POOL)
    for row, items in enumerate(replayed.pool_item_ids.tolist()):
        assert len(set(items)) == POOL
        assert all(launch_day[item] <= replayed.day[row] for item in items)
    drawn = ~replayed.logged
    new = np.array([[replayed.day[row] - launch_day[item] < world["config"]["new_item_days"]
                     for item in items] for row, items in enumerate(replayed.pool_item_ids)])
    assert new[drawn].mean() > 0.1  # the sampler's "new" slot puts fresh launches in the pool
    assert 0 < replayed.cold.mean() < 1
    assert ((replayed.p_click > 0) & (replayed.p_click < 1)).all()
    assert (replayed.p_order <= replayed.p_click).all()


def test_popularity_counts_earlier_days_and_cold_means_unseen_before_the_recent_window(
        world_dir, replayed):
    world = raw_files.read_world(world_dir)
    first_eval = eval_days(world)[0]
    train_start_ts = world["suggested_splits"]["train"]["start_ts"]
    clicks, seen_before_window = defaultdict(int), set()
    for event in raw_files.read_jsonl(raw_files.RawLayout(world_dir).events_pattern):
        if int(event["request_id"][1:4]) <= first_eval:
            clicks[event["item_id"]] += event["click"]
        if event["ts"] < train_start_ts:
            seen_before_window.add(event["item_id"])
    row = int(np.flatnonzero(replayed.day == first_eval + 1)[0])
    np.testing.assert_array_equal(replayed.clicks_before_day[row],
                                  [clicks[item] for item in replayed.pool_item_ids[row]])
    expected_cold = np.vectorize(lambda item: item not in seen_before_window)(
        replayed.pool_item_ids)
    np.testing.assert_array_equal(replayed.cold, expected_cold)


def test_days_limits_the_replay_and_a_pool_smaller_than_the_log_is_refused(world_dir):
    world = raw_files.read_world(world_dir)
    first_day = replay_eval_days(world, days=1, pool_size=10, seed=0)
    assert set(first_day.day.tolist()) == {eval_days(world)[0]}
    with pytest.raises(ValueError, match="pool_size=3 must hold the 5 logged candidates"):
        replay_eval_days(world, days=1, pool_size=3, seed=0)
    with pytest.raises(ValueError, match="days must be at least 1"):
        replay_eval_days(world, days=0, pool_size=10, seed=0)


def test_the_seed_draws_the_pools_and_the_world_stays_the_same(world_dir, replayed):
    world = raw_files.read_world(world_dir)
    again = replay_eval_days(world, days=None, pool_size=POOL, seed=0)
    other = replay_eval_days(world, days=None, pool_size=POOL, seed=1)
    np.testing.assert_array_equal(again.pool_item_ids, replayed.pool_item_ids)
    np.testing.assert_array_equal(again.p_click, replayed.p_click)
    assert (other.pool_item_ids[:, 5:] != replayed.pool_item_ids[:, 5:]).any()
    np.testing.assert_array_equal(other.pool_item_ids[:, :5], replayed.pool_item_ids[:, :5])
